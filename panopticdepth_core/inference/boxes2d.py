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
    if panoptic.size == 0:
        return []
    from scipy import ndimage  # a dependency; imported on first use so that importing this module stays light

    # Why boxes of every segment, stuff and things: one pass of find_objects over the ids (void ignored),
    # then only the thing ids' boxes are kept; asking per pixel which ids are things costs an integer modulo per
    # pixel, slower than the whole search.
    labels = panoptic  # find_objects skips labels < 1 (void -1 and stuff 0 included)
    largest = int(labels.max())
    if largest < 1:
        return []
    ids = None  # panoptic id of each label when the labels are numbered 1..N first
    if largest > MAX_DIRECT_ID:  # find_objects keeps one slot per label value up to the largest
        ids, inverse = np.unique(np.maximum(labels, 0), return_inverse=True)  # (N,), 0 first when some pixel is
        labels = inverse.reshape(labels.shape).astype(np.int32) + (0 if ids[0] == 0 else 1)  # void or 0
        ids = ids if ids[0] == 0 else np.r_[0, ids]
    slices = ndimage.find_objects(labels)  # one C pass: slices[label - 1] is the bounding box of label, or None
    boxes = []
    for index, found in enumerate(slices):
        label = index + 1
        pid = label if ids is None else int(ids[label])
        if found is None or pid % label_divisor == 0:
            continue
        rows, cols = found
        area = int(np.count_nonzero(labels[found] == label))
        boxes.append(InstanceBox2D(pid, pid // label_divisor, pid % label_divisor, cols.start, rows.start,
                                   cols.stop - 1, rows.stop - 1, area))
    return boxes


#: Largest panoptic id scipy's find_objects is given directly: it keeps one slot per label value up to the
#: largest (class 255 * 1000 + 999 fits). Larger ids are numbered 1..N first here, and sorted in
#: pointcloud.instance_boxes.
MAX_DIRECT_ID = 1 << 20
