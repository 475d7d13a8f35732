"""Depth-aware panoptic quality: DPQ^lambda per frame and DVPQ^lambda_k over windows of k frames of a sequence.

As in ViP-DeepLab's Cityscapes-DVPS evaluator: on every pixel with valid ground-truth depth (d > 0) whose predicted
depth p has |p - d| / d > lambda, the predicted segment id is replaced by an id that no ground truth carries and
that is never counted as a false positive (the scripts use class 19, outside the 19 scored classes). That is
exactly "set the prediction to void" in panoptic_quality's terms, and is what is done here. PQ is then computed
as usual. The official default thresholds are lambda in {0.5, 0.25, 0.1}; DPQ is their mean.

DVPQ^lambda_k scores windows of k consecutive frames of a sequence as one image (the official script concatenates
the k frames side by side), so a predicted instance must keep its id across the window to be matched to a tracked
ground-truth instance. Statistics are summed over all windows of all sequences (a sequence of n frames gives
n - k + 1 windows) before PQ is taken. ViP-DeepLab reports k in {1, 2, 3, 4}; DVPQ is the mean over k and lambda.
k = 1 is DPQ itself. Windows are formed by merging per-frame overlap tables, which gives the same counts as
concatenating the images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.classes import ClassInfo
from .panoptic_quality import (
    ClassSet,
    OverlapTable,
    PixelPairs,
    PQStats,
    match_segments,
    segment_codes,
    summarize_stats,
)

DEFAULT_LAMBDAS: tuple[float, ...] = (0.5, 0.25, 0.1)
DEFAULT_DVPQ_KS: tuple[int, ...] = (1, 2, 3, 4)


def lambda_key(lam: float) -> str:
    """The JSON / dict key of a threshold: 0.5 -> "0.5"."""
    return f"{lam:g}"


def relative_depth_error(pred_depth: np.ndarray, gt_depth: np.ndarray) -> np.ndarray:
    """(H, W) float64 |p - d| / d where the ground truth is valid (finite, > 0), NaN elsewhere.

    Both maps are converted to float64 first, so 16-bit PNG values never wrap around when subtracted.
    """
    pred = np.asarray(pred_depth, dtype=np.float64)
    gt = np.asarray(gt_depth, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"predicted depth {pred.shape} and ground-truth depth {gt.shape} differ in shape")
    valid = np.isfinite(gt) & (gt > 0)
    safe_gt = np.where(valid, gt, 1.0)
    relative = np.abs(pred - safe_gt) / safe_gt
    relative[np.isnan(relative)] = np.inf  # a NaN prediction on valid ground truth is an outlier at any lambda
    relative[~valid] = np.nan
    return relative


def outliers_at(relative_error: np.ndarray, lam: float) -> np.ndarray:
    """(H, W) bool: pixels DPQ^lam invalidates (NaN = no ground truth = never; an error of exactly lam is kept)."""
    return relative_error > lam  # NaN compares False


def depth_outliers(pred_depth: np.ndarray, gt_depth: np.ndarray, lam: float) -> np.ndarray:
    """(H, W) bool: valid ground-truth depth and relative error |p - d| / d > lam."""
    return outliers_at(relative_depth_error(pred_depth, gt_depth), lam)


def invalidate_codes(codes: np.ndarray, outliers: np.ndarray) -> np.ndarray:
    """Segment codes with the outlier pixels set to void (the pixel-level form of DPQ's invalidation)."""
    return np.where(outliers, 0, codes)


class DepthAwarePQ:
    """Accumulates PQ, DPQ^lambda and DVPQ^lambda_k over a split."""

    def __init__(self, classes: ClassSet | Sequence[ClassInfo] | None = None,
                 lambdas: Sequence[float] = DEFAULT_LAMBDAS, dvpq_ks: Sequence[int] = DEFAULT_DVPQ_KS) -> None:
        self.classes = ClassSet.coerce(classes)
        self.lambdas = tuple(float(lam) for lam in lambdas)
        if any(not lam > 0 for lam in self.lambdas):
            raise ValueError(f"DPQ thresholds must be positive, got {self.lambdas}")
        self.dvpq_ks = tuple(sorted({int(k) for k in dvpq_ks}))
        if any(k < 1 for k in self.dvpq_ks):
            raise ValueError(f"DVPQ window lengths must be >= 1, got {self.dvpq_ks}")
        num_classes = len(self.classes)
        #: variant -> per-frame statistics summed; variant None is plain PQ, a float is DPQ at that lambda.
        self.stats: dict[float | None, PQStats] = {v: PQStats.zeros(num_classes) for v in self._variants()}
        self.num_frames = 0
        self.frames_without_depth = 0
        #: sequence -> frame -> variant -> table, kept only when a window k > 1 is asked for.
        self._sequences: dict[str, dict[int, dict[float | None, OverlapTable]]] = {}

    def _variants(self) -> tuple[float | None, ...]:
        return (None, *self.lambdas)

    def update(self, pred_semantic: np.ndarray, pred_instance: np.ndarray, pred_depth: np.ndarray | None,
               gt_semantic: np.ndarray, gt_instance: np.ndarray, gt_depth: np.ndarray | None,
               sequence: str | None = None, frame: int | None = None) -> None:
        """Add one frame. Without either depth map the frame counts for PQ only, and DPQ is reported missing."""
        pred = segment_codes(pred_semantic, pred_instance, self.classes)
        gt = segment_codes(gt_semantic, gt_instance, self.classes)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
        pairs = PixelPairs(gt, pred)
        tables: dict[float | None, OverlapTable] = {None: pairs.table()}
        if pred_depth is None or gt_depth is None:
            self.frames_without_depth += 1
        else:
            relative = relative_depth_error(pred_depth, gt_depth)
            for lam in self.lambdas:
                tables[lam] = tables[None].invalidate(pairs.table(outliers_at(relative, lam)))
        for variant, table in tables.items():
            self.stats[variant] = self.stats[variant] + match_segments(table, self.classes)
        self.num_frames += 1
        if sequence is not None and frame is not None and any(k > 1 for k in self.dvpq_ks):
            frames = self._sequences.setdefault(str(sequence), {})
            if int(frame) in frames:
                raise ValueError(f"frame {frame} of sequence {sequence!r} was given twice")
            frames[int(frame)] = tables

    @property
    def has_depth(self) -> bool:
        return self.num_frames > 0 and self.frames_without_depth == 0

    def window_stats(self, k: int, variant: float | None) -> tuple[PQStats, int]:
        """Statistics summed over every window of k consecutive frames of every sequence, and the window count."""
        if k == 1:
            return self.stats[variant], self.num_frames
        total = PQStats.zeros(len(self.classes))
        windows = 0
        for frames in self._sequences.values():
            ordered = [frames[f] for f in sorted(frames)]
            for start in range(len(ordered) - k + 1):
                window = [tables[variant] for tables in ordered[start:start + k] if variant in tables]
                if len(window) < k:
                    continue  # a frame of this window has no depth
                total = total + match_segments(OverlapTable.merge(window), self.classes)
                windows += 1
        return total, windows

    def summary(self, count_absent_classes: bool = False) -> dict:
        """PQ, DPQ per lambda and their mean, and DVPQ per k and lambda; PQ-type values in %.

        Keys: "pq" (summarize_stats output), "dpq" (None without depth; else lambda key -> summary, plus "mean"
        with all/things/stuff), "dvpq" (None when no k > 1 window exists; else "k" -> {"vpq", lambda keys,
        "mean", "num_windows"} and "mean" over every k and lambda, ViP-DeepLab's DVPQ).
        """
        def summarize(stats: PQStats) -> dict:
            return summarize_stats(stats, self.classes, count_absent_classes)

        result: dict = {"num_frames": self.num_frames, "pq": summarize(self.stats[None]), "dpq": None, "dvpq": None}
        if self.has_depth and self.lambdas:
            dpq = {lambda_key(lam): summarize(self.stats[lam]) for lam in self.lambdas}
            dpq["mean"] = _mean_groups([dpq[lambda_key(lam)] for lam in self.lambdas])
            result["dpq"] = dpq
        result["dvpq"] = self._dvpq_summary(summarize)
        return result

    def _dvpq_summary(self, summarize) -> dict | None:
        if not any(k > 1 for k in self.dvpq_ks) or not self._sequences:
            return None
        dvpq: dict = {}
        depth_entries: list[dict] = []
        for k in self.dvpq_ks:
            stats, windows = self.window_stats(k, None)
            entry: dict = {"num_windows": windows, "vpq": summarize(stats) if windows else None}
            if self.has_depth:
                per_lambda = []
                for lam in self.lambdas:
                    stats, windows = self.window_stats(k, lam)
                    entry[lambda_key(lam)] = summarize(stats) if windows else None
                    if windows:
                        per_lambda.append(entry[lambda_key(lam)])
                entry["mean"] = _mean_groups(per_lambda) if len(per_lambda) == len(self.lambdas) else None
                depth_entries.extend(per_lambda)
            dvpq[str(k)] = entry
        complete = self.has_depth and all(dvpq[str(k)].get("mean") for k in self.dvpq_ks)
        dvpq["mean"] = _mean_groups(depth_entries) if complete and depth_entries else None
        return dvpq


def _mean_groups(summaries: list[dict]) -> dict:
    """Mean PQ of all / things / stuff over several summaries (None where any of them is None)."""
    out: dict = {}
    for group in ("all", "things", "stuff"):
        values = [s[group]["pq"] for s in summaries]
        out[group] = float(np.mean(values)) if values and all(v is not None for v in values) else None
    return out
