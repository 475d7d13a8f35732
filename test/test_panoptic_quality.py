"""PQ / SQ / RQ on hand-made maps whose values are worked out by hand, plus a check against a plain-Python matcher."""

from __future__ import annotations

import numpy as np
import pytest
from fuzzing import given, settings, st

from panopticdepth_core.data.classes import CITYSCAPES_CLASSES
from panopticdepth_core.evaluation.panoptic_quality import (
    ClassSet,
    OverlapTable,
    PanopticQuality,
    match_segments,
    segment_codes,
)

ROAD, SIDEWALK, CAR, PERSON, VOID = 0, 1, 13, 11, 255


def frame(height: int = 10, width: int = 20, fill: int = ROAD) -> tuple[np.ndarray, np.ndarray]:
    return np.full((height, width), fill, np.int32), np.zeros((height, width), np.int32)


def put(semantic: np.ndarray, instance: np.ndarray, cls: int, inst: int, rows: slice, cols: slice) -> None:
    semantic[rows, cols] = cls
    instance[rows, cols] = inst


def class_entry(summary: dict, cls: int) -> dict:
    return next(e for e in summary["per_class"] if e["id"] == cls)


def test_perfect_prediction_scores_100_everywhere():
    sem, inst = frame()
    put(sem, inst, CAR, 1, slice(2, 6), slice(2, 8))
    put(sem, inst, CAR, 2, slice(2, 6), slice(10, 14))
    put(sem, inst, SIDEWALK, 0, slice(8, 10), slice(None))
    pq = PanopticQuality()
    pq.update(sem, inst, sem, inst)
    summary = pq.summary()
    for group in ("all", "things", "stuff"):
        assert summary[group]["pq"] == pytest.approx(100.0)
        assert summary[group]["sq"] == pytest.approx(100.0)
        assert summary[group]["rq"] == pytest.approx(100.0)
    assert class_entry(summary, CAR)["tp"] == 2
    assert summary["all"]["num_classes"] == 3  # road, sidewalk, car; absent classes are left out


def test_missed_thing_lowers_rq_by_hand():
    gt_sem, gt_inst = frame()
    put(gt_sem, gt_inst, CAR, 1, slice(0, 4), slice(0, 5))
    put(gt_sem, gt_inst, CAR, 2, slice(5, 9), slice(10, 15))
    pred_sem, pred_inst = frame()
    put(pred_sem, pred_inst, CAR, 7, slice(0, 4), slice(0, 5))  # second car predicted as road
    pq = PanopticQuality()
    pq.update(pred_sem, pred_inst, gt_sem, gt_inst)
    car = class_entry(pq.summary(), CAR)
    assert (car["tp"], car["fp"], car["fn"]) == (1, 0, 1)
    assert car["sq"] == pytest.approx(100.0)
    assert car["rq"] == pytest.approx(100 * 1 / 1.5)  # TP / (TP + FN/2)
    # road: gt 200 - 40 = 160 px, predicted 200 - 20 = 180 px, overlap 160: IoU 160 / 180
    road = class_entry(pq.summary(), ROAD)
    assert road["sq"] == pytest.approx(100 * 160 / 180)
    assert pq.summary()["all"]["pq"] == pytest.approx((100 * 160 / 180 + 100 / 1.5) / 2)


def test_split_segment_keeps_the_larger_half_if_iou_above_half():
    gt_sem, gt_inst = frame()
    put(gt_sem, gt_inst, CAR, 1, slice(0, 10), slice(0, 10))  # 100 px
    pred_sem, pred_inst = gt_sem.copy(), gt_inst.copy()
    pred_inst[:, 6:10] = 2  # halves of 60 and 40 px
    pq = PanopticQuality()
    pq.update(pred_sem, pred_inst, gt_sem, gt_inst)
    car = class_entry(pq.summary(), CAR)
    assert (car["tp"], car["fp"], car["fn"]) == (1, 1, 0)
    assert car["sq"] == pytest.approx(60.0)  # IoU 60 / 100
    assert car["rq"] == pytest.approx(100 / 1.5)
    assert car["pq"] == pytest.approx(100 * 0.6 / 1.5)


def test_split_into_equal_halves_matches_nothing():
    gt_sem, gt_inst = frame()
    put(gt_sem, gt_inst, CAR, 1, slice(0, 10), slice(0, 10))
    pred_sem, pred_inst = gt_sem.copy(), gt_inst.copy()
    pred_inst[:, 5:10] = 2  # IoU exactly 0.5 is not > 0.5
    pq = PanopticQuality()
    pq.update(pred_sem, pred_inst, gt_sem, gt_inst)
    car = class_entry(pq.summary(), CAR)
    assert (car["tp"], car["fp"], car["fn"]) == (0, 2, 1)
    assert car["pq"] == 0.0


