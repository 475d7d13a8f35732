"""Metric depth follows the camera: training targets and predictions are expressed for the model's canonical camera
(MODEL.CANONICAL_FOCAL) and converted with each image's focal length, so scenes seen by different cameras, or at
different resolutions, agree. Scenes are rendered by the synthetic generator: one seed is the same street whatever
the camera, so the same content can be seen through three focal lengths.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from tiny_model import TINY_NODE_MODEL, random_model, tiny_cfg

from panopticdepth_core.checkpoint.io import (
    CheckpointError,
    checkpoint_canonical_focal,
    export_weights,
    save_checkpoint,
)
from panopticdepth_core.config import ConfigError, get_default_config
from panopticdepth_core.data.synthetic import render_scene, scene_seed
from panopticdepth_core.data.transforms import (
    ResizeShortestEdge,
    SampleTransform,
    build_train_transform,
    resize_frame,
)
from panopticdepth_core.inference.predictor import Predictor

pytestmark = pytest.mark.usefixtures("one_thread")

SEED = scene_seed(1_000_000, 3)
FC = 160.0  # canonical focal of these tests (the shipped model's): fx at a 128x256 network input


def _same_street_three_cameras() -> dict[float, object]:
    """One street seen with the 77-degree field of view at three resolutions: fx 80 at 64x128, 160 at 128x256,
    320 at 256x512 (one camera resized, or three cameras of the same lens and different sensors)."""
    return {fx: render_scene(SEED, (int(fx * 0.8), int(fx * 1.6)), fx) for fx in (80.0, 160.0, 320.0)}


def _agree(a: np.ndarray, b: np.ndarray) -> float:
    """Median relative difference over pixels valid in both (borders of objects differ between resolutions)."""
    valid = (a > 0) & (b > 0)
    assert valid.mean() > 0.5
    return float(np.median(np.abs(a[valid] - b[valid]) / b[valid]))


def test_synthetic_scene_is_the_same_street_at_every_camera() -> None:
    scenes = _same_street_three_cameras()
    small, mid, large = scenes[80.0].depth, scenes[160.0].depth, scenes[320.0].depth
    assert _agree(large[1::2, 1::2], mid) < 0.01 and _agree(mid[::2, ::2], small) < 0.02
    # a narrower lens on the same sensor sees the middle of the same street
    tele = render_scene(SEED, (128, 256), 320.0).depth
    assert _agree(tele[32:96:2, 64:192:2], mid[48:80, 96:160]) < 0.02


# -------------------------------------------------------------------------------------------- training targets
def _to_network_input(sample, focal_canonical: float = FC):
    """The shipped model's training chain for geometry: shortest edge to 128 (max 256); depth per focal_canonical."""
    torch.manual_seed(0)
    return SampleTransform([ResizeShortestEdge([128], 256)], focal_canonical=focal_canonical)(sample)


def test_training_targets_of_three_cameras_agree_in_the_canonical_camera() -> None:
    scenes = _same_street_three_cameras()
    targets = {fx: _to_network_input(s) for fx, s in scenes.items()}
    for fx, example in targets.items():
        assert tuple(example.image.shape[-2:]) == (128, 256)
        assert float(example.intrinsics[0, 0]) == pytest.approx(160.0, rel=1e-3), fx
    reference = scenes[160.0].depth  # 128x256 at fx 160: its own depth is the canonical target
    np.testing.assert_array_equal(targets[160.0].target.depth.numpy(), reference)
    for fx in (80.0, 320.0):
        assert _agree(targets[fx].target.depth.numpy(), reference) < 0.02, fx
    # The released rule (canonical focal unknown) keeps each camera's own scale: the 256x512 frame halved by the
    # resize gets twice the depth, the 64x128 one half of it. That is what the conversion removes.
    legacy = _to_network_input(scenes[320.0], focal_canonical=0.0).target.depth.numpy()
    assert _agree(legacy / 2, reference) < 0.02 and _agree(legacy, reference) > 0.9


