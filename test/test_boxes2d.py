"""2D boxes of thing instances (vision_msgs Detection2D): checked against a per-id reference on random maps."""

from __future__ import annotations

import numpy as np

from panopticdepth_core.inference.boxes2d import instance_boxes_2d


def _reference(panoptic: np.ndarray) -> list[tuple[int, int, int, int, int, int]]:
    boxes = []
    for pid in np.unique(panoptic):
        if pid < 0 or pid % 1000 == 0:
            continue
        rows, cols = np.nonzero(panoptic == pid)
        boxes.append((int(pid), int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max()), rows.size))
    return boxes


def test_boxes_equal_a_per_id_reference_including_huge_ids() -> None:
    rng = np.random.default_rng(0)
    for trial in range(40):
        height, width = rng.integers(1, 40, 2)
        ids = [-1, 0, 1000, 1001, 1002, 13005, 13999, 18000, 255001] + ([2_000_000_001] if trial % 4 == 0 else [])
        panoptic = rng.choice(ids, (height, width)).astype(np.int64 if trial % 2 else np.int32)
        got = [(b.panoptic_id, b.x0, b.y0, b.x1, b.y1, b.area) for b in instance_boxes_2d(panoptic)]
        assert got == _reference(panoptic)
        for box in instance_boxes_2d(panoptic):
            assert (box.class_id, box.instance_id) == divmod(box.panoptic_id, 1000)


def test_no_things_no_boxes() -> None:
    assert instance_boxes_2d(np.full((3, 4), -1, np.int32)) == []
    assert instance_boxes_2d(np.full((3, 4), 7000, np.int32)) == []
    assert instance_boxes_2d(np.zeros((0, 4), np.int32)) == []