def test_prediction_mostly_on_void_is_not_a_false_positive():
    gt_sem, gt_inst = frame()
    gt_sem[:, 10:20] = VOID
    pred_sem, pred_inst = frame()
    put(pred_sem, pred_inst, CAR, 1, slice(0, 10), slice(8, 13))  # 50 px: 30 on void, 20 on road
    put(pred_sem, pred_inst, PERSON, 1, slice(0, 10), slice(5, 8))  # 30 px: none on void
    pq = PanopticQuality()
    pq.update(pred_sem, pred_inst, gt_sem, gt_inst)
    summary = pq.summary()
    assert class_entry(summary, CAR)["fp"] == 0  # 60 % on void
    assert class_entry(summary, PERSON)["fp"] == 1
    # road: gt 100 px; predicted road 200 - 80 = 120 px of which 70 on void; overlap 100 - 20 - 30 = 50 px
    # void-aware union = 100 + 120 - 50 - 70 = 100 -> IoU 0.5, not a match; and 70 / 120 of the predicted road
    # lies on void, so it is not a false positive either
    road = class_entry(summary, ROAD)
    assert (road["tp"], road["fp"], road["fn"]) == (0, 0, 1)


def test_void_pixels_do_not_hurt_a_prediction_that_covers_them():
    gt_sem, gt_inst = frame()
    gt_sem[:, 15:] = VOID
    pred_sem, pred_inst = frame()  # road everywhere, also on void
    pq = PanopticQuality()
    pq.update(pred_sem, pred_inst, gt_sem, gt_inst)
    assert pq.summary()["all"]["pq"] == pytest.approx(100.0)


def test_stuff_only_iou_by_hand():
    gt_sem, gt_inst = frame()
    gt_sem[5:, :] = SIDEWALK  # road 100 px, sidewalk 100 px
    pred_sem = gt_sem.copy()
    pred_sem[4, :] = SIDEWALK  # 20 road px predicted as sidewalk
    pq = PanopticQuality()
    pq.update(pred_sem, gt_inst, gt_sem, gt_inst)
    summary = pq.summary()
    assert class_entry(summary, ROAD)["sq"] == pytest.approx(100 * 80 / 100)
    assert class_entry(summary, SIDEWALK)["sq"] == pytest.approx(100 * 100 / 120)
    assert summary["stuff"]["pq"] == pytest.approx(100 * (0.8 + 100 / 120) / 2)
    assert summary["things"]["pq"] is None


def test_accumulation_over_frames_sums_the_statistics():
    gt_sem, gt_inst = frame()
    put(gt_sem, gt_inst, CAR, 1, slice(0, 10), slice(0, 10))
    good_sem, good_inst = gt_sem.copy(), gt_inst.copy()
    good_inst[:, 8:10] = 0
    good_sem[:, 8:10] = ROAD  # car IoU 80 / 100
    missed_sem, missed_inst = frame()  # car missed
    pq = PanopticQuality()
    first = pq.update(good_sem, good_inst, gt_sem, gt_inst)
    second = pq.update(missed_sem, missed_inst, gt_sem, gt_inst)
    assert np.array_equal(pq.stats.tp, first.tp + second.tp)
    assert np.allclose(pq.stats.iou, first.iou + second.iou)
    car = class_entry(pq.summary(), CAR)
    assert car["pq"] == pytest.approx(100 * 0.8 / (1 + 0.5))  # pooled: one TP (IoU 0.8), one FN
    # Same as scoring both frames side by side when no segment spans the two.
    pooled = PanopticQuality()
    pooled.update(np.concatenate([good_sem, missed_sem + 0], 1), np.concatenate([good_inst, missed_inst], 1),
                  np.concatenate([gt_sem, gt_sem], 1), np.concatenate([gt_inst, gt_inst + 1], 1))
    assert class_entry(pooled.summary(), CAR)["pq"] == pytest.approx(car["pq"])


