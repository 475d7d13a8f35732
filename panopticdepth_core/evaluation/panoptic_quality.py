"""Panoptic quality (PQ, SQ, RQ) accumulated over a split, with the void rules of the Cityscapes-DVPS evaluator.

The matching rules follow ViP-DeepLab's ``cityscapes-dvps/eval_dvpq.py`` (and PanopticDepth's copy of it):

* a segment is a (class, instance) pair; stuff has instance 0; pixels of classes outside the evaluated class list
  are void (ground truth: Cityscapes-DVPS writes class 32; predictions: anything not in the list);
* a predicted and a ground-truth segment of the same class match when IoU > 0.5, where the union leaves out the
  predicted segment's pixels that lie on ground-truth void;
* an unmatched ground-truth segment is a false negative; an unmatched predicted segment is a false positive unless
  more than half of its pixels lie on ground-truth void;
* TP / FP / FN and the matched IoUs are summed per class over the whole split, PQ_c = sum IoU / (TP + FP/2 + FN/2),
  and PQ / SQ / RQ are the means over classes (``docs/metrics.md``).

Everything is vectorised: a frame is reduced once to a small table of (gt segment, predicted segment, pixel count)
triples, and matching works on that table. Tables of several frames can be merged, which is how DVPQ's k-frame
windows are scored without concatenating images.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..data.classes import CITYSCAPES_CLASSES, LABEL_DIVISOR, VOID_CLASS, ClassInfo

#: Segment code = 1 + class * LABEL_DIVISOR + instance; 0 = void.
VOID_CODE = 0
#: Largest code for which the bincount path is used to compact ids (above it: np.unique, slower but general).
_BINCOUNT_LIMIT = 1 << 22
#: Largest (gt segments x predicted segments) grid counted densely.
_DENSE_PAIR_LIMIT = 1 << 24


class ClassSet:
    """The evaluated classes: ids, names, thing flags and a lookup from class id to a dense slot."""

    def __init__(self, classes: Sequence[ClassInfo] = CITYSCAPES_CLASSES) -> None:
        if not classes:
            raise ValueError("the evaluated class list is empty")
        ids = [int(c.train_id) for c in classes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"the evaluated class list repeats a class id: {ids}")
        if min(ids) < 0 or max(ids) > 254:
            raise ValueError(f"class ids must lie in [0, 254] (255 is void), got {ids}")
        self.infos: tuple[ClassInfo, ...] = tuple(classes)
        self.ids = np.asarray(ids, dtype=np.int64)  # (C,)
        self.names: tuple[str, ...] = tuple(c.name for c in classes)
        self.is_thing = np.asarray([c.is_thing for c in classes], dtype=bool)  # (C,)
        self.slot = np.full(256, -1, dtype=np.int64)  # class id -> slot in [0, C), -1 for void
        self.slot[self.ids] = np.arange(len(ids))

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def coerce(classes: ClassSet | Sequence[ClassInfo] | None) -> ClassSet:
        if classes is None:
            return ClassSet()
        return classes if isinstance(classes, ClassSet) else ClassSet(classes)


def segment_codes(semantic: np.ndarray, instance: np.ndarray, classes: ClassSet) -> np.ndarray:
    """(H, W) class + instance maps -> (H, W) int64 segment codes; pixels of classes not evaluated become VOID_CODE."""
    semantic = np.asarray(semantic)
    instance = np.asarray(instance)
    if semantic.shape != instance.shape:
        raise ValueError(f"semantic map {semantic.shape} and instance map {instance.shape} differ in shape")
    sem = semantic.astype(np.int64, copy=False)
    inside = (sem >= 0) & (sem < 256)
    valid = inside & (classes.slot[np.where(inside, sem, VOID_CLASS)] >= 0)
    inst = instance.astype(np.int64, copy=False)
    if valid.any():
        inst_valid = np.where(valid, inst, 0)
        if inst_valid.min() < 0 or inst_valid.max() >= LABEL_DIVISOR:
            raise ValueError(f"instance ids must lie in [0, {LABEL_DIVISOR}), got [{inst_valid.min()}, "
                             f"{inst_valid.max()}]")
    return np.where(valid, 1 + sem * LABEL_DIVISOR + inst, VOID_CODE)


def ids_to_codes(panoptic_ids: np.ndarray, classes: ClassSet) -> np.ndarray:
    """Combined ids (class * 1000 + instance; negative = void) -> segment codes."""
    ids = np.asarray(panoptic_ids).astype(np.int64, copy=False)
    void = ids < 0
    semantic = np.where(void, VOID_CLASS, ids // LABEL_DIVISOR)
    instance = np.where(void, 0, ids % LABEL_DIVISOR)
    return segment_codes(semantic, instance, classes)


def code_class(codes: np.ndarray) -> np.ndarray:
    """Class id of each (non-void) segment code; -1 for void."""
    codes = np.asarray(codes, dtype=np.int64)
    return np.where(codes == VOID_CODE, -1, (codes - 1) // LABEL_DIVISOR)


def _compact(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat non-negative codes -> (sorted unique codes, index of each element into them)."""
    if codes.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    top = int(codes.max())
    if top < _BINCOUNT_LIMIT:
        present = np.bincount(codes, minlength=top + 1) > 0
        uniques = np.flatnonzero(present)
        position = np.cumsum(present) - 1
        return uniques, position[codes]
    uniques, inverse = np.unique(codes, return_inverse=True)
    return uniques, inverse.reshape(-1)


