"""The tracker on hand-made frames: ids persist through motion, crossings and short occlusions, and never collide."""

from __future__ import annotations

import numpy as np
import pytest

from panopticdepth_core.data.classes import LABEL_DIVISOR
from panopticdepth_core.modeling.types import Segment
from panopticdepth_core.tracking.ids import ClassIds, IdsExhausted
from panopticdepth_core.tracking.tracker import InstanceTracker, TrackerSettings, relabel

H, W = 48, 96
ROAD, CAR, PERSON = 0, 13, 11
K = np.array([[80.0, 0.0, W / 2], [0.0, 80.0, H / 2], [0.0, 0.0, 1.0]])


def frame(things, rng, depth_of=None):
    """(panoptic, depth, segments) of boxes ``(key, class, x0, y0, x1, y1[, depth])`` drawn in order (later on top).

    Each frame numbers its things 1..N in a random order, as the per-frame post-processing does (by score), so a
    test passes only if the tracker, not the numbering, carries the ids. Returns also key -> frame panoptic id.
    """
    panoptic = np.full((H, W), ROAD * LABEL_DIVISOR, dtype=np.int32)
    depth = np.full((H, W), 30.0, dtype=np.float32)
    numbers = rng.permutation(len(things)) + 1
    keys = {}
    for (key, category, x0, y0, x1, y1, *z), number in zip(things, numbers):
        pid = category * LABEL_DIVISOR + int(number)
        panoptic[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = pid
        depth[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = z[0] if z else 10.0
        keys[key] = pid
    present = set(np.unique(panoptic).tolist())
    keys = {k: v for k, v in keys.items() if v in present}
    segments = [Segment(int(p), int(p) // LABEL_DIVISOR, True, 0.9, 1, int(p) % LABEL_DIVISOR) for p in keys.values()]
    return panoptic, depth, segments, keys


def track_ids(tracker, things_per_frame, use_depth=True, seed=0):
    """Per frame, key -> tracked panoptic id (keys absent where the thing is not visible)."""
    rng = np.random.default_rng(seed)
    out = []
    for things in things_per_frame:
        panoptic, depth, segments, keys = frame(things, rng)
        result = tracker.update(panoptic, segments, depth if use_depth else None, K if use_depth else None)
        assert set(np.unique(result.panoptic[panoptic >= LABEL_DIVISOR * 11]) // LABEL_DIVISOR) <= {CAR, PERSON}
        assert np.array_equal(result.panoptic == panoptic, (panoptic % LABEL_DIVISOR == 0) | (result.panoptic == panoptic))
        out.append({k: result.ids[pid] for k, pid in keys.items()})
        ids = list(result.ids.values())
        assert len(ids) == len(set(ids)), f"two things of one frame share an id: {result.ids}"
    return out


def ids_of(per_frame, key):
    return {frame[key] for frame in per_frame if key in frame}


@pytest.mark.parametrize("use_depth", [True, False])
def test_a_moving_thing_keeps_its_id(use_depth):
    frames = [[("car", CAR, 4 + 5 * t, 20, 20 + 5 * t, 32, 10.0 - 0.2 * t)] for t in range(14)]
    per_frame = track_ids(InstanceTracker(), frames, use_depth)
    assert len(ids_of(per_frame, "car")) == 1
    assert all("car" in f for f in per_frame)


@pytest.mark.parametrize("use_depth", [True, False])
def test_two_things_that_cross_keep_their_ids(use_depth):
    # two cars on one row, driving towards each other; the nearer one (a) hides b while they overlap
    frames = []
    for t in range(20):
        a = ("a", CAR, 2 + 4 * t, 16, 20 + 4 * t, 30, 8.0)
        b = ("b", CAR, 80 - 3 * t, 18, 88 - 3 * t, 28, 14.0)  # wholly behind a in frames 10 and 11
        frames.append([b, a])
    per_frame = track_ids(InstanceTracker(), frames, use_depth)
    a_ids, b_ids = ids_of(per_frame, "a"), ids_of(per_frame, "b")
    assert len(a_ids) == 1 and len(b_ids) == 1 and a_ids != b_ids, per_frame
    # b was hidden in some frames (else the test would not test a crossing)
    assert any("b" not in f for f in per_frame)


def test_a_thing_hidden_for_three_frames_comes_back_with_its_id():
    frames = []
    for t in range(12):
        car = ("car", CAR, 10 + 3 * t, 20, 26 + 3 * t, 32, 10.0)
        frames.append([] if 4 <= t < 7 else [car])  # unseen in frames 4, 5, 6
    per_frame = track_ids(InstanceTracker(TrackerSettings(max_missing=5)), frames)
    assert len(ids_of(per_frame, "car")) == 1
    assert "car" in per_frame[7]


def test_a_thing_hidden_longer_than_allowed_gets_a_new_id():
    frames = [[("car", CAR, 10, 20, 26, 32)] if t < 2 or t >= 6 else [] for t in range(8)]
    per_frame = track_ids(InstanceTracker(TrackerSettings(max_missing=2)), frames)
    assert per_frame[0]["car"] != per_frame[7]["car"]


def test_a_new_thing_gets_a_new_id_and_classes_number_apart():
    frames = [[("a", CAR, 4, 10, 20, 22)]] * 3 + [[("a", CAR, 4, 10, 20, 22), ("b", CAR, 60, 10, 76, 22),
                                                  ("p", PERSON, 40, 30, 46, 46)]] * 3
    per_frame = track_ids(InstanceTracker(), frames)
    assert ids_of(per_frame, "a") == {CAR * LABEL_DIVISOR + 1}
    assert ids_of(per_frame, "b") == {CAR * LABEL_DIVISOR + 2}
    assert ids_of(per_frame, "p") == {PERSON * LABEL_DIVISOR + 1}


def test_ids_never_collide_within_a_class_and_the_oldest_retired_is_reused_first():
    """With 4 ids per class, things come and go: live ids stay distinct, retired ids return oldest first."""
    settings = TrackerSettings(max_missing=1, id_limit=4)
    tracker = InstanceTracker(settings)
    rng = np.random.default_rng(3)
    slots = [(4 + 18 * i, 8) for i in range(5)]
    seen_order = []
    for t in range(40):
        things = [(f"s{i}-{t // (3 + i)}", CAR, x, y, x + 10, y + 12) for i, (x, y) in enumerate(slots[:3])
                  if (t // (3 + i)) % 2 == 0]
        panoptic, depth, segments, keys = frame(things, rng)
        result = tracker.update(panoptic, segments, depth, K)
        live = [tr.instance for tr in tracker.tracks if tr.category == CAR]
        assert len(live) == len(set(live)), live
        assert all(1 <= i <= 4 for i in live)
        seen_order.extend(pid % LABEL_DIVISOR for pid in result.new)
    assert seen_order[:4] == [1, 2, 3, 4][: len(seen_order[:4])]
    assert len(seen_order) > 4, "the test must run past the id limit"

    ids = ClassIds(limit=3)
    assert [ids.allocate() for _ in range(3)] == [1, 2, 3]
    with pytest.raises(IdsExhausted):
        ids.allocate()
    ids.retire(2)
    ids.retire(1)
    assert ids.allocate() == 2 and ids.allocate() == 1  # the one retired first comes back first


def test_time_going_back_resets_and_stuff_is_untouched():
    tracker = InstanceTracker()
    rng = np.random.default_rng(0)
    for t in range(3):
        panoptic, depth, segments, _ = frame([("a", CAR, 4, 10, 20, 22), ("b", CAR, 40, 10, 56, 22)], rng)
        result = tracker.update(panoptic, segments, depth, K, time=10.0 + t)
        assert not result.reset
        assert np.array_equal(result.panoptic[panoptic == 0], panoptic[panoptic == 0])
        assert np.array_equal(result.instance, result.panoptic % LABEL_DIVISOR * (panoptic % LABEL_DIVISOR > 0))
        assert [s.id for s in result.segments] == [result.ids[s.id] for s in segments]
    panoptic, depth, segments, _ = frame([("c", CAR, 70, 10, 86, 22)], rng)
    result = tracker.update(panoptic, segments, depth, K, time=5.0)
    assert result.reset and list(result.ids.values()) == [CAR * LABEL_DIVISOR + 1]


def test_the_embedding_tells_apart_two_things_that_swap_places_without_motion():
    """Two still cars trade places between two frames (e.g. after a dropped stretch): only appearance can tell."""
    tracker = InstanceTracker(TrackerSettings(embedding_weight=4.0, max_cost=0.9, pixel_gate=0.3))
    emb = {"red": np.array([1.0, 0.0, 0.0], np.float32), "blue": np.array([0.0, 1.0, 0.0], np.float32)}
    rng = np.random.default_rng(1)
    results = []
    for boxes in ([("red", 10), ("blue", 22)], [("blue", 10), ("red", 22)]):
        things = [(name, CAR, x, 10, x + 12, 22) for name, x in boxes]
        panoptic, depth, segments, keys = frame(things, rng)
        by_pid = {pid: name for name, pid in keys.items()}
        segments = [Segment(s.id, s.category_id, True, 0.9, 1, s.instance_id, embedding=emb[by_pid[s.id]])
                    for s in segments]
        result = tracker.update(panoptic, segments)
        results.append({name: result.ids[pid] for name, pid in keys.items()})
    assert results[0] == results[1]


def test_relabel_handles_instance_numbers_shared_by_classes():
    panoptic = np.array([[CAR * 1000 + 1, PERSON * 1000 + 1, 0, -1]], dtype=np.int32)
    out, instance = relabel(panoptic, {CAR * 1000 + 1: CAR * 1000 + 7, PERSON * 1000 + 1: PERSON * 1000 + 3})
    assert out.tolist() == [[CAR * 1000 + 7, PERSON * 1000 + 3, 0, -1]]
    assert instance.tolist() == [[7, 3, 0, 0]]


def test_settings_are_checked():
    with pytest.raises(ValueError, match="id_limit"):
        TrackerSettings(id_limit=1000)
    with pytest.raises(ValueError, match="max_cost"):
        TrackerSettings(max_cost=0)


def test_relabel_with_the_instance_map_equals_the_full_lookup():
    rng = np.random.default_rng(5)
    panoptic = rng.choice([-1, 0, 10000, CAR * 1000 + 1, CAR * 1000 + 2, PERSON * 1000 + 3], size=(20, 30))
    instance = np.where((panoptic > 0) & (panoptic % 1000 > 0), panoptic % 1000, 0)
    ids = {CAR * 1000 + 1: CAR * 1000 + 9, CAR * 1000 + 2: CAR * 1000 + 1, PERSON * 1000 + 3: PERSON * 1000 + 4}
    full = relabel(panoptic, ids)
    fast = relabel(panoptic, ids, instance)
    assert np.array_equal(full[0], fast[0]) and np.array_equal(full[1], fast[1])
    assert set(np.unique(fast[0]).tolist()) == {-1, 0, 10000, CAR * 1000 + 9, CAR * 1000 + 1, PERSON * 1000 + 4}


def test_relabel_in_place_writes_the_callers_maps_and_leaves_read_only_ones_alone():
    rng = np.random.default_rng(6)
    panoptic = rng.choice([-1, 0, 10000, CAR * 1000 + 1, CAR * 1000 + 2, CAR * 1000 + 5, PERSON * 1000 + 3],
                          size=(24, 32)).astype(np.int32)
    instance = np.where((panoptic > 0) & (panoptic % 1000 > 0), panoptic % 1000, 0).astype(np.int32)
    # CAR 5 is not in ids (keeps its number); PERSON 8 is in ids but not in the frame (the table need not span it)
    ids = {CAR * 1000 + 1: CAR * 1000 + 9, CAR * 1000 + 2: CAR * 1000 + 1, PERSON * 1000 + 3: PERSON * 1000 + 4,
           PERSON * 1000 + 8: PERSON * 1000 + 2}
    expected = relabel(panoptic.astype(np.int64), ids)
    frozen_panoptic, frozen_instance = panoptic.copy(), instance.copy()
    frozen_panoptic.flags.writeable = frozen_instance.flags.writeable = False
    copied = relabel(frozen_panoptic, ids, frozen_instance, in_place=True)
    assert copied[0] is not frozen_panoptic and np.array_equal(frozen_panoptic, panoptic)
    out = relabel(panoptic, ids, instance, in_place=True)
    assert out[0] is panoptic and out[1] is instance
    for got in (copied, out):
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert (expected[0] == CAR * 1000 + 5).any()
    empty = np.full((3, 4), 10000, np.int32)
    assert np.array_equal(relabel(empty, ids, np.zeros_like(empty))[0], empty)


def test_camera_poses_keep_a_still_thing_while_the_camera_moves():
    """The camera slides 2.5 m sideways per frame past a parked car 10 m ahead: in the image the car jumps 20
    pixels a frame (no overlap), in the world it stays put, which the poses let the tracker see."""
    rng = np.random.default_rng(0)

    def run(with_poses: bool):
        tracker = InstanceTracker()
        ids = []
        for t in range(4):
            x0 = 70 - 20 * t  # the camera moves right (+x optical), so the car moves left in the image
            panoptic, depth, segments, keys = frame([("car", CAR, x0, 20, x0 + 8, 28, 10.0)], rng)
            pose = np.eye(4)
            pose[0, 3] = 2.5 * t
            result = tracker.update(panoptic, segments, depth, K, pose if with_poses else None, time=float(t))
            ids.append(result.ids[keys["car"]])
        return ids

    assert len(set(run(with_poses=True))) == 1
    assert len(set(run(with_poses=False))) > 1  # the same frames without poses: the jump breaks the track


def test_a_frame_without_a_pose_in_a_posed_stream_drops_only_the_3d_cue():
    tracker = InstanceTracker()
    rng = np.random.default_rng(1)
    pose = np.eye(4)
    for t, with_pose in enumerate([True, True, False, True]):
        panoptic, depth, segments, keys = frame([("car", CAR, 10 + 2 * t, 20, 26 + 2 * t, 32, 10.0)], rng)
        result = tracker.update(panoptic, segments, depth, K, pose if with_pose else None, time=float(t))
        assert result.ids[keys["car"]] == CAR * 1000 + 1


def test_a_stream_that_gains_poses_uses_the_world_frame_from_then_on():
    """A live robot's first images come before its first /tf: frames 0-1 have no pose (camera still), then the
    camera drives past the parked car with poses. The id carries over the switch, and from then on the world
    frame holds the car although it jumps 20 pixels a frame; without the switch the posed frames would all go
    without the 3D cue and the car would get a new id every frame."""
    rng = np.random.default_rng(2)
    tracker = InstanceTracker()
    ids = []
    for t in range(6):
        moved = max(0, t - 2)  # the camera starts moving after frame 2
        x0 = 70 - 20 * moved
        panoptic, depth, segments, keys = frame([("car", CAR, x0, 20, x0 + 8, 28, 10.0)], rng)
        pose = np.eye(4)
        pose[0, 3] = 2.5 * moved
        result = tracker.update(panoptic, segments, depth, K, pose if t >= 2 else None, time=float(t))
        ids.append(result.ids[keys["car"]])
    assert len(set(ids)) == 1, ids


def test_a_thing_smaller_than_the_grid_step_keeps_its_id():
    """A far person of 2 x 3 pixels on a grid with a 4-pixel step falls between the grid's samples in most
    frames: observed from its full-resolution pixels, it keeps one id (before: a new id whenever it was missed)."""
    settings = TrackerSettings(grid_size=W // 4)  # stride 4
    frames = [[("car", CAR, 4 + 2 * t, 20, 24 + 2 * t, 34, 9.0), ("far", PERSON, 60 + t, 10, 62 + t, 13, 40.0)]
              for t in range(16)]
    per_frame = track_ids(InstanceTracker(settings), frames)
    assert len(ids_of(per_frame, "far")) == 1, per_frame
    assert len(ids_of(per_frame, "car")) == 1
    assert all("far" in f for f in per_frame)
