"""DPQ^lambda and DVPQ^lambda_k: threshold edges, invalidation rules, windows, worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from fuzzing import given, settings, st

from panopticdepth_core.data.classes import CITYSCAPES_CLASSES
from panopticdepth_core.evaluation.depth_aware import DepthAwarePQ, depth_outliers, invalidate_codes
from panopticdepth_core.evaluation.panoptic_quality import PanopticQuality, segment_codes

ROAD, SIDEWALK, CAR, VOID = 0, 1, 13, 255
LAMBDAS = (0.5, 0.25, 0.1)


def road_frame(shape=(4, 5)) -> tuple[np.ndarray, np.ndarray]:
    return np.full(shape, ROAD, np.int32), np.zeros(shape, np.int32)


def dpq(result: dict, lam: float, group: str = "all") -> float | None:
    return result["dpq"][f"{lam:g}"][group]["pq"]


@pytest.mark.parametrize("lam", LAMBDAS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_errors_just_below_and_above_lambda_flip_the_match(lam, sign):
    sem, inst = road_frame()
    gt_depth = np.full(sem.shape, 20.0)
    for factor, expected in ((0.999, 100.0), (1.001, 0.0)):
        pred_depth = gt_depth * (1 + sign * lam * factor)
        metric = DepthAwarePQ(lambdas=LAMBDAS)
        metric.update(sem, inst, pred_depth, sem, inst, gt_depth)
        result = metric.summary()
        assert result["pq"]["all"]["pq"] == pytest.approx(100.0)
        assert dpq(result, lam) == pytest.approx(expected)


def test_error_exactly_lambda_is_kept():
    sem, inst = road_frame()
    gt = np.full(sem.shape, 8.0)
    for lam, pred in ((0.5, 12.0), (0.25, 10.0), (0.5, 4.0)):  # |p - g| / g == lam exactly in binary
        metric = DepthAwarePQ(lambdas=(lam,))
        metric.update(sem, inst, np.full(sem.shape, pred), sem, inst, gt)
        assert dpq(metric.summary(), lam) == pytest.approx(100.0)


def test_partial_invalidation_by_hand():
    sem, inst = np.full((10, 10), CAR, np.int32), np.ones((10, 10), np.int32)
    gt_depth = np.full(sem.shape, 10.0)
    pred_depth = gt_depth.copy()
    pred_depth[:4, :] = 30.0  # 40 of 100 car pixels off by 200 %
    metric = DepthAwarePQ(lambdas=(0.5,))
    metric.update(sem, inst, pred_depth, sem, inst, gt_depth)
    car = next(e for e in metric.summary()["dpq"]["0.5"]["per_class"] if e["id"] == CAR)
    assert (car["tp"], car["fp"], car["fn"]) == (1, 0, 0)
    assert car["sq"] == pytest.approx(60.0)  # the invalidated pixels leave the prediction, not the ground truth
    pred_depth[:6, :] = 30.0  # 60 px off: IoU 0.4, the remaining 40 px are an unmatched (false positive) car
    metric = DepthAwarePQ(lambdas=(0.5,))
    metric.update(sem, inst, pred_depth, sem, inst, gt_depth)
    car = next(e for e in metric.summary()["dpq"]["0.5"]["per_class"] if e["id"] == CAR)
    assert (car["tp"], car["fp"], car["fn"]) == (0, 1, 1)


def test_pixels_without_ground_truth_depth_are_never_invalidated():
    sem, inst = road_frame()
    gt_depth = np.zeros(sem.shape)
    gt_depth[0, 0] = 5.0
    pred_depth = np.full(sem.shape, 1000.0)  # hopeless, but only one pixel has ground truth
    metric = DepthAwarePQ(lambdas=(0.1,))
    metric.update(sem, inst, pred_depth, sem, inst, gt_depth)
    assert dpq(metric.summary(), 0.1) == pytest.approx(100 * 19 / 20)


def test_no_wraparound_with_16_bit_depth_values():
    gt = np.array([[25600]], np.uint16)  # 100 m * 256
    pred = np.array([[25000]], np.uint16)  # below gt: uint16 subtraction would wrap to 65 000+
    assert not depth_outliers(pred, gt, 0.1)[0, 0]
    assert depth_outliers(np.array([[256]], np.uint16), gt, 0.1)[0, 0]
    assert depth_outliers(np.array([[np.nan]]), np.array([[5.0]]), 0.5)[0, 0]  # no prediction: an outlier
    assert not depth_outliers(np.array([[5.0]]), np.array([[np.nan]]), 0.5)[0, 0]  # no ground truth: never


def test_dpq_mean_and_missing_depth():
    sem, inst = road_frame()
    gt_depth = np.full(sem.shape, 10.0)
    pred_depth = np.full(sem.shape, 13.0)  # 30 % error: kept at 0.5, invalidated at 0.25 and 0.1
    metric = DepthAwarePQ(lambdas=LAMBDAS)
    metric.update(sem, inst, pred_depth, sem, inst, gt_depth)
    assert metric.summary()["dpq"]["mean"]["all"] == pytest.approx(100 / 3)
    metric.update(sem, inst, None, sem, inst, gt_depth)
    assert metric.summary()["dpq"] is None  # one frame without depth: DPQ is not reported
    assert metric.summary()["pq"]["all"]["pq"] == pytest.approx(100.0)


def test_dpq_can_exceed_pq_as_in_the_official_definition():
    """Invalidated pixels leave the prediction, so a false positive with wrong depth stops being one."""
    gt_sem, gt_inst = np.full((10, 10), CAR, np.int32), np.ones((10, 10), np.int32)
    pred_sem, pred_inst = gt_sem.copy(), gt_inst.copy()
    pred_inst[:, 7:] = 2  # 70 px match (IoU 0.7), 30 px spurious fragment
    gt_depth = np.full(gt_sem.shape, 10.0)
    pred_depth = gt_depth.copy()
    pred_depth[:, 7:] = 50.0  # the fragment's depth is wrong
    metric = DepthAwarePQ(lambdas=(0.5,))
    metric.update(pred_sem, pred_inst, pred_depth, gt_sem, gt_inst, gt_depth)
    result = metric.summary()
    assert result["pq"]["all"]["pq"] == pytest.approx(100 * 0.7 / 1.5)
    assert dpq(result, 0.5) == pytest.approx(100 * 0.7 / 1.0)


maps = st.integers(0, 2**32 - 1).map(np.random.default_rng)


def random_panoptic(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    choices = np.array([ROAD, SIDEWALK, CAR, VOID])
    sem = choices[rng.integers(0, 4, shape)]
    # Blocky maps so segments have some size.
    sem = np.repeat(np.repeat(sem[: shape[0] // 2, : shape[1] // 2], 2, 0), 2, 1)
    inst = np.where(sem == CAR, rng.integers(1, 3, sem.shape), 0)
    return sem, inst


@settings(max_examples=40, deadline=None)
@given(rng=maps)
def test_dpq_of_a_perfect_segmentation_follows_the_outlier_fractions(rng):
    """Perfect segments with a fraction f of depth outliers: TP with IoU 1 - f if f < 1/2, else FN (+ FP if f < 1)."""
    sem, inst = random_panoptic(rng, (8, 10))
    gt_depth = np.where(rng.random(sem.shape) < 0.8, rng.uniform(1, 80, sem.shape), 0.0)
    pred_depth = gt_depth * rng.uniform(0.5, 1.5, sem.shape)
    metric = DepthAwarePQ(lambdas=LAMBDAS)
    metric.update(sem, inst, pred_depth, sem, inst, gt_depth)
    result = metric.summary()
    codes = segment_codes(sem, inst, metric.classes)
    for lam in LAMBDAS:
        outliers = depth_outliers(pred_depth, gt_depth, lam)
        expected = {}
        for code in np.unique(codes[codes > 0]):
            segment = codes == code
            f = outliers[segment].mean()
            iou, tp, fp, fn = expected.get((code - 1) // 1000, (0.0, 0, 0, 0))
            expected[(code - 1) // 1000] = (iou + (1 - f), tp + 1, fp, fn) if f < 0.5 else (iou, tp, fp + (f < 1),
                                                                                             fn + 1)
        for entry in result["dpq"][f"{lam:g}"]["per_class"]:
            iou, tp, fp, fn = expected.get(entry["id"], (0.0, 0, 0, 0))
            assert (entry["tp"], entry["fp"], entry["fn"]) == (tp, fp, fn)
            denominator = tp + fp / 2 + fn / 2
            assert entry["pq"] == pytest.approx(100 * iou / denominator if denominator else 0.0)
    for group in ("all", "things", "stuff"):  # and so never above PQ (100 here)
        for lam in LAMBDAS:
            assert (result["pq"][group]["pq"] is None) == (dpq(result, lam, group) is None)


@settings(max_examples=40, deadline=None)
@given(rng=maps)
def test_dpq_is_pq_of_the_prediction_with_outliers_set_to_void(rng):
    gt_sem, gt_inst = random_panoptic(rng, (8, 10))
    pred_sem, pred_inst = random_panoptic(rng, (8, 10))
    pred_sem = np.where(rng.random(gt_sem.shape) < 0.6, gt_sem, pred_sem)
    pred_inst = np.where(pred_sem == CAR, np.maximum(pred_inst, 1), 0)
    gt_depth = np.where(rng.random(gt_sem.shape) < 0.8, rng.uniform(1, 80, gt_sem.shape), 0.0)
    pred_depth = gt_depth * rng.uniform(0.7, 1.3, gt_sem.shape)
    metric = DepthAwarePQ(lambdas=LAMBDAS)
    metric.update(pred_sem, pred_inst, pred_depth, gt_sem, gt_inst, gt_depth)
    result = metric.summary()
    classes = metric.classes
    gt_codes = segment_codes(gt_sem, gt_inst, classes)
    for lam in LAMBDAS:
        reference = PanopticQuality(classes)
        pred_codes = invalidate_codes(segment_codes(pred_sem, pred_inst, classes),
                                      depth_outliers(pred_depth, gt_depth, lam))
        reference.update_codes(pred_codes, gt_codes)
        assert result["dpq"][f"{lam:g}"]["per_class"] == reference.summary()["per_class"]
    # and with every error within lambda, DPQ is PQ
    metric = DepthAwarePQ(lambdas=(0.5,))
    metric.update(pred_sem, pred_inst, gt_depth * 1.2, gt_sem, gt_inst, gt_depth)
    assert metric.summary()["dpq"]["0.5"]["per_class"] == metric.summary()["pq"]["per_class"]


def car_frames(ids: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """One car moving right by one column per frame, with the given instance id in each frame."""
    frames = []
    for f, car_id in enumerate(ids):
        sem, inst = np.full((4, 8), ROAD, np.int32), np.zeros((4, 8), np.int32)
        sem[1:3, f:f + 3], inst[1:3, f:f + 3] = CAR, car_id
        frames.append((sem, inst))
    return frames


def test_dvpq_k1_equals_dpq():
    rng = np.random.default_rng(3)
    gts = car_frames([1, 1, 1, 1])
    preds = car_frames([4, 4, 5, 5])
    metric = DepthAwarePQ(lambdas=LAMBDAS, dvpq_ks=(1, 2))
    for f, ((gs, gi), (ps, pi)) in enumerate(zip(gts, preds)):
        gt_depth = rng.uniform(1, 50, gs.shape)
        metric.update(ps, pi, gt_depth * rng.uniform(0.8, 1.2, gs.shape), gs, gi, gt_depth, "seq", f)
    result = metric.summary()
    for lam in LAMBDAS:
        assert result["dvpq"]["1"][f"{lam:g}"] == result["dpq"][f"{lam:g}"]
    assert result["dvpq"]["1"]["vpq"] == result["pq"]


def test_dvpq_windows_reward_consistent_ids():
    gts = car_frames([1, 1, 1])
    depth = np.full((4, 8), 10.0)

    def car_vpq(pred_ids: list[int], k: int) -> dict:
        metric = DepthAwarePQ(lambdas=(0.5,), dvpq_ks=(k,))
        for f, ((gs, gi), (ps, pi)) in enumerate(zip(gts, car_frames(pred_ids))):
            metric.update(ps, pi, depth, gs, gi, depth, "seq", f)
        entry = metric.summary()["dvpq"][str(k)]
        return entry, next(e for e in entry["vpq"]["per_class"] if e["id"] == CAR)

    entry, car = car_vpq([7, 7, 7], 2)
    assert entry["num_windows"] == 2  # 3 frames, k = 2
    assert (car["tp"], car["fp"], car["fn"]) == (2, 0, 0)
    # id switch after the first frame: window (0, 1) sees gt car 12 px vs predictions 6 + 6 px: IoU 0.5, no match
    entry, car = car_vpq([7, 8, 8], 2)
    assert (car["tp"], car["fp"], car["fn"]) == (1, 2, 1)
    assert entry["0.5"]["per_class"] == entry["vpq"]["per_class"]  # perfect depth: DVPQ = VPQ


def test_dvpq_window_equals_frames_side_by_side():
    rng = np.random.default_rng(0)
    gts = [random_panoptic(rng, (6, 8)) for _ in range(3)]
    preds = [random_panoptic(rng, (6, 8)) for _ in range(3)]
    metric = DepthAwarePQ(lambdas=(), dvpq_ks=(3,))
    for f, ((gs, gi), (ps, pi)) in enumerate(zip(gts, preds)):
        metric.update(ps, pi, None, gs, gi, None, "seq", f)
    side_by_side = PanopticQuality()
    side_by_side.update(np.concatenate([p[0] for p in preds], 1), np.concatenate([p[1] for p in preds], 1),
                        np.concatenate([g[0] for g in gts], 1), np.concatenate([g[1] for g in gts], 1))
    assert metric.summary()["dvpq"]["3"]["vpq"]["per_class"] == side_by_side.summary()["per_class"]


def test_sequences_shorter_than_k_give_no_window_and_frames_must_be_unique():
    sem, inst = road_frame()
    metric = DepthAwarePQ(classes=CITYSCAPES_CLASSES, lambdas=(), dvpq_ks=(1, 4))
    for f in range(3):
        metric.update(sem, inst, None, sem, inst, None, "a", f)
    assert metric.summary()["dvpq"]["4"]["num_windows"] == 0
    assert metric.summary()["dvpq"]["4"]["vpq"] is None
    with pytest.raises(ValueError, match="given twice"):
        metric.update(sem, inst, None, sem, inst, None, "a", 2)
