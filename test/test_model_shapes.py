"""Shapes, dtypes and wiring of the PanopticDepth network on tiny configs (R-18, 32 channels, small images)."""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F
from tiny_model import random_model, tiny_cfg

from panopticdepth_core.modeling.backbone import PretrainedWeightsError, ResNetFPN
from panopticdepth_core.modeling.build import build_model
from panopticdepth_core.modeling.heads import KernelProjection
from panopticdepth_core.modeling.layers import FrozenBatchNorm2d, ModulatedDeformConv2d, append_coords
from panopticdepth_core.modeling.panoptic_depth import PanopticDepth
from panopticdepth_core.modeling.settings import LossParams, PostprocessParams, TargetParams
from panopticdepth_core.modeling.types import HeadOutputs, InstanceTarget

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(*extra: str, depth_on: bool = True, seed: int = 0) -> PanopticDepth:
    return random_model(tiny_cfg(*extra, depth_on=depth_on), seed).eval()


@pytest.mark.parametrize("depth_on", [True, False])
def test_head_outputs_for_two_odd_sizes(depth_on: bool) -> None:
    model = tiny_model(depth_on=depth_on)
    images = [torch.randint(0, 256, (3, 97, 131), dtype=torch.uint8), torch.rand(3, 70, 260) * 255]
    with torch.no_grad():
        head, sizes, padded = model.predict_heads(images)
    assert isinstance(head, HeadOutputs)
    assert sizes == [(97, 131), (70, 260)]
    assert padded == (128, 384)  # max size rounded up to multiples of 128
    assert len(head.center_logits) == len(head.region_logits) == len(head.kernel_features) == 5
    for level, stride in enumerate([8, 16, 32, 64, 128]):
        h, w = 128 // stride, 384 // stride
        assert head.center_logits[level].shape == (2, 8, h, w)
        assert head.region_logits[level].shape == (2, 19, h, w)
        assert head.kernel_features[level].shape == (2, 64, h, w)
        if depth_on:
            assert head.depth_kernel_params[level].shape == (2, 2 + 8, h, w)
    assert head.mask_embedding.shape == (2, 32, 32, 96)
    if depth_on:
        assert head.depth_embedding.shape == (2, 8, 32, 96)
    else:
        assert head.depth_kernel_params is None and head.depth_embedding is None
        assert not any("depth" in k for k in model.state_dict())
    tensors = [*head.center_logits, *head.region_logits, *head.kernel_features, head.mask_embedding]
    tensors += [*head.depth_kernel_params, head.depth_embedding] if depth_on else []
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in tensors)


def test_single_image_is_padded_to_128_and_uint8_equals_float() -> None:
    model = tiny_model()
    img = torch.randint(0, 256, (3, 97, 131), dtype=torch.uint8)
    with torch.no_grad():
        a, sizes, padded = model.predict_heads([img])
        b, _, _ = model.predict_heads([img.float()])
    assert sizes == [(97, 131)] and padded == (128, 256)
    assert a.center_logits[0].shape[-2:] == (16, 32)
    assert torch.equal(a.mask_embedding, b.mask_embedding)


def test_bgr_format_flips_channels_before_normalising() -> None:
    rgb = tiny_model("INPUT.FORMAT", "RGB")
    bgr = tiny_model("INPUT.FORMAT", "BGR")
    bgr.load_state_dict(rgb.state_dict())
    img = torch.rand(3, 64, 64) * 255
    with torch.no_grad():
        out_bgr = bgr.predict_heads([img])[0].mask_embedding
        out_rgb_flipped = rgb.predict_heads([img.flip(0)])[0].mask_embedding
        out_rgb = rgb.predict_heads([img])[0].mask_embedding
    assert torch.allclose(out_bgr, out_rgb_flipped, atol=1e-5)
    assert not torch.allclose(out_bgr, out_rgb, atol=1e-3)


def test_bad_image_shape_is_named() -> None:
    with pytest.raises(ValueError, match=r"image 1 .*\(64, 64, 3\)"):
        tiny_model().predict_heads([torch.zeros(3, 8, 8), torch.zeros(64, 64, 3)])


