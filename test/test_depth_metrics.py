"""Depth metrics against values worked out by hand on a few pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from panopticdepth_core.evaluation.depth_metrics import DepthMetrics

GT = np.array([[1.0, 2.0], [4.0, 8.0]])
PRED = np.array([[1.0, 3.0], [2.0, 8.0]])  # errors 0, +1, -2, 0; ratios 1, 1.5, 2, 1


def expected_by_hand() -> dict[str, float]:
    log_errors = [0.0, math.log(1.5), math.log(0.5), 0.0]
    mean_log = sum(log_errors) / 4
    mean_sq_log = sum(e * e for e in log_errors) / 4
    return {
        "abs_rel": (0 + 1 / 2 + 2 / 4 + 0) / 4,  # 0.25
        "sq_rel": (0 + 1 / 2 + 4 / 4 + 0) / 4,  # 0.375, Eigen / monodepth2
        "sq_rel_kitti": (0 + (1 / 2) ** 2 + (2 / 4) ** 2 + 0) / 4,  # 0.125, KITTI / DeepLab2
        "rmse": math.sqrt((0 + 1 + 4 + 0) / 4),
        "mae": 3 / 4,
        "rmse_log": math.sqrt(mean_sq_log),
        "silog": 100 * math.sqrt(mean_sq_log - mean_log**2),
        "delta1": 2 / 4,  # ratios < 1.25: the two exact pixels
        "delta2": 3 / 4,  # 1.5 < 1.5625
        "delta3": 3 / 4,  # 2 > 1.953125
    }


def test_four_pixels_by_hand():
    metrics = DepthMetrics()
    metrics.update(PRED, GT)
    result = metrics.compute()
    for name, value in expected_by_hand().items():
        assert result[name] == pytest.approx(value, rel=1e-12), name
    assert result["num_pixels"] == 4 and result["num_images"] == 1


def test_invalid_ground_truth_pixels_are_ignored():
    gt = np.concatenate([GT, [[0.0, np.nan]]], axis=0)  # (3, 2): last row has no valid depth
    pred = np.concatenate([PRED, [[123.0, 0.0]]], axis=0)
    metrics = DepthMetrics()
    metrics.update(pred, gt)
    result = metrics.compute()
    for name, value in expected_by_hand().items():
        assert result[name] == pytest.approx(value, rel=1e-12), name
    assert result["num_pixels"] == 4


def test_mask_and_max_depth_select_pixels():
    metrics = DepthMetrics(max_depth=5.0)  # drops the 8 m pixel
    metrics.update(PRED, GT, mask=np.array([[True, True], [True, False]]))
    assert metrics.compute()["abs_rel"] == pytest.approx((0 + 0.5 + 0.5) / 3)


def test_zero_prediction_is_clamped_not_infinite():
    metrics = DepthMetrics(min_pred=1e-3)
    metrics.update(np.array([0.0]), np.array([2.0]))
    result = metrics.compute()
    assert result["abs_rel"] == pytest.approx((2.0 - 1e-3) / 2.0)
    assert result["rmse_log"] == pytest.approx(abs(math.log(1e-3 / 2.0)))
    assert result["silog"] == pytest.approx(0.0, abs=1e-9)  # one pixel: no spread


def test_pooled_pixels_versus_mean_of_images():
    metrics = DepthMetrics()
    metrics.update(np.array([2.0]), np.array([1.0]))  # abs_rel 1.0 on 1 pixel
    metrics.update(np.array([1.0, 1.0, 1.0]), np.array([1.0, 1.0, 1.0]))  # abs_rel 0 on 3 pixels
    assert metrics.compute("pixels")["abs_rel"] == pytest.approx(1 / 4)
    assert metrics.compute("images")["abs_rel"] == pytest.approx(1 / 2)
    assert metrics.compute("pixels")["rmse"] == pytest.approx(math.sqrt(1 / 4))
    assert metrics.compute("images")["rmse"] == pytest.approx((1 + 0) / 2)
    with pytest.raises(ValueError, match="reduction"):
        metrics.compute("frames")


def test_silog_is_scale_invariant_and_nothing_without_valid_pixels():
    metrics = DepthMetrics()
    metrics.update(PRED * 3.0, GT)
    scaled = metrics.compute()["silog"]
    assert scaled == pytest.approx(expected_by_hand()["silog"])
    empty = DepthMetrics()
    assert empty.update(PRED, np.zeros_like(GT)) is None
    assert empty.compute() is None
