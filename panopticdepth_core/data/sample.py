"""The one sample type every data set yields: image, panoptic ground truth, metric depth, intrinsics."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Sample:
    """One frame.

    image: (H, W, 3) uint8 RGB.
    semantic: (H, W) int32 class ids (train ids), 255 = void.
    instance: (H, W) int32, a positive id per thing instance (unique in the frame), 0 for stuff and void.
    depth: (H, W) float32 metres, 0 = invalid/unknown; None if the data set has no depth.
    intrinsics: (3, 3) float64 pinhole K for this image's resolution, or None when unknown.
    name: frame name (the file stem the result writers use); sequence/frame for video metrics.
    """

    image: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    depth: np.ndarray | None = None
    intrinsics: np.ndarray | None = None
    name: str = ""
    sequence: str = ""
    frame: int = 0
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        h, w = self.image.shape[:2]
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"sample {self.name!r}: image must be (H, W, 3) uint8, got {self.image.shape} {self.image.dtype}")
        for label, arr in (("semantic", self.semantic), ("instance", self.instance), ("depth", self.depth)):
            if arr is not None and arr.shape != (h, w):
                raise ValueError(f"sample {self.name!r}: {label} has shape {arr.shape}, image is {(h, w)}")