class PixelPairs:
    """The (gt segment, predicted segment) pair of every pixel of a frame, as dense indices.

    Built once per frame; `table(mask)` then counts any subset of pixels (e.g. DPQ's depth outliers) with one
    bincount, without compacting the codes again.
    """

    def __init__(self, gt_codes: np.ndarray, pred_codes: np.ndarray) -> None:
        gt_codes = np.asarray(gt_codes, dtype=np.int64)
        pred_codes = np.asarray(pred_codes, dtype=np.int64)
        if gt_codes.shape != pred_codes.shape:
            raise ValueError(f"prediction {pred_codes.shape} and ground truth {gt_codes.shape} differ in shape")
        self.gt_unique, gt_index = _compact(gt_codes.reshape(-1))
        self.pred_unique, pred_index = _compact(pred_codes.reshape(-1))
        self.num_pred = max(len(self.pred_unique), 1)
        self.num_pairs = len(self.gt_unique) * self.num_pred
        self.pair = gt_index * self.num_pred + pred_index  # (H*W,) dense pair index

    def table(self, mask: np.ndarray | None = None) -> OverlapTable:
        """Pixel counts per pair, over all pixels or over those where mask (same shape as the codes) is True."""
        pair = self.pair if mask is None else self.pair[np.asarray(mask, dtype=bool).reshape(-1)]
        if self.num_pairs <= _DENSE_PAIR_LIMIT:
            counts = np.bincount(pair, minlength=self.num_pairs)
            nonzero = np.flatnonzero(counts)
            area = counts[nonzero]
        else:
            nonzero, area = np.unique(pair, return_counts=True)
        return OverlapTable(self.gt_unique[nonzero // self.num_pred], self.pred_unique[nonzero % self.num_pred],
                            area.astype(np.int64))


@dataclass(frozen=True)
class OverlapTable:
    """Pixel counts of every (ground-truth segment, predicted segment) pair that overlaps; codes as segment_codes."""

    gt: np.ndarray  # (P,) int64
    pred: np.ndarray  # (P,) int64
    area: np.ndarray  # (P,) int64

    @staticmethod
    def from_codes(gt_codes: np.ndarray, pred_codes: np.ndarray) -> OverlapTable:
        """Count the pixels of each pair in one frame (or any set of pixels)."""
        return PixelPairs(gt_codes, pred_codes).table()

    @staticmethod
    def merge(tables: Iterable[OverlapTable]) -> OverlapTable:
        """Pool several tables, e.g. the frames of a DVPQ window (ids are shared across the window's frames)."""
        tables = list(tables)
        if not tables:
            return OverlapTable(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
        gt = np.concatenate([t.gt for t in tables])
        pred = np.concatenate([t.pred for t in tables])
        area = np.concatenate([t.area for t in tables])
        stride = int(pred.max()) + 1 if pred.size else 1
        keys, inverse = np.unique(gt * stride + pred, return_inverse=True)
        summed = np.bincount(inverse.reshape(-1), weights=area, minlength=len(keys)).astype(np.int64)
        return OverlapTable(keys // stride, keys % stride, summed)

    def invalidate(self, pixels: OverlapTable) -> OverlapTable:
        """Move the given pixels (a sub-table of this one) to the void prediction: DPQ's depth invalidation."""
        if pixels.area.size == 0:
            return self
        removed = OverlapTable(pixels.gt, pixels.pred, -pixels.area)
        added = OverlapTable(pixels.gt, np.full_like(pixels.pred, VOID_CODE), pixels.area)
        merged = OverlapTable.merge([self, removed, added])
        keep = merged.area > 0
        return OverlapTable(merged.gt[keep], merged.pred[keep], merged.area[keep])


@dataclass
class PQStats:
    """Per-class sums over a split: matched IoU, true positives, false positives, false negatives."""

    iou: np.ndarray  # (C,) float64
    tp: np.ndarray  # (C,) int64
    fp: np.ndarray  # (C,) int64
    fn: np.ndarray  # (C,) int64

    @staticmethod
    def zeros(num_classes: int) -> PQStats:
        return PQStats(np.zeros(num_classes), np.zeros(num_classes, np.int64), np.zeros(num_classes, np.int64),
                       np.zeros(num_classes, np.int64))

    def __add__(self, other: PQStats) -> PQStats:
        return PQStats(self.iou + other.iou, self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


def match_segments(table: OverlapTable, classes: ClassSet) -> PQStats:
    """Match the segments of one table (a frame or a window) and count TP / FP / FN per class."""
    num_classes = len(classes)
    if table.area.size == 0:
        return PQStats.zeros(num_classes)
    gt_unique, gt_index = np.unique(table.gt, return_inverse=True)
    pred_unique, pred_index = np.unique(table.pred, return_inverse=True)
    gt_index, pred_index = gt_index.reshape(-1), pred_index.reshape(-1)
    area = table.area
    gt_area = np.bincount(gt_index, weights=area, minlength=len(gt_unique)).astype(np.int64)
    pred_area = np.bincount(pred_index, weights=area, minlength=len(pred_unique)).astype(np.int64)
    on_void = table.gt == VOID_CODE
    pred_void_overlap = np.bincount(pred_index[on_void], weights=area[on_void],
                                    minlength=len(pred_unique)).astype(np.int64)

    gt_class = code_class(table.gt)
    candidate = (~on_void) & (table.pred != VOID_CODE) & (gt_class == code_class(table.pred))
    union = gt_area[gt_index] + pred_area[pred_index] - area - pred_void_overlap[pred_index]
    matched = candidate & (2 * area > union)  # IoU > 0.5, exactly, in integers
    iou = area[matched] / union[matched]
    matched_slot = classes.slot[gt_class[matched]]
    tp = np.bincount(matched_slot, minlength=num_classes)
    iou_sum = np.bincount(matched_slot, weights=iou, minlength=num_classes)

    gt_matched = np.zeros(len(gt_unique), dtype=bool)
    gt_matched[gt_index[matched]] = True
    missed = (gt_unique != VOID_CODE) & ~gt_matched
    fn = np.bincount(classes.slot[code_class(gt_unique[missed])], minlength=num_classes)

    pred_matched = np.zeros(len(pred_unique), dtype=bool)
    pred_matched[pred_index[matched]] = True
    mostly_void = 2 * pred_void_overlap > pred_area  # > 50 % on ground-truth void: not a false positive
    spurious = (pred_unique != VOID_CODE) & ~pred_matched & ~mostly_void
    fp = np.bincount(classes.slot[code_class(pred_unique[spurious])], minlength=num_classes)
    return PQStats(iou_sum, tp.astype(np.int64), fp.astype(np.int64), fn.astype(np.int64))


def _mean_or_none(values: np.ndarray, mask: np.ndarray) -> float | None:
    return float(values[mask].mean()) if mask.any() else None


def summarize_stats(stats: PQStats, classes: ClassSet, count_absent_classes: bool = False) -> dict:
    """Per-class PQ / SQ / RQ (in %) and their means over all, thing and stuff classes.

    A class with no TP, FP or FN anywhere in the split is left out of the means (panopticapi's rule) unless
    ``count_absent_classes``, which scores it 0 as PanopticDepth's evaluator does; on Cityscapes-DVPS val every
    class occurs, so both give the same numbers there.
    """
    denominator = stats.tp + 0.5 * stats.fp + 0.5 * stats.fn
    safe = np.maximum(denominator, 1e-12)
    pq = np.where(denominator > 0, stats.iou / safe, 0.0) * 100
    sq = np.where(stats.tp > 0, stats.iou / np.maximum(stats.tp, 1), 0.0) * 100
    rq = np.where(denominator > 0, stats.tp / safe, 0.0) * 100
    present = denominator > 0
    counted = np.ones_like(present) if count_absent_classes else present
    groups = {"all": counted, "things": counted & classes.is_thing, "stuff": counted & ~classes.is_thing}
    summary = {
        name: {"pq": _mean_or_none(pq, mask), "sq": _mean_or_none(sq, mask), "rq": _mean_or_none(rq, mask),
               "num_classes": int(mask.sum())}
        for name, mask in groups.items()
    }
    summary["per_class"] = [
        {"id": int(classes.ids[i]), "name": classes.names[i], "is_thing": bool(classes.is_thing[i]),
         "pq": float(pq[i]), "sq": float(sq[i]), "rq": float(rq[i]), "tp": int(stats.tp[i]),
         "fp": int(stats.fp[i]), "fn": int(stats.fn[i]), "present": bool(present[i])}
        for i in range(len(classes))
    ]
    return summary


class PanopticQuality:
    """Accumulates PQ statistics frame by frame; `summary()` at the end of the split."""

    def __init__(self, classes: ClassSet | Sequence[ClassInfo] | None = None) -> None:
        self.classes = ClassSet.coerce(classes)
        self.stats = PQStats.zeros(len(self.classes))
        self.num_frames = 0

    def update(self, pred_semantic: np.ndarray, pred_instance: np.ndarray, gt_semantic: np.ndarray,
               gt_instance: np.ndarray) -> PQStats:
        """Add one frame given class and instance maps (void: any class outside the list, e.g. 255)."""
        pred = segment_codes(pred_semantic, pred_instance, self.classes)
        gt = segment_codes(gt_semantic, gt_instance, self.classes)
        return self.update_codes(pred, gt)

    def update_ids(self, pred_ids: np.ndarray, gt_ids: np.ndarray) -> PQStats:
        """Add one frame given combined ids (class * 1000 + instance, negative = void)."""
        return self.update_codes(ids_to_codes(pred_ids, self.classes), ids_to_codes(gt_ids, self.classes))

    def update_codes(self, pred_codes: np.ndarray, gt_codes: np.ndarray) -> PQStats:
        frame_stats = match_segments(OverlapTable.from_codes(gt_codes, pred_codes), self.classes)
        self.stats = self.stats + frame_stats
        self.num_frames += 1
        return frame_stats

    def summary(self, count_absent_classes: bool = False) -> dict:
        return summarize_stats(self.stats, self.classes, count_absent_classes)
