"""The PanopticDepth heads: position, kernel and depth-kernel heads (per pyramid level, shared weights), the
stride-4 mask and depth encoders, and the 1x1 projections of kernels into the mask-embedding space.

Each head is a "tower" of 3x3 conv-norm-ReLU blocks (optionally modulated-deformable, optionally fed CoordConv
channels) followed by an output conv, with the released code's initialisation. Dynamic kernels are *not* applied
here: the projections expose ``project(kernels)`` (a linear map on the last axis) so that targets, losses and
post-processing apply kernels as batched matmuls.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from ..config import CfgNode
from .layers import append_coords, make_tower, normal_fill


@dataclass(frozen=True)
class TowerSpec:
    """Shape of a head's conv tower: ``num_convs`` 3x3 conv-norm-ReLU blocks of ``channels`` channels."""

    channels: int
    num_convs: int
    deform: bool = False  # modulated-deformable convs (DCNv2)
    coord: bool = False  # append two CoordConv channels to the input
    norm: str = "GN"
    norm_key: str = "norm"  # the config key named in errors about ``norm``

    @classmethod
    def from_config(cls, cfg: CfgNode, key: str) -> TowerSpec:
        """The tower of config section MODEL.<key> (CONVS_DIM, NUM_CONVS, DEFORM, COORD, NORM)."""
        section = cfg.MODEL[key]
        return cls(int(section.CONVS_DIM), int(section.NUM_CONVS), bool(section.DEFORM), bool(section.COORD),
                   str(section.NORM), f"MODEL.{key}.NORM")


class _Tower(nn.Module):
    """CoordConv (optional) + conv tower; the released ``SingleHead``."""

    def __init__(self, in_channels: int, tower: TowerSpec) -> None:
        super().__init__()
        self.coord = tower.coord
        in_channels += 2 if tower.coord else 0
        self.tower = make_tower(in_channels, tower.channels, tower.num_convs, tower.deform, tower.norm, tower.norm_key)
        self.channels = tower.channels if tower.num_convs > 0 else in_channels

    def features(self, x: Tensor) -> Tensor:
        return self.tower(append_coords(x) if self.coord else x)


class _OutputTower(_Tower):
    """A tower and one output conv with the released initialisation."""

    def __init__(self, in_channels: int, out_channels: int, tower: TowerSpec, kernel_size: int = 3) -> None:
        super().__init__(in_channels, tower)
        self.out_conv = nn.Conv2d(self.channels, out_channels, kernel_size, padding=kernel_size // 2)
        normal_fill(self.out_conv)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_conv(self.features(x))


class PositionHead(_Tower):
    """Per level: thing-centre logits (B, T, h, w) and stuff-region logits over all classes (B, S, h, w)."""

    def __init__(self, in_channels: int, num_things: int, num_classes: int, tower: TowerSpec,
                 prior_bias: float = -2.19) -> None:
        super().__init__(in_channels, tower)
        self.out_inst = nn.Conv2d(self.channels, num_things, 3, padding=1)
        self.out_sem = nn.Conv2d(self.channels, num_classes, 3, padding=1)
        # The released code gives both outputs the focal-loss prior bias.
        normal_fill(self.out_inst, bias=prior_bias)
        normal_fill(self.out_sem, bias=prior_bias)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> PositionHead:
        p = cfg.MODEL.POSITION_HEAD
        return cls(cfg.MODEL.FPN.OUT_CHANNELS, p.THING.NUM_CLASSES, p.STUFF.NUM_CLASSES,
                   TowerSpec.from_config(cfg, "POSITION_HEAD"), p.THING.BIAS_VALUE)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.features(x)
        return self.out_inst(x), self.out_sem(x)


class KernelHead(_OutputTower):
    """Per level: kernel features (B, C_kernel, h, w)."""

    def __init__(self, in_channels: int, kernel_dim: int, tower: TowerSpec) -> None:
        super().__init__(in_channels, kernel_dim, tower)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> KernelHead:
        """C_kernel = KERNEL_HEAD.CONVS_DIM, the tower's width (as released)."""
        return cls(cfg.MODEL.FPN.OUT_CHANNELS, cfg.MODEL.KERNEL_HEAD.CONVS_DIM, TowerSpec.from_config(cfg, "KERNEL_HEAD"))


class DepthKernelHead(_OutputTower):
    """Per level: depth-kernel parameters (B, 2 + Kd, h, w) = [mean logit, range logit, Kd weights]."""

    def __init__(self, in_channels: int, depth_kernel_dim: int, tower: TowerSpec) -> None:
        super().__init__(in_channels, 2 + depth_kernel_dim, tower)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> DepthKernelHead:
        return cls(cfg.MODEL.FPN.OUT_CHANNELS, cfg.MODEL.DEPTH_HEAD.DEPTH_KERNEL_DIM,
                   TowerSpec.from_config(cfg, "DEPTH_HEAD"))


class FeatureEncoder(_Tower):
    """Stride-4 mask embedding (B, E, h4, w4) from the semantic-FPN feature; E = the tower's width."""

    def __init__(self, in_channels: int, tower: TowerSpec) -> None:
        super().__init__(in_channels, tower)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> FeatureEncoder:
        return cls(cfg.MODEL.SEMANTIC_FPN.CONVS_DIM, TowerSpec.from_config(cfg, "FEATURE_ENCODER"))

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


class DepthFeatureEncoder(_OutputTower):
    """Stride-4 depth embedding (B, Kd, h4, w4): a FeatureEncoder-shaped tower and a 1x1 conv to Kd channels."""

    def __init__(self, in_channels: int, depth_kernel_dim: int, tower: TowerSpec) -> None:
        super().__init__(in_channels, depth_kernel_dim, tower, kernel_size=1)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> DepthFeatureEncoder:
        """The tower is the mask encoder's (MODEL.FEATURE_ENCODER), as released."""
        return cls(cfg.MODEL.SEMANTIC_FPN.CONVS_DIM, cfg.MODEL.DEPTH_HEAD.DEPTH_KERNEL_DIM,
                   TowerSpec.from_config(cfg, "FEATURE_ENCODER"))


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
