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
    relative = torch.matmul(weights, depth_embedding.reshape(batch, kd, height * width))  # (B, N, h*w)
    depth, mean = _depth(mean_logit, range_logit, relative, mean_scale, range_scale)  # (B, N, h*w), (B, N, 1)
    return depth.reshape(batch, -1, height, width), mean.squeeze(-1)


def pixel_depths(embedding: Tensor, depth_kernels: Tensor, mean_scale: float = 44.0, range_scale: float = 88.0
                 ) -> Tensor:
    """Depth of P pixels, each under its own kernel: embedding rows (P, Kd), kernels (P, 2 + Kd) -> (P,) metres.

    The same map as ``instance_depth_maps`` for one pixel per kernel, as a row-wise product (a batch of 1x1
    matrix products is many times slower on the CPU).
    """
    kd = embedding.shape[-1]
    if depth_kernels.shape[-1] != kd + 2:
        raise ValueError(f"depth kernels have {depth_kernels.shape[-1]} values, expected 2 + {kd}")
    relative = (depth_kernels[:, 2:] * embedding).sum(1)
    depth, _ = _depth(depth_kernels[:, 0], depth_kernels[:, 1], relative, mean_scale, range_scale)
    return depth


def _depth(mean_logit: Tensor, range_logit: Tensor, relative_logit: Tensor, mean_scale: float, range_scale: float
           ) -> tuple[Tensor, Tensor]:
    """D = ReLU(mu + r * (2 * sigmoid(w . E) - 1)) from its three logits (broadcasting); also returns mu."""
    mean = torch.sigmoid(mean_logit) * mean_scale
    spread = torch.sigmoid(range_logit) * range_scale
    return torch.relu(mean + spread * (torch.sigmoid(relative_logit) * 2.0 - 1.0)), mean
