"""`panopticdepth eval` end to end on tiny folders in the Cityscapes-DVPS layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from panopticdepth_core.evaluation.result_io import write_prediction
from panopticdepth_ros.cli import main

CAR, ROAD, SKY = 13, 0, 10


def scene(frame: int) -> tuple[np.ndarray, np.ndarray]:
    semantic = np.full((8, 12), ROAD, np.int32)
    semantic[:3] = SKY
    instance = np.zeros_like(semantic)
    semantic[4:7, frame:frame + 4], instance[4:7, frame:frame + 4] = CAR, 1
    return semantic, instance


def write_dataset(root, depth_factor: float = 1.0):
    gt_dir, pred_dir = root / "gt", root / "pred"
    gt_dir.mkdir(parents=True, exist_ok=True)
    depth = np.full((8, 12), 10.0)
    for sequence in range(2):
        for frame in range(3):
            stem = f"{sequence:06d}_{frame:06d}_city_000000_{frame:06d}"
            semantic, instance = scene(frame)
            ids = semantic * 1000 + instance
            ids[0, 0] = 32000  # a void pixel
            Image.fromarray(ids.astype(np.uint16)).save(gt_dir / f"{stem}_gtFine_instanceTrainIds.png")
            Image.fromarray((depth * 256).astype(np.uint16)).save(gt_dir / f"{stem}_depth.png")
            write_prediction(pred_dir, f"{stem}_leftImg8bit.png", semantic, instance, depth * depth_factor)
    return gt_dir, pred_dir


def test_perfect_predictions_score_100(tmp_path, capsys):
    gt_dir, pred_dir = write_dataset(tmp_path)
    out = tmp_path / "metrics.json"
    code = main(["eval", "--pred", str(pred_dir), "--gt", str(gt_dir), "--out", str(out), "--per-class",
                 "--dvpq-k", "1", "2", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "DPQ@0.25" in printed and "car" in printed and "k=3" in printed
    result = json.loads(out.read_text())
    assert result["num_frames"] == 6
    assert result["pq"]["all"]["pq"] == pytest.approx(100.0)
    assert result["dpq"]["mean"] == {"all": 100.0, "things": 100.0, "stuff": 100.0}
    assert result["dvpq"]["3"]["num_windows"] == 2  # two sequences of three frames
    assert result["dvpq"]["mean"]["all"] == pytest.approx(100.0)
    assert result["depth"]["abs_rel"] == 0.0 and result["depth"]["num_images"] == 6


def test_depth_errors_show_in_dpq_and_depth_metrics(tmp_path):
    gt_dir, pred_dir = write_dataset(tmp_path, depth_factor=1.3)  # 30 % too far everywhere
    out = tmp_path / "metrics.json"
    assert main(["eval", "--pred", str(pred_dir), "--gt", str(gt_dir), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["pq"]["all"]["pq"] == pytest.approx(100.0)
    assert result["dpq"]["0.5"]["all"]["pq"] == pytest.approx(100.0)
    assert result["dpq"]["0.25"]["all"]["pq"] == 0.0  # every segment invalidated: all false negatives
    assert result["dpq"]["mean"]["all"] == pytest.approx(100 / 3)
    assert result["depth"]["abs_rel"] == pytest.approx(0.3)
    assert result["depth"]["delta1"] == 0.0 and result["depth"]["delta2"] == 1.0


def test_missing_prediction_is_reported(tmp_path, capsys):
    gt_dir, pred_dir = write_dataset(tmp_path)
    victim = next(pred_dir.glob("000001_000002_*_panoptic.png"))
    victim.unlink()
    assert main(["eval", "--pred", str(pred_dir), "--gt", str(gt_dir)]) == 2
    assert victim.name in capsys.readouterr().err