@pytest.mark.parametrize("freeze_at", [0, 2, 5])
def test_freeze_at_freezes_stem_and_stages(freeze_at: int) -> None:
    model = build_model(tiny_cfg("MODEL.BACKBONE.FREEZE_AT", str(freeze_at)))
    body = model.backbone.body
    units = [("stem", [body.conv1, body.bn1]), ("res2", [body.layer1]), ("res3", [body.layer2]),
             ("res4", [body.layer3]), ("res5", [body.layer4])]
    for index, (name, modules) in enumerate(units, start=1):
        frozen = index <= freeze_at
        params = [p for m in modules for p in m.parameters()]
        assert all(p.requires_grad != frozen for p in params), name
        norms = [m for mod in modules for m in mod.modules()
                 if isinstance(m, (torch.nn.BatchNorm2d, FrozenBatchNorm2d))]
        assert norms and all(isinstance(n, FrozenBatchNorm2d) == frozen for n in norms), name
    # Frozen parts get no gradient and keep their statistics in train mode; the rest trains.
    model.train()
    stats_before = body.bn1.running_mean.clone()
    head, _, _ = model.predict_heads([torch.rand(3, 64, 64) * 255, torch.rand(3, 64, 64) * 255])
    head.mask_embedding.sum().backward()
    assert (body.conv1.weight.grad is None) == (freeze_at >= 1)
    assert (body.layer4[0].conv1.weight.grad is None) == (freeze_at >= 5)
    assert torch.equal(body.bn1.running_mean, stats_before) == (freeze_at >= 1)


def test_stride_in_1x1_moves_the_stride() -> None:
    for flag, first, second in ((True, (2, 2), (1, 1)), (False, (1, 1), (2, 2))):
        cfg = tiny_cfg("MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.STRIDE_IN_1X1", str(flag))
        body = ResNetFPN.from_config(cfg).body
        for stage in (body.layer2, body.layer3, body.layer4):
            assert stage[0].conv1.stride == first and stage[0].conv2.stride == second
        assert body.layer1[0].conv1.stride == (1, 1) and body.layer1[0].conv2.stride == (1, 1)
        with torch.no_grad():
            outs = ResNetFPN.from_config(cfg).eval()(torch.randn(1, 3, 128, 128))
        assert [tuple(v.shape[-2:]) for v in outs.values()] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]


def test_missing_pretrained_file_names_its_path(tmp_path) -> None:
    path = tmp_path / "no_such_resnet18.pth"
    with pytest.raises(PretrainedWeightsError, match="no_such_resnet18.pth"):
        build_model(tiny_cfg("MODEL.BACKBONE.PRETRAINED", str(path)))
    # A set MODEL.WEIGHTS means a full checkpoint follows: the ImageNet file is not needed then.
    build_model(tiny_cfg("MODEL.BACKBONE.PRETRAINED", str(path), "MODEL.WEIGHTS", "later.safetensors"))


