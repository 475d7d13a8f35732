"""Monocular depth metrics (AbsRel, SqRel, RMSE, RMSE_log, delta < 1.25^i, SILog) accumulated over a split.

Definitions (g = ground truth, d = prediction, over the N pixels with valid ground truth; log = natural log):

* abs_rel = mean(|d - g| / g)
* sq_rel = mean((d - g)^2 / g)                 Eigen et al. 2014 / monodepth2 ("Sq Rel", in metres)
* sq_rel_kitti = mean(((d - g) / g)^2)         KITTI devkit / DeepLab2 ("sqErrorRel", unitless)
* rmse = sqrt(mean((d - g)^2)), mae = mean(|d - g|)
* rmse_log = sqrt(mean((log d - log g)^2))
* silog = 100 * sqrt(mean(e^2) - mean(e)^2), e = log d - log g   (KITTI devkit / DeepLab2)
* delta1/2/3 = fraction of pixels with max(d / g, g / d) < 1.25, 1.25^2, 1.25^3

Valid pixels: g finite and g > 0 (and g <= max_depth when set). Predictions are clamped to >= min_pred (1e-3 m)
so logs and ratios stay finite. Default reduction "pixels": sums over every valid pixel of the split, then the
formulas (as the official DVPS scripts pool pixels); "images": each metric per image, then the mean over images
(Eigen / monodepth2 / KITTI). See docs/metrics.md.
"""

from __future__ import annotations

import math

import numpy as np

METRIC_NAMES: tuple[str, ...] = ("abs_rel", "sq_rel", "sq_rel_kitti", "rmse", "rmse_log", "silog", "mae",
                                 "delta1", "delta2", "delta3")
REDUCTIONS = ("pixels", "images")

# Running sums kept per split (pooled) and per image: order matters for _metrics_from_sums.
_SUM_NAMES = ("n", "abs_rel", "sq_rel", "sq_rel_kitti", "sq_err", "abs_err", "log_err", "log_sq_err",
              "delta1", "delta2", "delta3")


def _sums(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The running sums of one set of valid pixels (float64 1-D arrays)."""
    diff = pred - gt
    relative = diff / gt
    ratio = pred / gt
    log_err = np.log(ratio)
    return np.array([
        pred.size,
        np.abs(relative).sum(),
        np.dot(diff, relative),  # sum (d - g)^2 / g
        np.dot(relative, relative),
        np.dot(diff, diff),
        np.abs(diff).sum(),
        log_err.sum(),
        np.dot(log_err, log_err),
        np.count_nonzero((ratio < 1.25) & (ratio > 1 / 1.25)),  # max(d / g, g / d) < 1.25
        np.count_nonzero((ratio < 1.25 ** 2) & (ratio > 1 / 1.25 ** 2)),
        np.count_nonzero((ratio < 1.25 ** 3) & (ratio > 1 / 1.25 ** 3)),
    ], dtype=np.float64)


def _metrics_from_sums(sums: np.ndarray) -> dict[str, float]:
    s = dict(zip(_SUM_NAMES, sums))
    n = s["n"]
    mean_log = s["log_err"] / n
    silog_var = max(s["log_sq_err"] / n - mean_log * mean_log, 0.0)  # clamp rounding below zero
    return {
        "abs_rel": s["abs_rel"] / n,
        "sq_rel": s["sq_rel"] / n,
        "sq_rel_kitti": s["sq_rel_kitti"] / n,
        "rmse": math.sqrt(s["sq_err"] / n),
        "rmse_log": math.sqrt(s["log_sq_err"] / n),
        "silog": 100.0 * math.sqrt(silog_var),
        "mae": s["abs_err"] / n,
        "delta1": s["delta1"] / n,
        "delta2": s["delta2"] / n,
        "delta3": s["delta3"] / n,
    }


class DepthMetrics:
    """Accumulates depth errors image by image; `compute()` at the end of the split."""

    def __init__(self, min_pred: float = 1e-3, max_depth: float | None = None) -> None:
        if not min_pred > 0:
            raise ValueError(f"min_pred must be > 0 (it keeps log and ratios finite), got {min_pred}")
        self.min_pred = float(min_pred)
        self.max_depth = None if max_depth is None else float(max_depth)
        self._pooled = np.zeros(len(_SUM_NAMES))
        self._per_image = np.zeros(len(METRIC_NAMES))
        self.num_images = 0

    def update(self, pred_depth: np.ndarray, gt_depth: np.ndarray, mask: np.ndarray | None = None) -> dict | None:
        """Add one image (metres, any numeric dtype); returns its own metrics, or None if it has no valid pixel."""
        pred = np.asarray(pred_depth, dtype=np.float64)
        gt = np.asarray(gt_depth, dtype=np.float64)
        if pred.shape != gt.shape:
            raise ValueError(f"predicted depth {pred.shape} and ground-truth depth {gt.shape} differ in shape")
        valid = np.isfinite(gt) & (gt > 0)
        if self.max_depth is not None:
            valid &= gt <= self.max_depth
        if mask is not None:
            valid &= np.asarray(mask, dtype=bool)
        if not valid.any():
            return None
        # A NaN prediction counts as the worst (smallest) depth rather than poisoning the sums.
        pred_valid = np.nan_to_num(pred[valid], nan=self.min_pred, posinf=np.finfo(np.float64).max / 4)
        sums = _sums(np.maximum(pred_valid, self.min_pred), gt[valid])
        self._pooled += sums
        image_metrics = _metrics_from_sums(sums)
        self._per_image += np.array([image_metrics[name] for name in METRIC_NAMES])
        self.num_images += 1
        return image_metrics

    def compute(self, reduction: str = "pixels") -> dict | None:
        """Metrics over the split, plus num_pixels / num_images / reduction; None if no valid pixel was seen."""
        if reduction not in REDUCTIONS:
            raise ValueError(f"depth reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if self.num_images == 0:
            return None
        if reduction == "pixels":
            metrics = _metrics_from_sums(self._pooled)
        else:
            metrics = dict(zip(METRIC_NAMES, (self._per_image / self.num_images).tolist()))
        metrics.update(num_pixels=int(self._pooled[0]), num_images=self.num_images, reduction=reduction)
        return metrics