def test_one_frame_at_two_resize_factors_converts_to_the_same_metric_depth() -> None:
    """Targets of one frame resized by 1 and by 1.5 differ (the enlarged frame looks closer), and each, converted
    back with its own fx, is the frame's metric depth; for a frame from the canonical camera both equal the
    released rule (depth divided by the resize factor), with and without DEPTH_BOUND."""
    for stored_fx in (160.0, 320.0, 80.0):
        sample = render_scene(SEED, (64, 128), stored_fx / 2)  # fx at 64x128; x2 below brings it to stored_fx
        for zoom in (2, 3):  # 128x256 and 192x384
            for bound in (True, False):
                example = SampleTransform([lambda f, z=zoom: resize_frame(f, 64 * z, 128 * z)],
                                          focal_canonical=FC, depth_bound=bound)(sample)
                fx = float(example.intrinsics[0, 0])
                assert fx == pytest.approx(stored_fx / 2 * zoom)
                target = example.target.depth.numpy()
                metric = np.kron(sample.depth, np.ones((zoom, zoom), np.float32))  # nearest upsampling by zoom
                np.testing.assert_allclose(target * fx / FC, metric, rtol=1e-6)
    # A stored frame from the canonical camera: the released rule, exactly.
    sample = render_scene(SEED, (128, 256), FC)
    for size in ((192, 384), (64, 128), (96, 192)):
        for bound in (True, False):
            new = SampleTransform([lambda f, s=size: resize_frame(f, *s)], focal_canonical=FC, depth_bound=bound)
            old = SampleTransform([lambda f, s=size: resize_frame(f, *s)], focal_canonical=0.0, depth_bound=bound)
            a, b = new(sample).target.depth, old(sample).target.depth
            torch.testing.assert_close(a, b, rtol=1e-6, atol=0.0)
            scale = size[0] / 128
            expected = torch.from_numpy(sample.depth)[None, None]
            expected = torch.nn.functional.interpolate(expected, size=size, mode="nearest")[0, 0] / scale
            if bound:
                expected = expected.clamp(max=float(sample.depth.max()))
            torch.testing.assert_close(a, expected, rtol=1e-6, atol=0.0)


def test_frames_without_intrinsics_fall_back_to_the_released_rule(caplog: pytest.LogCaptureFixture) -> None:
    sample = render_scene(SEED, (64, 128), 80.0)
    sample.intrinsics = None
    transform = SampleTransform([lambda f: resize_frame(f, 128, 256)], focal_canonical=FC, dataset="no_cameras")
    with caplog.at_level("WARNING"):
        first = transform(sample).target.depth.numpy()
        transform(sample)
    np.testing.assert_allclose(first[::2, ::2], sample.depth / 2, rtol=1e-6)
    said = [r.getMessage() for r in caplog.records if "no usable intrinsics" in r.getMessage()]
    assert len(said) == 1 and "no_cameras" in said[0]  # once per data set
    # an unusable K (zero or NaN focal length, e.g. an uncalibrated camera's camera_info in a bag extract) is
    # treated like none, never as a division by zero
    for bad in (0.0, math.nan):
        sample.intrinsics = np.array([[bad, 0, 63.5], [0, bad, 31.5], [0, 0, 1]])
        target = SampleTransform([lambda f: resize_frame(f, 128, 256)], focal_canonical=FC)(sample).target.depth
        np.testing.assert_allclose(target.numpy(), first, rtol=1e-6)


def test_train_transform_from_config_converts_to_the_canonical_camera() -> None:
    cfg = get_default_config()
    cfg.MODEL.CANONICAL_FOCAL = FC
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (128,), 256
    cfg.INPUT.FLIP = cfg.INPUT.COLOR_AUG = False
    sample = render_scene(SEED, (256, 512), 320.0)
    example = build_train_transform(cfg)(sample)
    assert _agree(example.target.depth.numpy(), render_scene(SEED, (128, 256), 160.0).depth) < 0.02


# ------------------------------------------------------------------------------------------------- inference
@pytest.fixture(scope="module")
def predictor() -> Predictor:
    cfg = tiny_cfg("MODEL.CANONICAL_FOCAL", str(FC), "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "256",
                   base=TINY_NODE_MODEL)
    return Predictor(cfg, None, model=random_model(cfg, label_everything=True))


def test_predicted_depth_of_three_cameras_agrees_after_scaling(predictor: Predictor) -> None:
    """The network sees nearly the same 128x256 input from each camera; scaled by fx_effective / fx_canonical
    (all 160 here) the depths agree. Before, the Predictor multiplied by the resize factor alone: the 256x512
    camera got half the depth of the 128x256 one (measured with the shipped model: 0.47x the truth)."""
    scenes = _same_street_three_cameras()
    preds = {fx: predictor(s.image, focal=fx) for fx, s in scenes.items()}
    for fx, pred in preds.items():
        scaling = pred.depth_scaling
        assert scaling.rule == "camera" and scaling.focal_canonical == FC and not scaling.assumed
        assert scaling.focal_effective == pytest.approx(160.0, rel=1e-3) and scaling.factor == pytest.approx(1.0, 1e-3)
        assert pred.depth.shape == scenes[fx].depth.shape
    mid = preds[160.0].depth
    assert (mid > 0).mean() > 0.9
    assert _agree(preds[320.0].depth[1::2, 1::2], mid) < 0.05
    assert _agree(preds[80.0].depth, mid[::2, ::2]) < 0.05


