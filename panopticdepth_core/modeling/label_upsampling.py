"""Label and depth maps at a camera resolution other than the network input's, without full-size score maps.

Post-processing decides each pixel by a rule over the segments' bilinearly resampled score maps (the argmax over
the segments, or the classic paste of thing masks over the stuff argmax). Evaluating N full maps at 1280x720 for
a network that saw 256x144 cost most of a frame. This module gets the same labels from the maps at the network
input's resolution:

a pixel of the output is a convex mix of four input pixels (bilinear resampling, ``align_corners=False``). Where
the rule gives the same answer (the same "key") at all four, it gives that answer at the mix too: a segment that
beats another at each of the four points beats it at any weighted mean of them, and a mask above the threshold at
four points is above it in between. So only output pixels whose four source pixels disagree (segment borders) are
decided from resampled values; everywhere else the key is copied. Depth follows the same split: inside a segment
the output is the bilinear resampling of the input-resolution depth map, on borders each pixel mixes its own
segment's depth at the four source pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AxisTaps:
    """The two source indices and the weight of the second, per output position along one axis (the rule of
    ``F.interpolate(mode="bilinear", align_corners=False)`` without a scale factor)."""

    first: Tensor  # (n_out,) int64
    second: Tensor  # (n_out,) int64, first + 1 except at the last source index
    weight: Tensor  # (n_out,) float32 weight of ``second``


def axis_taps(out_len: int, in_len: int, device: torch.device | str = "cpu") -> AxisTaps:
    """Bilinear taps for resampling ``in_len`` samples to ``out_len`` (up or down)."""
    scale = in_len / out_len
    source = ((torch.arange(out_len, device=device, dtype=torch.float32) + 0.5) * scale - 0.5).clamp(min=0.0)
    first = source.long().clamp(max=in_len - 1)  # truncation = floor for the clamped, non-negative positions
    second = (first + 1).clamp(max=in_len - 1)
    return AxisTaps(first, second, (source - first).clamp(0.0, 1.0))


@dataclass(frozen=True)
class Border:
    """Output pixels whose four source pixels disagree on the key, with their bilinear taps."""

    rows: Tensor  # (P,) output row of each pixel
    cols: Tensor  # (P,) output column
    corners: Tensor  # (4, P) flat source indices (y0x0, y0x1, y1x0, y1x1) into the (h * w) input grid
    weights: Tensor  # (4, P) their bilinear weights

    def sample(self, maps: Tensor) -> Tensor:
        """(M, h, w) maps at the border pixels: (M, P)."""
        flat = maps.reshape(maps.shape[0], -1)
        out = flat[:, self.corners[0]] * self.weights[0]
        for corner in range(1, 4):
            out += flat[:, self.corners[corner]] * self.weights[corner]
        return out


def _pixel_ranges(taps: AxisTaps, in_len: int) -> tuple[Tensor, Tensor]:
    """(start, count) of the output positions whose first tap is each source index (taps are monotone)."""
    counts = torch.bincount(taps.first, minlength=in_len)
    return torch.cumsum(counts, 0) - counts, counts


def upsample_keys(keys: Tensor, output_size: tuple[int, int]) -> tuple[Tensor, Border, tuple[AxisTaps, AxisTaps]]:
    """Keys (h, w) int64 at the output size, exact where the four source keys agree, and the border where they
    do not (to be decided from resampled values). Also returns the row and column taps for reuse.

    The border is built from the disagreeing source blocks (a few percent of the h x w grid), never from a
    full-size mask: each block's output pixels are a rectangle, because the taps are monotone.
    """
    height, width = keys.shape
    rows, cols = axis_taps(output_size[0], height, keys.device), axis_taps(output_size[1], width, keys.device)
    # block (y, x) spans source pixels y..y+1, x..x+1 (clamped at the last row/column, as the taps are)
    below = torch.cat([keys[1:], keys[-1:]], 0)
    right = torch.cat([keys[:, 1:], keys[:, -1:]], 1)
    diagonal = torch.cat([below[:, 1:], below[:, -1:]], 1)
    block_y, block_x = torch.nonzero((keys != below) | (keys != right) | (keys != diagonal), as_tuple=True)
    row_start, row_count = _pixel_ranges(rows, height)
    col_start, col_count = _pixel_ranges(cols, width)
    tall, wide = row_count[block_y], col_count[block_x]  # (B,) output rows / columns of each mixed block
    sizes = tall * wide
    block = torch.repeat_interleave(torch.arange(sizes.numel(), device=keys.device), sizes)  # (P,)
    offset = torch.arange(block.numel(), device=keys.device) - (torch.cumsum(sizes, 0) - sizes)[block]
    pixel_rows = row_start[block_y][block] + torch.div(offset, wide[block], rounding_mode="floor")
    pixel_cols = col_start[block_x][block] + offset % wide[block].clamp(min=1)
    y0, y1 = rows.first[pixel_rows], rows.second[pixel_rows]
    x0, x1 = cols.first[pixel_cols], cols.second[pixel_cols]
    wy, wx = rows.weight[pixel_rows], cols.weight[pixel_cols]
    corners = torch.stack([y0 * width + x0, y0 * width + x1, y1 * width + x0, y1 * width + x1])
    weights = torch.stack([(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx])
    out = keys.index_select(0, rows.first).index_select(1, cols.first)  # (H, W) key of the top-left source
    return out, Border(pixel_rows, pixel_cols, corners, weights), (rows, cols)


def upsample_segment_maps(
    keys: Tensor,
    decide: Callable[[Tensor], Tensor],
    maps: Tensor,
    output_size: tuple[int, int],
) -> tuple[Tensor, Border, tuple[AxisTaps, AxisTaps]]:
    """Keys at ``output_size`` for a rule ``decide`` ((M, P) map values -> (P,) keys) whose answer on the input
    grid is ``keys`` (h, w); ``maps`` (M, h, w) are the segments' input-resolution score maps."""
    out, border, taps = upsample_keys(keys, output_size)
    if border.rows.numel():
        out[border.rows, border.cols] = decide(border.sample(maps))
    return out, border, taps


def upsample_segment_depth(
    depth: Tensor,
    owners: Tensor,
    border: Border,
    owner_depth_at: Callable[[Tensor, Tensor], Tensor],
    output_size: tuple[int, int],
) -> Tensor:
    """Depth at ``output_size`` from the input-resolution depth map (h, w) of the segments' own depths.

    Inside segments: its bilinear resampling. At ``border`` pixels, whose owners are ``owners`` (P,) (-1 = void:
    depth 0): the bilinear mix of the owner's depth at the four source pixels, ``owner_depth_at(owners (Q,),
    flat source indices (Q,)) -> (Q,)`` (called once, for all four corners).
    """
    out = F.interpolate(depth[None, None], size=tuple(output_size), mode="bilinear", align_corners=False)[0, 0]
    if border.rows.numel():
        valid = owners >= 0
        owner = owners[valid]
        corners = border.corners[:, valid]  # (4, Q)
        values = owner_depth_at(owner.repeat(4), corners.reshape(-1)).reshape(4, -1)
        mixed = torch.zeros_like(owners, dtype=depth.dtype)
        mixed[valid] = (values * border.weights[:, valid]).sum(0)
        out[border.rows, border.cols] = mixed
    return out
