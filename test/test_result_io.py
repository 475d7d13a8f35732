"""Prediction / ground-truth files: names, round trips, 16-bit depth without wraparound, frame pairing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from panopticdepth_core.evaluation.depth_metrics import DepthMetrics
from panopticdepth_core.evaluation.result_io import (
    PRED_VOID_CLASS,
    frame_stem,
    pair_frames,
    read_depth,
    read_ground_truth,
    read_png,
    read_prediction,
    sequence_and_frame,
    write_prediction,
)

STEM = "000003_000005_munster_000105_000004"


def test_frame_names_follow_the_official_layout():
    assert frame_stem(f"/data/val/{STEM}_leftImg8bit.png") == STEM
    assert frame_stem(f"{STEM}_gtFine_instanceTrainIds.png") == STEM
    assert frame_stem(f"{STEM}_depth.png") == STEM
    assert frame_stem("camera/frame_0042.jpg") == "frame_0042"
    assert sequence_and_frame(STEM) == ("000003", 5)
    assert sequence_and_frame("frankfurt_000000_000294") == (None, None)


def test_prediction_round_trip(tmp_path):
    semantic = np.array([[0, 13, 13], [255, 11, 2]], np.int32)
    instance = np.array([[0, 1, 1], [0, 200, 0]], np.int32)
    depth = np.array([[1.0, 2.5, 80.0], [0.0, 12.25, 0.004]], np.float32)
    image = np.full((2, 3, 3), 100, np.uint8)
    paths = write_prediction(tmp_path, f"{STEM}_leftImg8bit.png", semantic, instance, depth, image=image)
    assert paths.panoptic.name == f"{STEM}_panoptic.png" and paths.depth.name == f"{STEM}_depth.png"
    assert paths.overlay.parent.name == "vis" and paths.depth_color.is_file()
    rgb = read_png(paths.panoptic)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert rgb[1, 0, 0] == PRED_VOID_CLASS and rgb[0, 1].tolist() == [13, 1, 0]
    sem_back, inst_back, depth_back = read_prediction(paths.panoptic, paths.depth)
    assert np.array_equal(sem_back, semantic) and np.array_equal(inst_back, instance)
    assert depth_back.dtype == np.float32
    assert np.allclose(depth_back, depth, atol=0.5 / 256)  # quantised to 1/256 m
    assert depth_back[1, 2] == pytest.approx(1 / 256)  # 0.004 m rounds to one step, not to "invalid"


def test_sixteen_bit_depth_does_not_wrap_around(tmp_path):
    write_prediction(tmp_path / "pred", STEM, np.zeros((1, 2)), np.zeros((1, 2)), np.array([[1.0, 300.0]]))
    Image.fromarray(np.array([[100 * 256, 0]], np.uint16)).save(tmp_path / "gt_depth.png")
    raw_pred = read_png(tmp_path / "pred" / f"{STEM}_depth.png")
    assert raw_pred.dtype in (np.uint16, np.int32)  # stored as 16-bit integers
    assert raw_pred[0, 1] == 65535  # beyond 255.99 m: clipped
    pred, gt = read_depth(tmp_path / "pred" / f"{STEM}_depth.png"), read_depth(tmp_path / "gt_depth.png")
    assert pred[0, 0] == 1.0 and gt[0, 0] == 100.0
    metrics = DepthMetrics()
    metrics.update(pred, gt)
    assert metrics.compute()["abs_rel"] == pytest.approx(0.99)  # |1 - 100| / 100, not (1 - 100) mod 2^16


def test_ground_truth_ids_and_void(tmp_path):
    ids = np.array([[7000, 13001, 13002], [32000, 11001, 0]], np.uint16)
    Image.fromarray(ids).save(tmp_path / f"{STEM}_gtFine_instanceTrainIds.png")
    semantic, instance, depth = read_ground_truth(tmp_path / f"{STEM}_gtFine_instanceTrainIds.png")
    assert semantic.tolist() == [[7, 13, 13], [255, 11, 0]]
    assert instance.tolist() == [[0, 1, 2], [0, 1, 0]]
    assert depth is None


def test_instance_ids_beyond_the_green_channel_are_refused(tmp_path):
    with pytest.raises(ValueError, match="green channel"):
        write_prediction(tmp_path, STEM, np.full((1, 1), 13), np.full((1, 1), 256))


def test_pairing_names_the_missing_prediction(tmp_path):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    (gt_dir / "munster").mkdir(parents=True)
    pred_dir.mkdir()
    for stem in (STEM, "000003_000006_munster_000105_000005"):
        Image.fromarray(np.zeros((2, 2), np.uint16)).save(gt_dir / "munster" / f"{stem}_gtFine_instanceTrainIds.png")
    Image.fromarray(np.zeros((2, 2), np.uint16)).save(gt_dir / "munster" / f"{STEM}_depth.png")
    write_prediction(pred_dir, STEM, np.zeros((2, 2)), np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(FileNotFoundError, match="000003_000006_munster_000105_000005_panoptic.png"):
        pair_frames(pred_dir, gt_dir)
    write_prediction(pred_dir, "000003_000006_munster_000105_000005", np.zeros((2, 2)), np.zeros((2, 2)))
    pairs = pair_frames(pred_dir, gt_dir)
    assert [(p.sequence, p.frame) for p in pairs] == [("000003", 5), ("000003", 6)]
    assert pairs[0].gt_depth is not None and pairs[0].pred_depth is not None
    assert pairs[1].gt_depth is None and pairs[1].pred_depth is None
    with pytest.raises(ValueError, match="same folder"):
        pair_frames(gt_dir, gt_dir)
