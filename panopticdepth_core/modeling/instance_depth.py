"""Per-instance depth maps from dynamic depth kernels (PanopticDepth, Sec. 3.2).

Each instance has a depth kernel ``[a, b, w_1..w_Kd]``. Its depth map over the stride-4 depth embedding E_d is
``D(x) = ReLU(mu + r * (2 * sigmoid(w . E_d(x)) - 1))`` with ``mu = MEAN_SCALE * sigmoid(a)`` and
``r = RANGE_SCALE * sigmoid(b)``: the kernel places the instance at a mean distance and the embedding
shapes the relative depth inside it. Implemented as a batched matmul so the model can be exported.
"""

from __future__ import annotations

import torch
from torch import Tensor


def instance_depth_maps(
    depth_embedding: Tensor,
    depth_kernels: Tensor,
    mean_scale: float = 44.0,
    range_scale: float = 88.0,
) -> tuple[Tensor, Tensor]:
    """Depth maps and mean depths of N instances per image.

    Args:
        depth_embedding: (B, Kd, h, w) depth embedding.
        depth_kernels: (B, N, 2 + Kd) per-instance [mean logit, range logit, kernel weights].

    Returns:
        depth: (B, N, h, w) metres, >= 0.
        mean: (B, N) the instance's mean depth mu in metres.
    """
    batch, kd, height, width = depth_embedding.shape
    if depth_kernels.shape[-1] != kd + 2:
        raise ValueError(f"depth kernels have {depth_kernels.shape[-1]} values, expected 2 + {kd}")
    mean_logit, range_logit, weights = torch.split(depth_kernels, [1, 1, kd], dim=-1)
    mean = torch.sigmoid(mean_logit) * mean_scale  # (B, N, 1)
    spread = torch.sigmoid(range_logit) * range_scale  # (B, N, 1)
    relative = torch.matmul(weights, depth_embedding.reshape(batch, kd, height * width))  # (B, N, h*w)
    relative = torch.sigmoid(relative) * 2.0 - 1.0
    depth = torch.relu(mean + spread * relative)  # (B, N, h*w)
    return depth.reshape(batch, -1, height, width), mean.squeeze(-1)
