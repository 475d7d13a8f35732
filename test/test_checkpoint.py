"""Our checkpoints: safetensors round trip with the config inside, .pth state dicts, and clear errors."""

from __future__ import annotations

import pytest
import torch
from tiny_model import random_model, tiny_cfg

from panopticdepth_core.checkpoint.io import (
    CheckpointError,
    checkpoint_config,
    load_model_weights,
    read_checkpoint,
    save_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(seed: int, *extra: str):
    # the stem is frozen (FREEZE_AT 1), so the round trips cover a frozen stage's buffers too
    return random_model(tiny_cfg("MODEL.BACKBONE.FREEZE_AT", "1", *extra), seed).eval()


def _outputs(model, image):
    with torch.no_grad():
        head, _, _ = model.predict_heads([image])
    return [*head.center_logits, *head.kernel_features, *head.depth_kernel_params, head.mask_embedding,
            head.depth_embedding]


def test_safetensors_round_trip_gives_identical_outputs_and_config(tmp_path) -> None:
    source = _model(0)
    # Give the BN statistics non-default values so buffers are covered too.
    source.train()
    with torch.no_grad():
        source.predict_heads([torch.rand(3, 64, 96) * 255, torch.rand(3, 64, 96) * 255])
    source.eval()
    path = save_checkpoint(source, tmp_path / "model.safetensors", source.cfg, metadata={"iteration": "7"})
    target = _model(1)
    image = torch.rand(3, 75, 101) * 255
    assert not all(torch.equal(a, b) for a, b in zip(_outputs(source, image), _outputs(target, image)))
    report = load_model_weights(target, path)
    assert report.loaded == len(source.state_dict()) and not report.missing and not report.unexpected
    assert all(torch.equal(a, b) for a, b in zip(_outputs(source, image), _outputs(target, image)))
    cfg = checkpoint_config(path)
    assert cfg.dump() == source.cfg.dump()
    _, meta = read_checkpoint(path)
    assert meta["iteration"] == "7" and meta["format"] == "panopticdepth"
    assert not (tmp_path / "model.safetensors.tmp").exists()


def test_pth_state_dict_is_accepted(tmp_path) -> None:
    source, target = _model(0), _model(1)
    torch.save({"model": source.state_dict()}, tmp_path / "weights.pth")
    load_model_weights(target, tmp_path / "weights.pth")
    image = torch.rand(3, 64, 64) * 255
    assert all(torch.equal(a, b) for a, b in zip(_outputs(source, image), _outputs(target, image)))
    assert checkpoint_config(tmp_path / "weights.pth") is None


def test_corrupt_file_gives_a_clear_error(tmp_path) -> None:
    good = save_checkpoint(_model(0), tmp_path / "good.safetensors")
    data = good.read_bytes()
    for name, payload in (("garbage.safetensors", b"\x00\x01 not a checkpoint at all"),
                          ("truncated.safetensors", data[: len(data) // 2])):
        path = tmp_path / name
        path.write_bytes(payload)
        with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
            load_model_weights(_model(0), path)
    bad_pth = tmp_path / "bad.pth"
    bad_pth.write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(CheckpointError, match=r"bad\.pth.*weights_only"):
        load_model_weights(_model(0), bad_pth)
    with pytest.raises(CheckpointError, match="not found.*missing.safetensors"):
        load_model_weights(_model(0), tmp_path / "missing.safetensors")


def test_mismatched_checkpoint_names_the_keys(tmp_path) -> None:
    no_depth = _model(0, "MODEL.DEPTH_ON", "False")
    path = save_checkpoint(no_depth, tmp_path / "nodepth.safetensors")
    model = _model(0)
    with pytest.raises(CheckpointError, match=r"nodepth\.safetensors.*missing 13 \(depth_kernel_head\.tower\.0"):
        load_model_weights(model, path)
    report = load_model_weights(model, path, strict=False)
    assert report.missing and all("depth" in k for k in report.missing) and not report.unexpected
    wider = _model(0, "MODEL.FEATURE_ENCODER.CONVS_DIM", "64")
    path = save_checkpoint(wider, tmp_path / "wider.safetensors")
    with pytest.raises(CheckpointError, match=r"different shape 9 \(.*feature_encoder\.tower\.0\.conv\.weight: checkpoint \(64, 34, 3, 3\) vs model \(32, 34"):
        load_model_weights(model, path, strict=False)


def test_detectron2_checkpoint_gets_a_convert_hint(tmp_path) -> None:
    path = tmp_path / "model_final.pth"
    torch.save({"model": {"backbone.bottom_up.stem.conv1.weight": torch.zeros(64, 3, 7, 7)}}, path)
    with pytest.raises(CheckpointError, match="panopticdepth convert"):
        load_model_weights(_model(0), path)
