"""The tensors that pass between the network, the target builder, the losses and the post-processing.

These dataclasses are the contract between ``panoptic_depth.py`` (the meta-architecture), ``targets.py``,
``losses.py`` and ``postprocess.py``: each of those modules reads and writes only these types, so each can be
tested on its own with hand-made tensors.

Shapes use: B images, T thing classes, S semantic classes (all classes; things are the last T of them),
L pyramid levels (P3..P7), E mask-embedding channels, Kd depth-kernel channels, (h_l, w_l) the size of level l,
(h4, w4) the stride-4 size of the padded batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..data.classes import LABEL_DIVISOR, VOID_CLASS, VOID_PANOPTIC_ID  # noqa: F401 - re-exported

#: Maps kernels (..., C_kernel) to the mask-embedding space (..., E); the thing and stuff generators' 1x1 convs.
KernelProjection = Callable[[Tensor], Tensor]


@dataclass
class HeadOutputs:
    """Everything the network predicts for one padded batch, before any selection."""

    center_logits: list[Tensor]  # L x (B, T, h_l, w_l): thing-centre heatmap logits
    region_logits: list[Tensor]  # L x (B, S, h_l, w_l): stuff-region logits over all classes
    kernel_features: list[Tensor]  # L x (B, C_kernel, h_l, w_l): kernel-head output, before projection
    mask_embedding: Tensor  # (B, E, h4, w4)
    depth_kernel_params: list[Tensor] | None = None  # L x (B, 2 + Kd, h_l, w_l): [mean logit, range logit, w]
    depth_embedding: Tensor | None = None  # (B, Kd, h4, w4)


@dataclass
class InstanceTarget:
    """Ground truth of one image, at the padded input resolution's unpadded top-left corner."""

    semantic: Tensor  # (H, W) int64 class ids, ignore value (255) for void
    instance: Tensor  # (H, W) int64, a positive id per thing instance, 0 for stuff and void
    depth: Tensor | None = None  # (H, W) float32 metres, 0 where unknown


@dataclass
class LevelTargets:
    """Targets of one pyramid level for the whole batch (padded to MODEL.TENSOR_DIM entries)."""

    center_heatmap: Tensor  # (B, T, h_l, w_l) Gaussian centre targets in [0, 1]
    thing_masks: Tensor  # (B, N, h4, w4) float masks of things assigned here; ignore value where padded
    thing_valid: Tensor  # (B, N) bool, which of the N slots hold a thing
    thing_classes: Tensor  # (B, N) int64 thing class index in [0, T)
    thing_mean_depth: Tensor | None  # (B, N) mean valid ground-truth depth of each thing (0: none valid)
    stuff_scores: Tensor  # (B, S, h_l, w_l) soft region targets (bilinear-downsampled one-hot, < 0.5 set to 0)
    stuff_masks: Tensor  # (B, S, h4, w4) full-resolution (stride 4) masks of the present classes, compacted
    stuff_region_masks: Tensor  # (B, S, h_l, w_l) binary level masks of the present classes, compacted
    stuff_valid: Tensor  # (B, S) bool, which compacted slots are filled
    stuff_classes: Tensor  # (B, S) int64 class of each compacted slot


@dataclass
class TargetSet:
    """All targets of a batch."""

    levels: list[LevelTargets]
    depth: Tensor | None = None  # (B, h4, w4) ground-truth depth at stride 4 (nearest), 0 = invalid
    class_masks: Tensor | None = None  # (B, S, h4, w4) soft stride-4 masks of every class (bilinear one-hot)
    image_sizes: list[tuple[int, int]] | None = None  # each image's (H, W) in the top-left of the padded batch
    padded_size: tuple[int, int] | None = None  # (H, W) of the padded batch


@dataclass
class Segment:
    """One segment of a panoptic prediction."""

    id: int  # panoptic id = category_id * LABEL_DIVISOR + instance (instance 0 for stuff)
    category_id: int  # class index (Cityscapes trainId order for the shipped configs)
    is_thing: bool
    score: float
    area: int  # pixels in the final map
    instance_id: int = 0  # 1..N for things, unique in the image; 0 for stuff
    mean_depth: float = float("nan")  # metres, over the segment's pixels (NaN without depth)
    embedding: Any = None  # things: (E,) float32 NumPy, the mask kernel (tracking's appearance cue); else None


@dataclass
class PanopticResult:
    """Per-image output at the original input resolution."""

    panoptic: Tensor  # (H, W) int32: category*LABEL_DIVISOR + instance; VOID_PANOPTIC_ID where void
    semantic: Tensor  # (H, W) int32: category id; VOID_CLASS where void
    instance: Tensor  # (H, W) int32: instance id (1..N) for things, 0 elsewhere
    depth: Tensor | None  # (H, W) float32 metres in [0, MAX_DEPTH]; None for panoptic-only models
    segments: list[Segment] = field(default_factory=list)


def empty_result(height: int, width: int, with_depth: bool, device: torch.device | str = "cpu") -> PanopticResult:
    """A result with every pixel void (and depth 0), for images where nothing is detected."""
    return PanopticResult(
        panoptic=torch.full((height, width), VOID_PANOPTIC_ID, dtype=torch.int32, device=device),
        semantic=torch.full((height, width), VOID_CLASS, dtype=torch.int32, device=device),
        instance=torch.zeros((height, width), dtype=torch.int32, device=device),
        depth=torch.zeros((height, width), dtype=torch.float32, device=device) if with_depth else None,
    )