def test_pretrained_torchvision_state_dict_loads_and_wrong_one_errors(tmp_path) -> None:
    from torchvision.models import resnet18, resnet34

    torch.manual_seed(3)
    reference = resnet18(weights=None)
    good = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), good)
    model = build_model(tiny_cfg("MODEL.BACKBONE.PRETRAINED", str(good), "MODEL.BACKBONE.FREEZE_AT", "2"))
    assert torch.equal(model.backbone.body.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    assert torch.equal(model.backbone.body.bn1.running_var, reference.bn1.running_var)  # into a FrozenBN
    wrong = tmp_path / "r34.pth"
    torch.save(resnet34(weights=None).state_dict(), wrong)
    with pytest.raises(PretrainedWeightsError, match=r"r34\.pth.*unexpected"):
        build_model(tiny_cfg("MODEL.BACKBONE.PRETRAINED", str(wrong)))


def test_coord_channels_follow_the_released_order() -> None:
    feat = torch.zeros(2, 4, 3, 5)
    out = append_coords(feat)
    assert out.shape == (2, 6, 3, 5)
    assert torch.equal(out[0, 4, :, 0], torch.tensor([-1.0, 0.0, 1.0]))  # first: varies along H
    assert torch.equal(out[0, 4, 1], torch.zeros(5))
    assert torch.equal(out[1, 5, 0], torch.linspace(-1, 1, 5))  # second: varies along W
    assert torch.equal(out[:, :4], feat)


def test_deformable_conv_offsets_are_dy_dx_interleaved() -> None:
    torch.manual_seed(0)
    conv = ModulatedDeformConv2d(3, 4, 3, bias=True)
    x = torch.randn(1, 3, 6, 7)
    with torch.no_grad():
        conv.offset_mask.weight.zero_()
        conv.offset_mask.bias.zero_()
        conv.offset_mask.bias[18:] = 20.0  # mask ~ 1
        plain = F.conv2d(x, conv.weight, conv.bias, padding=1)
        assert torch.allclose(conv(x), plain, atol=1e-4)
        conv.offset_mask.bias[1:18:2] = 1.0  # every tap's dx = +1: sample one pixel to the right
        shifted = F.pad(x, (1, 2, 1, 1))[..., 1:]  # zero-padded input, read one column further right
        assert torch.allclose(conv(x), F.conv2d(shifted, conv.weight, conv.bias), atol=1e-4)
        conv.offset_mask.bias[1:18:2] = 0.0
        conv.offset_mask.bias[0:18:2] = 1.0  # every tap's dy = +1: one row down
        shifted = F.pad(x, (1, 1, 1, 2))[..., 1:, :]
        assert torch.allclose(conv(x), F.conv2d(shifted, conv.weight, conv.bias), atol=1e-4)


def test_kernel_projection_is_the_1x1_conv_on_any_shape() -> None:
    proj = KernelProjection(16, 8)
    kernels = torch.randn(2, 5, 3, 16)
    out = proj(kernels)
    assert out.shape == (2, 5, 3, 8)
    as_conv = proj.proj(kernels.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    assert torch.allclose(out, as_conv, atol=1e-6)
    assert proj(torch.randn(4, 16)).shape == (4, 8)


def _install_fakes(monkeypatch, calls: dict) -> None:
    def build_targets(targets, padded_size, level_sizes, embed_size, params):
        assert isinstance(params, TargetParams)
        calls["targets"] = (len(targets), padded_size, level_sizes, embed_size, targets[0].semantic.device)
        return "TARGETS"

    def compute_losses(head, targets, project_thing, project_stuff, params):
        assert targets == "TARGETS" and isinstance(params, LossParams)
        k = head.kernel_features[0].flatten(2).transpose(1, 2)  # (B, h*w, C)
        masks = torch.matmul(project_thing(k), head.mask_embedding.flatten(2))  # (B, h*w, h4*w4)
        return {"loss_fake": masks.mean() + project_stuff(k).mean()}

    def postprocess(head, project_thing, project_stuff, image_sizes, output_sizes, params):
        assert isinstance(params, PostprocessParams)
        calls["post"] = (image_sizes, output_sizes)
        return ["RESULT"] * len(image_sizes)

    for name, fn in (("targets", build_targets), ("losses", compute_losses), ("postprocess", postprocess)):
        module = types.ModuleType(f"panopticdepth_core.modeling.{name}")
        setattr(module, fn.__name__, fn)
        monkeypatch.setitem(sys.modules, module.__name__, module)


def test_forward_calls_targets_losses_and_postprocess_with_the_contract(monkeypatch) -> None:
    calls: dict = {}
    _install_fakes(monkeypatch, calls)
    model = tiny_model().train()
    images = [torch.rand(3, 97, 131) * 255, torch.rand(3, 100, 90) * 255]
    targets = [InstanceTarget(torch.zeros(h, w, dtype=torch.long), torch.zeros(h, w, dtype=torch.long),
                              torch.zeros(h, w)) for h, w in [(97, 131), (100, 90)]]
    losses = model(images, targets)
    assert set(losses) == {"loss_fake"}
    losses["loss_fake"].backward()
    assert model.thing_projection.proj.weight.grad is not None
    assert calls["targets"][:4] == (2, (128, 256), [(16, 32), (8, 16), (4, 8), (2, 4), (1, 2)], (32, 64))
    with pytest.raises(ValueError, match="needs targets"):
        model(images)
    model.eval()
    assert model(images) == ["RESULT", "RESULT"]
    assert calls["post"] == ([(97, 131), (100, 90)], [(97, 131), (100, 90)])
    model(images, output_sizes=[(194, 262), (200, 180)])
    assert calls["post"][1] == [(194, 262), (200, 180)]


def test_bf16_autocast_runs_and_stays_close_to_fp32() -> None:
    model = tiny_model()
    image = torch.rand(3, 97, 131) * 255
    with torch.inference_mode():
        ref = model.predict_heads([image])[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.predict_heads([image])[0]
    assert low.mask_embedding.dtype == torch.bfloat16 and low.depth_embedding.shape == ref.depth_embedding.shape
    scale = ref.mask_embedding.abs().max()
    assert (low.mask_embedding.float() - ref.mask_embedding).abs().max() < 0.1 * scale


def test_target_loss_and_postprocess_settings_are_built_once_per_model(monkeypatch) -> None:
    cfg = tiny_cfg()
    model = random_model(cfg)
    assert model.target_params == TargetParams.from_config(cfg)
    assert model.loss_params == LossParams.from_config(cfg)
    assert model.postprocess_params == PostprocessParams.from_config(cfg)

    def no_lookup(*_args, **_kwargs):
        raise AssertionError("settings rebuilt from the config during a forward pass")

    for kind in (TargetParams, LossParams, PostprocessParams):
        monkeypatch.setattr(kind, "from_config", no_lookup)
    images = [torch.rand(3, 64, 96) * 255]
    semantic = torch.zeros(64, 96, dtype=torch.long)
    semantic[20:40, 30:50] = 13
    instance = (semantic == 13).long()
    losses = model.train()(images, [InstanceTarget(semantic, instance, torch.full((64, 96), 10.0))])
    assert torch.isfinite(sum(losses.values()))
    with torch.no_grad():
        assert len(model.eval()(images)) == 1


def test_heads_from_config_equal_their_plain_constructors() -> None:
    from panopticdepth_core.modeling.heads import (
        DepthFeatureEncoder,
        DepthKernelHead,
        FeatureEncoder,
        KernelHead,
        PositionHead,
        TowerSpec,
    )

    cfg = tiny_cfg("MODEL.POSITION_HEAD.DEFORM", "True")
    m = cfg.MODEL
    spec = TowerSpec.from_config(cfg, "POSITION_HEAD")
    assert spec == TowerSpec(64, 1, True, False, "GN", "MODEL.POSITION_HEAD.NORM")
    pairs = [
        (PositionHead.from_config, lambda: PositionHead(32, 8, 19, spec, m.POSITION_HEAD.THING.BIAS_VALUE)),
        (KernelHead.from_config, lambda: KernelHead(32, 64, TowerSpec.from_config(cfg, "KERNEL_HEAD"))),
        (DepthKernelHead.from_config, lambda: DepthKernelHead(32, 8, TowerSpec.from_config(cfg, "DEPTH_HEAD"))),
        (FeatureEncoder.from_config, lambda: FeatureEncoder(32, TowerSpec.from_config(cfg, "FEATURE_ENCODER"))),
        (DepthFeatureEncoder.from_config,
         lambda: DepthFeatureEncoder(32, 8, TowerSpec.from_config(cfg, "FEATURE_ENCODER"))),
    ]
    for from_config, plain in pairs:
        torch.manual_seed(0)
        a = from_config(cfg).state_dict()
        torch.manual_seed(0)
        b = plain().state_dict()
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
