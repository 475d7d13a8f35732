"""Scores a whole split: PQ / SQ / RQ, DPQ^lambda, DVPQ^lambda_k and depth metrics, in memory or from folders.

`DPSEvaluator` is what training calls during periodic evaluation (frame by frame, arrays in memory);
`evaluate_folders` scores prediction PNGs written by `panopticdepth predict` (or by any method following the
official Cityscapes-DVPS layout, see result_io) against a ground-truth folder, which is what `panopticdepth eval`
runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..data.classes import ClassInfo
from .depth_aware import DEFAULT_DVPQ_KS, DEFAULT_LAMBDAS, DepthAwarePQ
from .depth_metrics import DepthMetrics
from .panoptic_quality import ClassSet
from .result_io import pair_frames, read_ground_truth, read_prediction


def _to_numpy(array) -> np.ndarray | None:
    """numpy arrays pass through; torch tensors (any device) are copied to the CPU."""
    if array is None:
        return None
    if hasattr(array, "detach"):
        return array.detach().cpu().numpy()
    return np.asarray(array)


class DPSEvaluator:
    """Accumulates one split frame by frame and summarises it at the end.

    Args:
        classes: evaluated classes (default: Cityscapes' 19 train ids; things 11..18).
        lambdas: DPQ relative-depth thresholds (official: 0.5, 0.25, 0.1).
        dvpq_ks: DVPQ window lengths; windows of k > 1 frames need `sequence` and `frame` in `process`.
        depth_reduction: "pixels" (pool all valid pixels of the split, default) or "images" (mean of per-image
            metrics).
        count_absent_classes: score classes that never occur as PQ 0 (PanopticDepth's script) instead of leaving
            them out of the means.
        max_depth: ground truth beyond this many metres is left out of the depth metrics (None: keep all).
    """

    def __init__(self, classes: ClassSet | Sequence[ClassInfo] | None = None,
                 lambdas: Sequence[float] = DEFAULT_LAMBDAS, dvpq_ks: Sequence[int] = DEFAULT_DVPQ_KS,
                 depth_reduction: str = "pixels", count_absent_classes: bool = False,
                 max_depth: float | None = None) -> None:
        self.classes = ClassSet.coerce(classes)
        self.panoptic = DepthAwarePQ(self.classes, lambdas, dvpq_ks)
        self.depth = DepthMetrics(max_depth=max_depth)
        self.depth_reduction = depth_reduction
        self.count_absent_classes = count_absent_classes
        self.frame_names: list[str] = []
        if depth_reduction not in ("pixels", "images"):
            raise ValueError(f"depth_reduction must be 'pixels' or 'images', got {depth_reduction!r}")

    def reset(self) -> None:
        self.__init__(self.classes, self.panoptic.lambdas, self.panoptic.dvpq_ks, self.depth_reduction,
                      self.count_absent_classes, self.depth.max_depth)

    def process(self, frame_name: str, pred_semantic, pred_instance, pred_depth, gt_semantic, gt_instance,
                gt_depth, sequence: str | None = None, frame: int | None = None) -> None:
        """Add one frame: (H, W) maps as numpy arrays or tensors; semantic 255 = void; depth metres, 0 = invalid.

        pred_depth / gt_depth may be None (panoptic-only model or data set): the frame then counts for PQ only.
        """
        pred_semantic, pred_instance = _to_numpy(pred_semantic), _to_numpy(pred_instance)
        gt_semantic, gt_instance = _to_numpy(gt_semantic), _to_numpy(gt_instance)
        pred_depth, gt_depth = _to_numpy(pred_depth), _to_numpy(gt_depth)
        if pred_semantic.shape != gt_semantic.shape:
            raise ValueError(f"frame {frame_name!r}: prediction is {pred_semantic.shape}, ground truth is "
                             f"{gt_semantic.shape}; predict at the ground truth's resolution")
        try:
            self.panoptic.update(pred_semantic, pred_instance, pred_depth, gt_semantic, gt_instance, gt_depth,
                                 sequence, frame)
            if pred_depth is not None and gt_depth is not None:
                self.depth.update(pred_depth, gt_depth)
        except ValueError as error:
            raise ValueError(f"frame {frame_name!r}: {error}") from error
        self.frame_names.append(frame_name)

    def summarize(self) -> dict:
        """Everything as one JSON-ready dict (PQ-type values in %, depth in metres / fractions).

        Keys: num_frames, classes, pq {all, things, stuff, per_class}, dpq (None without depth), dvpq (None without
        sequences), depth (None without depth), settings.
        """
        result = self.panoptic.summary(self.count_absent_classes)
        if result["dpq"] is not None:
            for lam_key, per_lambda in result["dpq"].items():
                if lam_key == "mean":
                    continue
                for entry, lam_entry in zip(result["pq"]["per_class"], per_lambda["per_class"]):
                    entry.setdefault("dpq", {})[lam_key] = lam_entry["pq"]
        result["depth"] = self.depth.compute(self.depth_reduction)
        result["classes"] = [{"id": int(i), "name": n, "is_thing": bool(t)}
                             for i, n, t in zip(self.classes.ids, self.classes.names, self.classes.is_thing)]
        result["settings"] = {
            "lambdas": list(self.panoptic.lambdas),
            "dvpq_ks": list(self.panoptic.dvpq_ks),
            "depth_reduction": self.depth_reduction,
            "count_absent_classes": self.count_absent_classes,
            "frames_without_depth": self.panoptic.frames_without_depth,
        }
        return result


def evaluate_folders(pred_dir: str | Path, gt_dir: str | Path, classes: ClassSet | Sequence[ClassInfo] | None = None,
                     lambdas: Sequence[float] = DEFAULT_LAMBDAS, dvpq_ks: Sequence[int] = DEFAULT_DVPQ_KS,
                     depth_reduction: str = "pixels", count_absent_classes: bool = False,
                     max_depth: float | None = None,
                     progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Score every ground-truth frame under gt_dir against its prediction under pred_dir (layout: result_io).

    DPQ needs both depth files for every frame (otherwise it is None and ``settings.frames_without_depth`` says
    how many frames lacked them); the depth metrics cover the frames that have both (``depth.num_images``).
    """
    evaluator = DPSEvaluator(classes, lambdas, dvpq_ks, depth_reduction, count_absent_classes, max_depth)
    num_classes = int(evaluator.classes.ids.max()) + 1
    pairs = pair_frames(pred_dir, gt_dir)
    for index, pair in enumerate(pairs):
        with_depth = pair.gt_depth is not None and pair.pred_depth is not None
        gt_semantic, gt_instance, gt_depth = read_ground_truth(pair.gt_panoptic, pair.gt_depth if with_depth
                                                               else None, num_classes)
        pred_semantic, pred_instance, pred_depth = read_prediction(pair.pred_panoptic, pair.pred_depth if with_depth
                                                                   else None, num_classes)
        for what, path, shape in (("prediction", pair.pred_panoptic, pred_semantic.shape),
                                  ("predicted depth", pair.pred_depth, None if pred_depth is None else
                                   pred_depth.shape),
                                  ("ground-truth depth", pair.gt_depth, None if gt_depth is None else gt_depth.shape)):
            if shape is not None and shape != gt_semantic.shape:
                raise ValueError(f"{path}: {what} is {shape[0]}x{shape[1]} but the ground truth {pair.gt_panoptic} "
                                 f"is {gt_semantic.shape[0]}x{gt_semantic.shape[1]}")
        evaluator.process(pair.stem, pred_semantic, pred_instance, pred_depth, gt_semantic, gt_instance, gt_depth,
                          pair.sequence, pair.frame)
        if progress is not None:
            progress(index + 1, len(pairs), pair.stem)
    result = evaluator.summarize()
    result["pred_dir"] = str(pred_dir)
    result["gt_dir"] = str(gt_dir)
    return result
