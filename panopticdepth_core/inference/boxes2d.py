"""2D boxes of the thing instances of a panoptic map (for vision_msgs/Detection2D), NumPy only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.classes import LABEL_DIVISOR


@dataclass
class InstanceBox2D:
    """The pixel extent of one thing instance: columns x0..x1 and rows y0..y1, inclusive."""

    panoptic_id: int
    class_id: int
    instance_id: int
    x0: int
    y0: int
    x1: int
    y1: int
    area: int  # pixels

    @property
    def center(self) -> tuple[float, float]:
        """(x, y) in pixels, pixel centres at integer coordinates."""
        return (self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.x1 - self.x0 + 1, self.y1 - self.y0 + 1


def instance_boxes_2d(panoptic: np.ndarray, label_divisor: int = LABEL_DIVISOR) -> list[InstanceBox2D]:
    """One box per thing instance (panoptic id with a non-zero instance part), sorted by panoptic id."""
    panoptic = np.asarray(panoptic)
    if panoptic.ndim != 2:
        raise ValueError(f"panoptic must be (H, W), got shape {panoptic.shape}")
    thing = (panoptic >= 0) & (panoptic % label_divisor != 0)
    ids = np.unique(panoptic[thing])  # (N,) sorted
    if ids.size == 0:
        return []
    height, width = panoptic.shape
    index = np.full(panoptic.shape, ids.size, dtype=np.int64)
    index[thing] = np.searchsorted(ids, panoptic[thing])
    rows = np.zeros((ids.size + 1, height), dtype=bool)  # (N + 1, H): instance i has a pixel in row r
    cols = np.zeros((ids.size + 1, width), dtype=bool)
    rows[index, np.arange(height)[:, None]] = True
    cols[index, np.arange(width)[None, :]] = True
    areas = np.bincount(index.reshape(-1), minlength=ids.size + 1)
    boxes = []
    for i, pid in enumerate(ids.tolist()):
        ys, xs = np.flatnonzero(rows[i]), np.flatnonzero(cols[i])
        boxes.append(InstanceBox2D(int(pid), int(pid) // label_divisor, int(pid) % label_divisor, int(xs[0]),
                                   int(ys[0]), int(xs[-1]), int(ys[-1]), int(areas[i])))
    return boxes
