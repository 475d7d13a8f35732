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


@dataclass
class ThingExtent:
    """Where one thing instance lies: its panoptic id, and its bounding ``rows, cols`` slices in a label map in
    which its pixels have the value ``label`` (see :func:`thing_extents`)."""

    panoptic_id: int
    label: int
    rows: slice
    cols: slice

    @property
    def box(self) -> tuple[slice, slice]:
        return self.rows, self.cols


def thing_extents(panoptic: np.ndarray, label_divisor: int = LABEL_DIVISOR) -> tuple[np.ndarray, list[ThingExtent]]:
    """The thing instances (panoptic ids with a non-zero instance part) of a (H, W) panoptic map, sorted by
    panoptic id, and the label map their ``label`` values refer to (the panoptic map itself, or its ids numbered
    1..N when they are too large for find_objects). Void (negative) and stuff (instance part 0) are skipped.

    Why boxes of every segment, stuff and things: one pass of scipy's ``find_objects`` over the ids gives every
    id's bounding rows and columns, then only the thing ids' boxes are kept; asking per pixel which ids are things
    costs an integer modulo per pixel, slower than the whole search.
    """
    panoptic = np.asarray(panoptic)
    if panoptic.ndim != 2:
        raise ValueError(f"panoptic must be (H, W), got shape {panoptic.shape}")
    largest = int(panoptic.max()) if panoptic.size else 0
    if largest < 1:
        return panoptic, []
    from scipy import ndimage  # a dependency; imported on first use so that importing this module stays light

    labels, ids = panoptic, None  # ids: the panoptic id of each label when the labels are numbered 1..N first
    if largest > MAX_DIRECT_ID:  # find_objects keeps one slot per label value up to the largest
        ids, inverse = np.unique(np.maximum(panoptic, 0), return_inverse=True)  # (N,), 0 first when some pixel is
        labels = inverse.reshape(panoptic.shape).astype(np.int32) + (0 if ids[0] == 0 else 1)  # void or stuff
        ids = ids if ids[0] == 0 else np.r_[0, ids]
    found = ndimage.find_objects(labels)  # the bounding slices of each label 1..max, None for labels not present
    extents = []
    for label, box in enumerate(found, 1):  # ~20 present of ~19000 slots at Cityscapes ids
        if box is None:
            continue
        pid = label if ids is None else int(ids[label])
        if pid % label_divisor != 0:
            extents.append(ThingExtent(pid, label, *box))
    return labels, extents


def instance_boxes_2d(panoptic: np.ndarray, label_divisor: int = LABEL_DIVISOR,
                      things: tuple[np.ndarray, list[ThingExtent]] | None = None) -> list[InstanceBox2D]:
    """One box per thing instance (panoptic id with a non-zero instance part), sorted by panoptic id.

    ``things``: ``thing_extents(panoptic, label_divisor)`` when the caller has it already (the node shares one
    search of the map between these boxes and the 3D ones).
    """
    labels, extents = thing_extents(panoptic, label_divisor) if things is None else things
    boxes = []
    for thing in extents:
        area = int(np.count_nonzero(labels[thing.box] == thing.label))
        pid = thing.panoptic_id
        boxes.append(InstanceBox2D(pid, pid // label_divisor, pid % label_divisor, thing.cols.start,
                                   thing.rows.start, thing.cols.stop - 1, thing.rows.stop - 1, area))
    return boxes


#: Largest panoptic id scipy's find_objects is given directly: it keeps one slot per label value up to the
#: largest (class 255 * 1000 + 999 fits). Larger ids are numbered 1..N first.
MAX_DIRECT_ID = 1 << 20
