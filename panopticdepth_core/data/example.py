"""What a transform hands the model (``TrainExample``) and how examples are batched (``TrainBatch``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..modeling.types import InstanceTarget


@dataclass
class TrainExample:
    """One transformed frame, ready for the network.

    image: (3, H, W) uint8 RGB (the model normalises and reorders channels per INPUT.FORMAT).
    target: semantic/instance (H, W) int64, depth (H, W) float32 metres or None, all at the image's resolution.
    intrinsics: (3, 3) float64 K updated for every resize/crop/pad/flip, or None when unknown.
    orig_size: (H, W) of the frame as stored, to map predictions back for evaluation.
    """

    image: Tensor
    target: InstanceTarget
    intrinsics: Tensor | None
    name: str
    sequence: str = ""
    frame: int = 0
    orig_size: tuple[int, int] = (0, 0)
    meta: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """The per-image dict that travels next to the tensors in a batch."""
        return {
            "name": self.name,
            "sequence": self.sequence,
            "frame": self.frame,
            "intrinsics": self.intrinsics,
            "orig_size": self.orig_size,
            "image_size": tuple(self.image.shape[-2:]),
            **self.meta,
        }


def _pin_target(target: InstanceTarget) -> InstanceTarget:
    return InstanceTarget(
        semantic=target.semantic.pin_memory(),
        instance=target.instance.pin_memory(),
        depth=None if target.depth is None else target.depth.pin_memory(),
    )


class TrainBatch(NamedTuple):
    """(images, targets, metas) of one batch; unpacks like a tuple.

    ``pin_memory`` exists because the DataLoader's pinning thread does not look inside dataclasses: without it the
    targets would stay in pageable memory and their host-to-GPU copies could not overlap compute.
    """

    images: list[Tensor]  # B x (3, H_i, W_i) uint8
    targets: list[InstanceTarget]
    metas: list[dict[str, Any]]

    def pin_memory(self) -> TrainBatch:
        return TrainBatch(
            [im.pin_memory() for im in self.images],
            [_pin_target(t) for t in self.targets],
            [{k: (v.pin_memory() if isinstance(v, Tensor) else v) for k, v in m.items()} for m in self.metas],
        )

    def to(self, device: torch.device | str, non_blocking: bool = True) -> TrainBatch:
        """Images and targets on ``device`` (metadata stays on the host)."""
        return TrainBatch(
            [im.to(device, non_blocking=non_blocking) for im in self.images],
            [
                InstanceTarget(
                    t.semantic.to(device, non_blocking=non_blocking),
                    t.instance.to(device, non_blocking=non_blocking),
                    None if t.depth is None else t.depth.to(device, non_blocking=non_blocking),
                )
                for t in self.targets
            ],
            self.metas,
        )


def collate_examples(examples: list[TrainExample]) -> TrainBatch:
    """List of examples -> TrainBatch; images keep their own sizes (the model pads the batch)."""
    return TrainBatch([e.image for e in examples], [e.target for e in examples], [e.metadata() for e in examples])
