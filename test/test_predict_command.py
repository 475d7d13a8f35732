"""`panopticdepth predict` writes the official layout that `panopticdepth eval` (and the official evaluator) reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_model import write_random_model

from panopticdepth_core.config import load_config
from panopticdepth_core.data.synthetic import write_synthetic_dataset
from panopticdepth_core.evaluation.result_io import read_prediction
from panopticdepth_core.inference.predictor import Predictor
from panopticdepth_ros.cli import main

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.SEMANTIC_FPN.CONVS_DIM", "32", "MODEL.POSITION_HEAD.CONVS_DIM", "32",
    "MODEL.KERNEL_HEAD.CONVS_DIM", "32", "MODEL.FEATURE_ENCODER.CONVS_DIM", "32", "MODEL.DEPTH_HEAD.CONVS_DIM", "32",
    "MODEL.POSITION_HEAD.DEFORM", "False", "MODEL.FEATURE_ENCODER.DEFORM", "False", "MODEL.DEPTH_HEAD.DEFORM", "False",
    "INPUT.MIN_SIZE_TEST", "0", "MODEL.POSITION_HEAD.THING.THRES", "0.0", "MODEL.INFERENCE.INST_THRES", "0.3",
]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> tuple[Path, Path]:
    cfg = load_config(REPO / "config/synthetic/PanopticDepth-R18-synthetic-small.yaml", TINY)
    # every pixel labelled: depth everywhere, so depth scaling shows in the files
    return write_random_model(tmp_path_factory.mktemp("model"), cfg, label_everything=True)


def test_predict_then_eval(tiny_model, tmp_path: Path) -> None:
    config, weights = tiny_model
    gt = write_synthetic_dataset(tmp_path / "gt", num=2, size=(64, 128), seed=3, split="val", progress=False)
    out = tmp_path / "pred"
    assert main(["predict", "--input", str(gt), "--output", str(out), "--config", str(config),
                 "--weights", str(weights), "--quiet"]) == 0
    frames = sorted(gt.glob("*_leftImg8bit.png"))
    assert len(frames) == 2
    for frame in frames:
        stem = frame.name[: -len("_leftImg8bit.png")]
        semantic, instance, depth = read_prediction(out / f"{stem}_panoptic.png", out / f"{stem}_depth.png")
        assert semantic.shape == (64, 128) and depth.shape == (64, 128)
        assert (out / "vis" / f"{stem}_overlay.png").is_file() and (out / "vis" / f"{stem}_depth_color.png").is_file()
        # the files hold what the Predictor returns (depth quantised to 1/256 m by the PNG)
        from panopticdepth_core.data.image_io import read_rgb

        camera = json.loads((gt / f"{stem}_camera.json").read_text())
        direct = Predictor.from_files(config, weights)(read_rgb(frame), focal=camera["intrinsic"]["fx"])
        assert (direct.depth > 0).mean() > 0.5
        direct_sem = np.where(direct.semantic == 255, 19, direct.semantic)  # void is written as class 19
        assert np.array_equal(np.where(semantic == 255, 19, semantic), direct_sem)
        assert np.abs(depth - np.clip(direct.depth, 0, 255.99)).max() <= 1 / 256 + 1e-6
    metrics = tmp_path / "metrics.json"
    assert main(["eval", "--pred", str(out), "--gt", str(gt), "--out", str(metrics)]) == 0
    result = json.loads(metrics.read_text())
    assert result["num_frames"] == 2 and 0.0 <= result["pq"]["all"]["pq"] <= 100.0


def test_predict_names_a_missing_input(tiny_model, tmp_path: Path, capsys) -> None:
    config, weights = tiny_model
    code = main(["predict", "--input", str(tmp_path / "nope.png"), "--output", str(tmp_path / "o"),
                 "--config", str(config), "--weights", str(weights)])
    assert code == 2 and "nope.png" in capsys.readouterr().err


def test_predict_reads_the_config_stored_in_the_weights(tiny_model, tmp_path: Path, capsys) -> None:
    """Like `panopticdepth bag` and the node: --weights alone brings its own config (the tiny model has 32-channel
    heads, so the shipped model's config could not load these weights)."""
    config, weights = tiny_model
    gt = write_synthetic_dataset(tmp_path / "gt", num=1, size=(64, 128), seed=4, split="val", progress=False)
    with_config, weights_only = tmp_path / "a", tmp_path / "b"
    assert main(["predict", "--input", str(gt), "--output", str(with_config), "--config", str(config),
                 "--weights", str(weights), "--quiet", "--no-vis"]) == 0
    assert main(["predict", "--input", str(gt), "--output", str(weights_only), "--weights", str(weights),
                 "--quiet", "--no-vis"]) == 0
    for written in sorted(with_config.glob("*.png")):
        assert written.read_bytes() == (weights_only / written.name).read_bytes(), written.name
    code = main(["predict", "--input", str(gt), "--output", str(tmp_path / "c"), "--config", str(config)])
    assert code == 1 and "--config is set but --weights is not" in capsys.readouterr().err


def test_predict_scales_depth_by_the_camera(tiny_model, tmp_path: Path, capsys) -> None:
    """X_camera.json next to an image gives its focal length; --focal overrides it; without either the model's
    canonical camera is assumed and the command says so once. A camera file that is not JSON stops with its path."""
    config, weights = tiny_model
    gt = write_synthetic_dataset(tmp_path / "gt", num=2, size=(64, 128), seed=5, split="val", progress=False,
                                 focal=40.0)
    common = ["--config", str(config), "--weights", str(weights), "--quiet", "--no-vis"]

    def depths(out: Path) -> list[np.ndarray]:
        return [read_prediction(p, p.with_name(p.name.replace("_panoptic", "_depth")))[2]
                for p in sorted(out.glob("*_panoptic.png"))]

    assert main(["predict", "--input", str(gt), "--output", str(tmp_path / "files"), *common]) == 0
    assert "note:" not in capsys.readouterr().err  # every image had its camera file
    assert main(["predict", "--input", str(gt), "--output", str(tmp_path / "flag"), "--focal", "80", *common]) == 0
    for from_files, from_flag in zip(depths(tmp_path / "files"), depths(tmp_path / "flag")):
        valid = (from_files > 0.5) & (from_files < 120)  # away from the PNG's 1/256 m steps and its 256 m cap
        assert valid.mean() > 0.5
        np.testing.assert_allclose(from_flag[valid], 2 * from_files[valid], rtol=0.01, atol=2 / 256)
    for camera in gt.glob("*_camera.json"):
        camera.unlink()
    assert main(["predict", "--input", str(gt), "--output", str(tmp_path / "none"), *common]) == 0
    err = capsys.readouterr().err
    assert err.count("note:") == 1 and "canonical camera" in err and "--focal" in err
    next(iter(sorted(gt.glob("*_leftImg8bit.png")))).with_name("camera.json").write_text("{not json")
    code = main(["predict", "--input", str(gt), "--output", str(tmp_path / "bad"), *common])
    assert code == 1 and "camera.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # argparse: usage error, status 2
        main(["predict", "--input", str(gt), "--output", str(tmp_path / "bad"), "--focal", "0", *common])
    assert usage.value.code == 2 and "--focal: must be a positive number" in capsys.readouterr().err


def test_sequences_are_grouped_by_their_dvps_names() -> None:
    from panopticdepth_core.tracking.sequences import frame_times, sequence_groups

    names = ["000002_000001_a_000002_000001_leftImg8bit.png", "photo.jpg", "000001_000005_x_leftImg8bit.png",
             "000002_000000_a_000002_000000_leftImg8bit.png", "000001_000004_x_leftImg8bit.png"]
    assert sequence_groups(names) == [[3, 0], [1], [4, 2]]
    assert sequence_groups(names, one_sequence=True) == [[0, 1, 2, 3, 4]]
    assert frame_times(names, [4, 2]) == [4.0, 5.0] and frame_times(names, [1]) == [0.0]


def test_predict_tracks_within_a_drive(tiny_model, tmp_path: Path) -> None:
    """Tracked instance ids are what a tracker makes of the Predictor's frames, in frame order; --no-track keeps
    the Predictor's per-frame numbering; classes are the same either way."""
    from panopticdepth_core.data.cityscapes_dps import read_camera_json
    from panopticdepth_core.data.image_io import read_rgb
    from panopticdepth_core.data.synthetic import write_synthetic_sequences
    from panopticdepth_core.tracking.sequences import camera_pose
    from panopticdepth_core.tracking.tracker import InstanceTracker, TrackerSettings

    config, weights = tiny_model
    gt = write_synthetic_sequences(tmp_path / "gt", sequences=1, frames=3, size=(64, 128), seed=2, progress=False)
    common = ["--input", str(gt), "--config", str(config), "--weights", str(weights), "--quiet", "--no-vis"]
    assert main(["predict", "--output", str(tmp_path / "on"), *common]) == 0
    assert main(["predict", "--output", str(tmp_path / "off"), "--no-track", *common]) == 0
    predictor = Predictor.from_files(config, weights)
    tracker = InstanceTracker(TrackerSettings(id_limit=255))
    things = 0
    for f, frame in enumerate(sorted(gt.glob("*_leftImg8bit.png"))):
        stem = frame.name[: -len("_leftImg8bit.png")]
        camera = gt / f"{stem}_camera.json"
        K = read_camera_json(camera)
        direct = predictor(read_rgb(frame), focal=K[0, 0])
        tracked = tracker.update(direct.panoptic, direct.segments, direct.depth, K, camera_pose(camera), float(f))
        sem_on, inst_on, _ = read_prediction(tmp_path / "on" / f"{stem}_panoptic.png")
        sem_off, inst_off, _ = read_prediction(tmp_path / "off" / f"{stem}_panoptic.png")
        assert np.array_equal(sem_on, sem_off)
        assert np.array_equal(inst_off, direct.instance)
        assert np.array_equal(inst_on, tracked.instance)
        things += len(tracked.ids)
    assert things > 0, "the tiny model must show some things for this test to mean anything"
