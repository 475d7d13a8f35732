"""Semantic-FPN fusion: P2..P5 brought to the common stride (4) by conv + 2x upsampling steps and summed.

Same structure as the released ``build_semanticfpn`` (Panoptic FPN's semantic branch): each level gets
``max(1, log2(stride) - log2(common_stride))`` conv-norm-ReLU blocks, each followed by a bilinear 2x upsample
while the level is coarser than the common stride. The result feeds both the mask and the depth encoders.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from ..config import CfgNode
from .backbone import FPN_STRIDES
from .layers import ConvNormAct, c2_msra_fill


class SemanticFPN(nn.Module):
    """{"p2": (B, C, H/4, W/4), ..., "p5": ...} -> (B, CONVS_DIM, H/common_stride, W/common_stride)."""

    def __init__(self, in_features: Sequence[str], in_channels: int, convs_dim: int, common_stride: int = 4,
                 norm: str = "GN", strides: Mapping[str, int] = FPN_STRIDES) -> None:
        super().__init__()
        self.in_features = list(in_features)
        self.heads = nn.ModuleDict()
        for name in self.in_features:
            if name not in strides:
                raise ValueError(f"MODEL.SEMANTIC_FPN.IN_FEATURES: unknown feature {name!r}; have {list(strides)}")
            stride = strides[name]
            if stride < common_stride:
                raise ValueError(f"MODEL.SEMANTIC_FPN: feature {name} (stride {stride}) is finer than "
                                 f"COMMON_STRIDE {common_stride}")
            steps = max(1, int(math.log2(stride) - math.log2(common_stride)))
            ops: list[nn.Module] = []
            for k in range(steps):
                block = ConvNormAct(in_channels if k == 0 else convs_dim, convs_dim, 3, norm=norm,
                                    norm_key="MODEL.SEMANTIC_FPN.NORM")
                c2_msra_fill(block.conv)
                ops.append(block)
                if stride != common_stride:
                    ops.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.heads[name] = nn.Sequential(*ops)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> SemanticFPN:
        s = cfg.MODEL.SEMANTIC_FPN
        return cls(s.IN_FEATURES, cfg.MODEL.FPN.OUT_CHANNELS, s.CONVS_DIM, s.COMMON_STRIDE, s.NORM)

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        out = None
        for name in self.in_features:
            level = self.heads[name](features[name])
            out = level if out is None else out + level
        return out
