"""The PanopticDepth heads: position, kernel and depth-kernel heads (per pyramid level, shared weights), the
stride-4 mask and depth encoders, and the 1x1 projections of kernels into the mask-embedding space.

Each head is a "tower" of 3x3 conv-norm-ReLU blocks (optionally modulated-deformable, optionally fed CoordConv
channels) followed by an output conv, with the released code's initialisation. Dynamic kernels are *not* applied
here: the projections expose ``project(kernels)`` (a linear map on the last axis) so that targets, losses and
post-processing apply kernels as batched matmuls.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..config import CfgNode
from .layers import append_coords, make_tower, normal_fill


class _Tower(nn.Module):
    """CoordConv (optional) + conv tower; the released ``SingleHead``.

    ``key`` names the head's config section under MODEL (CONVS_DIM, NUM_CONVS, DEFORM, COORD, NORM are read there).
    """

    def __init__(self, cfg: CfgNode, key: str, in_channels: int) -> None:
        super().__init__()
        section = cfg.MODEL[key]
        self.coord = section.COORD
        in_channels += 2 if section.COORD else 0
        self.tower = make_tower(in_channels, section.CONVS_DIM, section.NUM_CONVS, section.DEFORM, section.NORM,
                                f"MODEL.{key}.NORM")
        self.channels = section.CONVS_DIM if section.NUM_CONVS > 0 else in_channels

    def features(self, x: Tensor) -> Tensor:
        return self.tower(append_coords(x) if self.coord else x)


class _OutputTower(_Tower):
    """A tower and one output conv with the released initialisation."""

    def __init__(self, cfg: CfgNode, key: str, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(cfg, key, in_channels)
        self.out_conv = nn.Conv2d(self.channels, out_channels, kernel_size, padding=kernel_size // 2)
        normal_fill(self.out_conv)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_conv(self.features(x))


class PositionHead(_Tower):
    """Per level: thing-centre logits (B, T, h, w) and stuff-region logits over all classes (B, S, h, w)."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg, "POSITION_HEAD", cfg.MODEL.FPN.OUT_CHANNELS)
        p = cfg.MODEL.POSITION_HEAD
        self.out_inst = nn.Conv2d(self.channels, p.THING.NUM_CLASSES, 3, padding=1)
        self.out_sem = nn.Conv2d(self.channels, p.STUFF.NUM_CLASSES, 3, padding=1)
        # The released code gives both outputs the focal-loss prior bias.
        normal_fill(self.out_inst, bias=p.THING.BIAS_VALUE)
        normal_fill(self.out_sem, bias=p.THING.BIAS_VALUE)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.features(x)
        return self.out_inst(x), self.out_sem(x)


class KernelHead(_OutputTower):
    """Per level: kernel features (B, C_kernel, h, w), C_kernel = KERNEL_HEAD.CONVS_DIM."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg, "KERNEL_HEAD", cfg.MODEL.FPN.OUT_CHANNELS, cfg.MODEL.KERNEL_HEAD.CONVS_DIM)


class DepthKernelHead(_OutputTower):
    """Per level: depth-kernel parameters (B, 2 + Kd, h, w) = [mean logit, range logit, Kd weights]."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg, "DEPTH_HEAD", cfg.MODEL.FPN.OUT_CHANNELS, 2 + cfg.MODEL.DEPTH_HEAD.DEPTH_KERNEL_DIM)


class FeatureEncoder(_Tower):
    """Stride-4 mask embedding (B, E, h4, w4) from the semantic-FPN feature; E = FEATURE_ENCODER.CONVS_DIM."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg, "FEATURE_ENCODER", cfg.MODEL.SEMANTIC_FPN.CONVS_DIM)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


class DepthFeatureEncoder(_OutputTower):
    """Stride-4 depth embedding (B, Kd, h4, w4): a FeatureEncoder-shaped tower and a 1x1 conv to Kd channels."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__(cfg, "FEATURE_ENCODER", cfg.MODEL.SEMANTIC_FPN.CONVS_DIM,
                         cfg.MODEL.DEPTH_HEAD.DEPTH_KERNEL_DIM, kernel_size=1)


class KernelProjection(nn.Module):
    """The generators' 1x1 "embed_extractor": kernels (..., C_kernel) -> mask-embedding kernels (..., E).

    Stored as a 1x1 conv (the released parameter shapes) but applied with ``F.linear`` on the last axis, so it
    works on any leading shape: (B, N, C), (B, N, P, C), ...
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, 1)
        normal_fill(self.proj)

    def forward(self, kernels: Tensor) -> Tensor:
        weight = self.proj.weight.flatten(1)  # (E, C_kernel)
        return F.linear(kernels, weight, self.proj.bias)