def test_depth_scales_with_the_focal_length_and_is_flagged_without_one(predictor: Predictor) -> None:
    image = render_scene(SEED, (128, 256), 160.0).image
    base = predictor(image, focal=160.0)
    tele = predictor(image, focal=320.0)  # the same picture from a lens of twice the focal length: twice as far
    wide = predictor(image, focal=80.0)
    np.testing.assert_allclose(tele.depth, 2 * base.depth, rtol=1e-6)
    np.testing.assert_allclose(wide.depth, 0.5 * base.depth, rtol=1e-6)
    assert [s.mean_depth for s in tele.segments] == pytest.approx([2 * s.mean_depth for s in base.segments])
    guessed = predictor(image)  # no focal: the canonical camera is assumed, and said so
    np.testing.assert_allclose(guessed.depth, base.depth, rtol=1e-6)
    assert guessed.depth_scaling.rule == "assumed-canonical" and guessed.depth_scaling.assumed
    # the same assumption at another resolution: the canonical field of view, not the released resize rule
    big = predictor(render_scene(SEED, (256, 512), 320.0).image)
    assert big.depth_scaling.factor == 1.0
    batch = predictor.predict_batch([image, image], focals=[160.0, None])
    assert [p.depth_scaling.rule for p in batch] == ["camera", "assumed-canonical"]
    for bad in (0.0, -5.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="focal"):
            predictor(image, focal=bad)
    with pytest.raises(ValueError, match="2 images but 1 focal"):
        predictor.predict_batch([image, image], focals=[160.0])


def test_a_model_without_canonical_focal_keeps_the_released_rule() -> None:
    cfg = tiny_cfg("INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "256", base=TINY_NODE_MODEL)
    legacy = Predictor(cfg, None, model=random_model(cfg, label_everything=True))
    assert legacy.focal_canonical is None
    image = render_scene(SEED, (256, 512), 320.0).image
    pred = legacy(image, focal=320.0)
    assert pred.depth_scaling.rule == "legacy" and pred.depth_scaling.factor == 0.5


# ----------------------------------------------------------------------------------- stored with the model
def test_canonical_focal_is_stored_with_the_weights_and_must_agree(tmp_path) -> None:
    cfg = tiny_cfg("MODEL.CANONICAL_FOCAL", "160", base=TINY_NODE_MODEL)
    model = random_model(cfg)
    path = save_checkpoint(model, tmp_path / "m.safetensors", cfg)
    assert checkpoint_canonical_focal(path) == 160.0
    exported = export_weights(path, tmp_path / "half.safetensors", "fp16")
    assert checkpoint_canonical_focal(exported) == 160.0
    assert Predictor(cfg, exported).focal_canonical == 160.0
    # A config without the key takes the file's; a config that says otherwise is refused, naming both.
    plain = tiny_cfg(base=TINY_NODE_MODEL)
    assert Predictor(plain, exported).focal_canonical == 160.0
    other = tiny_cfg("MODEL.CANONICAL_FOCAL", "320", base=TINY_NODE_MODEL)
    with pytest.raises(ConfigError, match=r"CANONICAL_FOCAL is 320 px but .*half.safetensors.* 160 px"):
        Predictor(other, exported)
    with pytest.raises(CheckpointError, match="disagrees"):
        export_weights(path, tmp_path / "bad.safetensors", "fp16", config=_write_cfg(tmp_path, other))
    # A weights file without it (saved without a config) records none.
    bare = save_checkpoint(model.state_dict(), tmp_path / "bare.safetensors")
    assert checkpoint_canonical_focal(bare) is None


def _write_cfg(folder, cfg) -> str:
    path = folder / "other.yaml"
    path.write_text(cfg.dump())
    return str(path)


def test_bad_canonical_focal_in_config_or_metadata_is_named(tmp_path) -> None:
    with pytest.raises(ConfigError, match="MODEL.CANONICAL_FOCAL"):
        tiny_cfg("MODEL.CANONICAL_FOCAL", "-1")
    cfg = tiny_cfg(base=TINY_NODE_MODEL)
    path = save_checkpoint(random_model(cfg), tmp_path / "m.safetensors", cfg, metadata={"canonical_focal": "nan"})
    with pytest.raises(CheckpointError, match="canonical_focal"):
        checkpoint_canonical_focal(path)
    # camera files: not JSON, zero focal -> errors naming the file
    from panopticdepth_core.data.cityscapes_dps import read_camera_json
    from panopticdepth_core.data.image_io import DataError

    broken = tmp_path / "x_camera.json"
    broken.write_text("{not json")
    with pytest.raises(DataError, match="x_camera.json"):
        read_camera_json(broken)
    broken.write_text(json.dumps({"intrinsic": {"fx": 0, "fy": 0, "u0": 1, "v0": 1}}))
    with pytest.raises(DataError, match="x_camera.json.*fx=0"):
        read_camera_json(broken)
