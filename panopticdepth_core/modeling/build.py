"""Build the PanopticDepth network from a config and put it on MODEL.DEVICE."""

from __future__ import annotations

import torch

from ..config import CfgNode
from .panoptic_depth import PanopticDepth


def build_model(cfg: CfgNode, load_pretrained: bool | None = None) -> PanopticDepth:
    """The network on ``cfg.MODEL.DEVICE``, in training mode, with freshly initialised weights.

    ``load_pretrained``: load the local ImageNet backbone file ``MODEL.BACKBONE.PRETRAINED``. By default only
    when ``MODEL.WEIGHTS`` is empty: a full checkpoint loaded afterwards would overwrite the backbone anyway,
    and a robot running a trained model should not need the ImageNet file.
    """
    if load_pretrained is None:
        load_pretrained = not cfg.MODEL.WEIGHTS
    try:
        device = torch.device(cfg.MODEL.DEVICE)
    except RuntimeError as exc:
        raise ValueError(f"MODEL.DEVICE {cfg.MODEL.DEVICE!r} is not a valid torch device: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"MODEL.DEVICE is {cfg.MODEL.DEVICE!r} but CUDA is not available here; use 'cpu'")
    model = PanopticDepth(cfg, load_pretrained=load_pretrained)
    return model.to(device)
