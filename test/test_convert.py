"""`panopticdepth convert` on fake released checkpoints built here with the released code's key names."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from tiny_model import tiny_cfg

from panopticdepth_core.checkpoint.convert import (
    CITYSCAPES_FOCAL,
    default_config_path,
    map_key,
    released_names,
    target_state_dict,
)
from panopticdepth_core.checkpoint.io import checkpoint_canonical_focal, checkpoint_config, load_model_weights
from panopticdepth_core.config import load_config
from panopticdepth_core.modeling.build import build_model
from panopticdepth_ros.cli import main

# R-18 with BN (like the released SyncBN panoptic model: BN statistics include num_batches_tracked), heads with
# the released three convs, small widths: FPN / semantic FPN / encoders 32, GN heads 64, Kd 8.
TINY = [
    "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", "0",
    "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.SEMANTIC_FPN.CONVS_DIM", "32", "MODEL.POSITION_HEAD.CONVS_DIM", "64",
    "MODEL.KERNEL_HEAD.CONVS_DIM", "64", "MODEL.FEATURE_ENCODER.CONVS_DIM", "32", "MODEL.DEPTH_HEAD.CONVS_DIM", "64",
    "MODEL.DEPTH_HEAD.DEPTH_KERNEL_DIM", "8",
]

# Written by hand from the released code (head.py, backbone_utils.py, Detectron2 resnet.py / fpn.py), with the
# shapes the TINY config gives them: the fake checkpoint below must contain exactly these names and shapes.
KNOWN_RELEASED = {
    "backbone.bottom_up.stem.conv1.weight": (64, 3, 7, 7),
    "backbone.bottom_up.stem.conv1.norm.running_var": (64,),
    "backbone.bottom_up.res2.0.conv1.norm.num_batches_tracked": (),
    "backbone.bottom_up.res3.0.shortcut.weight": (128, 64, 1, 1),
    "backbone.bottom_up.res3.0.shortcut.norm.bias": (128,),
    "backbone.bottom_up.res5.1.conv2.norm.weight": (512,),
    "backbone.fpn_lateral2.weight": (32, 64, 1, 1),
    "backbone.fpn_lateral5.bias": (32,),
    "backbone.fpn_output4.weight": (32, 32, 3, 3),
    "backbone.top_block.p6.weight": (32, 32, 3, 3),
    "backbone.top_block.p7.bias": (32,),
    "semantic_fpn.p2.0.weight": (32, 32, 3, 3),
    "semantic_fpn.p4.2.weight": (32, 32, 3, 3),
    "semantic_fpn.p5.4.norm.weight": (32,),
    "position_head.position_head.position_head_head_1.offset_mask_conv.weight": (27, 32, 3, 3),
    "position_head.position_head.position_head_head_1.dcnv2.weight": (64, 32, 3, 3),
    "position_head.position_head.position_head_head_3.dcnv2.norm.bias": (64,),
    "position_head.out_inst.weight": (8, 64, 3, 3),
    "position_head.out_sem.bias": (19,),
    "kernel_head.kernel_head.kernel_head_head_1.weight": (64, 34, 3, 3),
    "kernel_head.kernel_head.kernel_head_head_2.norm.weight": (64,),
    "kernel_head.out_conv.weight": (64, 64, 3, 3),
    "feature_encoder.encode_head.encode_head_head_1.offset_mask_conv.weight": (27, 34, 3, 3),
    "feature_encoder.encode_head.encode_head_head_1.dcnv2.weight": (32, 34, 3, 3),
    "feature_encoder.encode_head.encode_head_head_3.dcnv2.bias": (32,),
    "depth_kernel_head.depth_kernel_head.depth_kernel_head_head_1.offset_mask_conv.bias": (27,),
    "depth_kernel_head.depth_kernel_head.depth_kernel_head_head_2.dcnv2.weight": (64, 64, 3, 3),
    "depth_kernel_head.out_depth_kernel.weight": (10, 64, 3, 3),
    "depth_encode_head.encode_head.depth_encode_head_head_3.dcnv2.weight": (32, 32, 3, 3),
    "depth_encode_head.embed_extractor.weight": (8, 32, 1, 1),
    "thing_generator.embed_extractor.weight": (32, 64, 1, 1),
    "stuff_generator.embed_extractor.bias": (32,),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(*extra: str, depth_on: bool = True):
    return tiny_cfg(*extra, base=TINY, depth_on=depth_on)


def _config_file(tmp_path, *extra: str, depth_on: bool = True):
    path = tmp_path / f"cfg_{depth_on}_{len(extra)}.yaml"
    path.write_text(_cfg(*extra, depth_on=depth_on).dump())
    return path


def _fake(cfg, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    target = target_state_dict(cfg)
    names = released_names(target)
    fake = {}
    for ours, value in target.items():
        if not value.is_floating_point():
            fake[names[ours]] = torch.tensor(17)  # num_batches_tracked
        elif ours.endswith("running_var"):
            fake[names[ours]] = torch.rand(value.shape, generator=gen) + 0.5
        else:
            fake[names[ours]] = torch.randn(value.shape, generator=gen) * 0.05
    return fake


def _convert(tmp_path, state, config, name="model_final.pth", extra_entries=True):
    src = tmp_path / name
    torch.save({"model": state, "iteration": 90000, "__author__": "someone"} if extra_entries else state, src)
    out = tmp_path / (name.split(".")[0] + ".safetensors")
    rc = main(["convert", str(src), str(out), "--config", str(config)])
    return rc, out


def test_known_released_names_are_produced_with_their_shapes() -> None:
    fake = _fake(_cfg())
    for key, shape in KNOWN_RELEASED.items():
        assert key in fake, key
        assert tuple(fake[key].shape) == shape, key
    assert all(map_key(k) is not None for k in fake)
    assert len({map_key(k) for k in fake}) == len(fake)


def test_convert_then_load_and_run(tmp_path, capsys) -> None:
    fake = _fake(_cfg())
    rc, out = _convert(tmp_path, fake, _config_file(tmp_path))
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"mapped:  {len(fake)} tensors" in printed and "ignored top-level entries: __author__, iteration" in printed
    cfg = checkpoint_config(out)
    assert cfg.MODEL.DEPTH_ON and cfg.MODEL.RESNETS.DEPTH == 18
    model = build_model(cfg).eval()
    load_model_weights(model, out)
    body = model.backbone.body
    assert torch.equal(body.layer2[0].downsample[0].weight, fake["backbone.bottom_up.res3.0.shortcut.weight"])
    assert torch.equal(body.layer4[1].bn2.weight, fake["backbone.bottom_up.res5.1.conv2.norm.weight"])
    assert torch.equal(model.backbone.fpn.lateral[3].conv.bias, fake["backbone.fpn_lateral5.bias"])
    tower_norm = fake["position_head.position_head.position_head_head_3.dcnv2.norm.bias"]
    assert torch.equal(model.position_head.tower[2].norm.bias, tower_norm)
    assert torch.equal(model.depth_encoder.out_conv.weight, fake["depth_encode_head.embed_extractor.weight"])
    assert torch.equal(model.stuff_projection.proj.bias, fake["stuff_generator.embed_extractor.bias"])
    with torch.no_grad():
        head, _, _ = model.predict_heads([torch.rand(3, 97, 131) * 255])
    assert head.depth_embedding.shape == (1, 8, 32, 64)
    assert torch.isfinite(head.mask_embedding).all()
    # a depth model records its canonical camera: the config sets none here, so Cityscapes' (released models)
    assert cfg.MODEL.CANONICAL_FOCAL == CITYSCAPES_FOCAL == checkpoint_canonical_focal(out) == 2262.52
    assert "canonical focal: 2262.52 px (Cityscapes' camera" in printed
    rc, out = _convert(tmp_path, fake, _config_file(tmp_path, "MODEL.CANONICAL_FOCAL", "1000"), name="own.pth")
    assert rc == 0 and checkpoint_canonical_focal(out) == 1000.0


def test_extra_missing_or_misshaped_key_fails_naming_it(tmp_path, capsys) -> None:
    config = _config_file(tmp_path)
    extra = _fake(_cfg()) | {"roi_heads.box_predictor.cls_score.weight": torch.zeros(3)}
    rc, out = _convert(tmp_path, extra, config, "extra.pth")
    assert rc == 1 and not out.exists()
    assert "roi_heads.box_predictor.cls_score.weight" in capsys.readouterr().err

    missing = _fake(_cfg())
    del missing["backbone.fpn_lateral3.weight"]
    rc, out = _convert(tmp_path, missing, config, "missing.pth")
    err = capsys.readouterr().err
    assert rc == 1 and not out.exists()
    assert "backbone.fpn.lateral.1.conv.weight (released name backbone.fpn_lateral3.weight)" in err

    bad = _fake(_cfg())
    bad["position_head.out_sem.weight"] = torch.zeros(18, 64, 3, 3)
    rc, _ = _convert(tmp_path, bad, config, "bad.pth")
    assert rc == 1 and "position_head.out_sem.weight: checkpoint (18, 64, 3, 3)" in capsys.readouterr().err


def test_numpy_valued_checkpoint_converts(tmp_path) -> None:
    fake = _fake(_cfg(depth_on=False))
    as_numpy = {k: v.numpy() for k, v in fake.items()}
    rc, out = _convert(tmp_path, as_numpy, _config_file(tmp_path, depth_on=False), "numpy.pth")
    assert rc == 0
    model = build_model(checkpoint_config(out))
    load_model_weights(model, out)
    assert torch.equal(model.kernel_head.out_conv.weight, fake["kernel_head.out_conv.weight"])


def test_panopticfcn_checkpoint_needs_a_depth_off_config(tmp_path, capsys) -> None:
    fcn = {k: v for k, v in _fake(_cfg()).items() if not k.startswith(("depth_kernel_head", "depth_encode_head"))}
    rc, _ = _convert(tmp_path, fcn, _config_file(tmp_path, depth_on=False), "fcn.pth", extra_entries=False)
    assert rc == 0
    rc, _ = _convert(tmp_path, fcn, _config_file(tmp_path, depth_on=True), "fcn_depth.pth")
    assert rc == 1 and "use MODEL.DEPTH_ON False" in capsys.readouterr().err


def test_batch_norm_bookkeeping_is_skipped_or_filled(tmp_path, capsys) -> None:
    fake = _fake(_cfg())
    rc, out = _convert(tmp_path, fake, _config_file(tmp_path, "MODEL.RESNETS.NORM", "FrozenBN"), "to_frozen.pth")
    n_bn = sum(k.endswith("num_batches_tracked") for k in fake)
    assert rc == 0 and f"skipped: {n_bn} (num_batches_tracked" in capsys.readouterr().out
    frozen = {k: v for k, v in fake.items() if not k.endswith("num_batches_tracked")}
    rc, out = _convert(tmp_path, frozen, _config_file(tmp_path), "from_frozen.pth")
    assert rc == 0 and f"filled:  {n_bn} (num_batches_tracked = 0" in capsys.readouterr().out


def test_plain_pickle_with_numpy_converts_and_code_is_refused(tmp_path) -> None:
    fake = {k: v.numpy() for k, v in _fake(_cfg(depth_on=False)).items()}
    src = tmp_path / "model.pkl"
    src.write_bytes(pickle.dumps({"model": fake, "__author__": "x"}, protocol=2))
    out = tmp_path / "model.safetensors"
    assert main(["convert", str(src), str(out), "--config", str(_config_file(tmp_path, depth_on=False))]) == 0

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"model": {"x": np.zeros(1)}, "payload": Evil()}, protocol=2))
    assert main(["convert", str(evil), str(tmp_path / "evil.safetensors"), "--config",
                 str(_config_file(tmp_path, depth_on=False))]) == 1
    assert not marker.exists()


def test_shipped_default_configs_are_found_and_fit_r50() -> None:
    assert default_config_path(True).name == "PanopticDepth-R50-cityscapes-dps.yaml"
    assert default_config_path(False).name == "PanopticDepth-R50-cityscapes.yaml"
    target = target_state_dict(load_config(default_config_path(True)))
    names = released_names(target)
    assert tuple(target[map_key("backbone.bottom_up.res4.5.conv3.weight")].shape) == (1024, 256, 1, 1)
    assert names["backbone.body.layer4.2.bn3.running_mean"] == "backbone.bottom_up.res5.2.conv3.norm.running_mean"
    assert not any(k.endswith("num_batches_tracked") for k in target)  # FrozenBN, as the released DPS model