def test_combined_ids_give_the_same_result():
    gt_sem, gt_inst = frame()
    put(gt_sem, gt_inst, CAR, 3, slice(0, 5), slice(0, 5))
    gt_sem[9, :] = VOID
    pred_sem, pred_inst = gt_sem.copy(), gt_inst.copy()
    pred_sem[0, :] = SIDEWALK
    by_maps, by_ids = PanopticQuality(), PanopticQuality()
    by_maps.update(pred_sem, pred_inst, gt_sem, gt_inst)
    to_ids = lambda s, i: np.where(s == VOID, -1, s * 1000 + i)  # noqa: E731
    by_ids.update_ids(to_ids(pred_sem, pred_inst), to_ids(gt_sem, gt_inst))
    assert by_maps.summary() == by_ids.summary()


def test_count_absent_classes_averages_over_all_nineteen():
    sem, inst = frame()
    pq = PanopticQuality()
    pq.update(sem, inst, sem, inst)
    assert pq.summary()["all"]["pq"] == pytest.approx(100.0)
    assert pq.summary(count_absent_classes=True)["all"]["pq"] == pytest.approx(100.0 / 19)


def test_configurable_class_list_and_bad_instance_ids():
    classes = [c for c in CITYSCAPES_CLASSES if c.train_id in (ROAD, CAR)]
    sem, inst = frame()
    sem[0, 0] = SIDEWALK  # not evaluated -> void
    pq = PanopticQuality(classes)
    pq.update(sem, inst, sem, inst)
    assert [e["id"] for e in pq.summary()["per_class"]] == [ROAD, CAR]
    inst[0, 1] = 1000
    with pytest.raises(ValueError, match="instance ids"):
        pq.update(sem, inst, sem, inst)


def reference_pq_stats(pred: np.ndarray, gt: np.ndarray, classes: ClassSet) -> dict[int, list[float]]:
    """A plain-Python matcher written from the rules in the module docstring; codes as segment_codes."""
    pairs: dict[tuple[int, int], int] = {}
    for g, p in zip(gt.ravel().tolist(), pred.ravel().tolist()):
        pairs[(g, p)] = pairs.get((g, p), 0) + 1
    gt_area: dict[int, int] = {}
    pred_area: dict[int, int] = {}
    for (g, p), n in pairs.items():
        gt_area[g] = gt_area.get(g, 0) + n
        pred_area[p] = pred_area.get(p, 0) + n
    stats = {int(c): [0.0, 0, 0, 0] for c in classes.ids}  # iou, tp, fp, fn
    matched_gt, matched_pred = set(), set()
    for (g, p), n in pairs.items():
        if g == 0 or p == 0 or (g - 1) // 1000 != (p - 1) // 1000:
            continue
        union = gt_area[g] + pred_area[p] - n - pairs.get((0, p), 0)
        if n / union > 0.5:
            stats[(g - 1) // 1000][0] += n / union
            stats[(g - 1) // 1000][1] += 1
            matched_gt.add(g)
            matched_pred.add(p)
    for p, area in pred_area.items():
        if p != 0 and p not in matched_pred and pairs.get((0, p), 0) / area <= 0.5:
            stats[(p - 1) // 1000][2] += 1
    for g in gt_area:
        if g != 0 and g not in matched_gt:
            stats[(g - 1) // 1000][3] += 1
    return stats


small_maps = st.integers(0, 2**32 - 1).map(np.random.default_rng)


@settings(max_examples=60, deadline=None)
@given(rng=small_maps)
def test_vectorised_matching_equals_plain_python(rng):
    classes = ClassSet([c for c in CITYSCAPES_CLASSES if c.train_id in (ROAD, SIDEWALK, PERSON, CAR)])
    shape = (6, 7)
    choices = np.array([ROAD, SIDEWALK, PERSON, CAR, VOID])
    gt_sem = choices[rng.integers(0, 5, shape)]
    pred_sem = np.where(rng.random(shape) < 0.7, gt_sem, choices[rng.integers(0, 5, shape)])
    gt_inst = np.where(np.isin(gt_sem, (PERSON, CAR)), rng.integers(1, 3, shape), 0)
    pred_inst = np.where(np.isin(pred_sem, (PERSON, CAR)), rng.integers(1, 3, shape), 0)
    gt, pred = segment_codes(gt_sem, gt_inst, classes), segment_codes(pred_sem, pred_inst, classes)
    stats = match_segments(OverlapTable.from_codes(gt, pred), classes)
    expected = reference_pq_stats(pred, gt, classes)
    for slot, cls in enumerate(classes.ids):
        iou, tp, fp, fn = expected[int(cls)]
        assert (stats.tp[slot], stats.fp[slot], stats.fn[slot]) == (tp, fp, fn)
        assert stats.iou[slot] == pytest.approx(iou)
