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

#: Copy agreeing blocks with OpenCV on the CPU (tests switch it off to check both ways give the same).
CV2_NEAREST = True


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
    agreeing: Tensor  # (h, w) bool: source blocks (y..y+1, x..x+1) whose four keys agree (copied, not decided)

    def sample(self, maps: Tensor) -> Tensor:
        """(M, h, w) maps at the border pixels: (M, P)."""
        flat = maps.reshape(maps.shape[0], -1)
        out = flat.index_select(1, self.corners[0]) * self.weights[0]
        for corner in range(1, 4):
            out += flat.index_select(1, self.corners[corner]) * self.weights[corner]
        return out


def _pixel_ranges(taps: AxisTaps, in_len: int) -> tuple[Tensor, Tensor]:
    """(start, count) of the output positions whose first tap is each source index (taps are monotone)."""
    counts = torch.bincount(taps.first, minlength=in_len)
    return torch.cumsum(counts, 0) - counts, counts


def upsample_keys(keys: Tensor, output_size: tuple[int, int], table: Tensor | None = None
                  ) -> tuple[Tensor, Border, tuple[AxisTaps, AxisTaps]]:
    """Keys (h, w) int64 at the output size, exact where the four source keys agree, and the border where they
    do not (to be decided from resampled values). With ``table``, returns ``table[key]`` instead of the key (a
    lookup done on the h x w grid, not on the output). Also returns the row and column taps for reuse.

    The border is built from the disagreeing source blocks (a few percent of the h x w grid), never from a
    full-size mask: each block's output pixels are a rectangle, because the taps are monotone.
    """
    height, width = keys.shape
    device = keys.device
    rows, cols = axis_taps(output_size[0], height, device), axis_taps(output_size[1], width, device)
    # block (y, x) spans source pixels y..y+1, x..x+1 (clamped at the last row/column, as the taps are)
    below = torch.cat([keys[1:], keys[-1:]], 0)
    right = torch.cat([keys[:, 1:], keys[:, -1:]], 1)
    diagonal = torch.cat([below[:, 1:], below[:, -1:]], 1)
    disagreeing = (keys != below) | (keys != right) | (keys != diagonal)
    block_y, block_x = torch.nonzero(disagreeing, as_tuple=True)
    row_start, row_count = _pixel_ranges(rows, height)
    col_start, col_count = _pixel_ranges(cols, width)
    tall, wide = row_count[block_y], col_count[block_x]  # (B,) output rows / columns of each mixed block
    if block_y.numel():
        dy = torch.arange(int(tall.max()), device=device)[None, :, None]  # (1, T, 1) offsets in a block
        dx = torch.arange(int(wide.max()), device=device)[None, None, :]  # (1, 1, W')
        inside = (dy < tall[:, None, None]) & (dx < wide[:, None, None])  # (B, T, W')
        pixel_rows = (row_start[block_y][:, None, None] + dy).expand_as(inside)[inside]
        pixel_cols = (col_start[block_x][:, None, None] + dx).expand_as(inside)[inside]
    else:
        pixel_rows = pixel_cols = block_y
    y0, y1 = rows.first[pixel_rows], rows.second[pixel_rows]
    x0, x1 = cols.first[pixel_cols], cols.second[pixel_cols]
    wy, wx = rows.weight[pixel_rows], cols.weight[pixel_cols]
    corners = torch.stack([y0 * width + x0, y0 * width + x1, y1 * width + x0, y1 * width + x1])
    weights = torch.stack([(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx])
    source = keys if table is None else table[keys]
    border = Border(pixel_rows, pixel_cols, corners, weights, ~disagreeing)
    return copy_blocks(source, rows, cols, output_size), border, (rows, cols)


def copy_blocks(source: Tensor, rows: AxisTaps, cols: AxisTaps, output_size: tuple[int, int]) -> Tensor:
    """(H, W): each output pixel takes the value of one of its four source pixels (all that matters where they
    agree; the border is overwritten). OpenCV's nearest-neighbour resize does that ten times faster than two
    index_selects when upsampling on the CPU: its source index floor(dst * in / out) is always the first or
    second bilinear tap then; otherwise (downsampling, GPU, wide integers) the first taps are gathered."""
    height, width = output_size
    if (CV2_NEAREST and source.device.type == "cpu" and height >= source.shape[0] and width >= source.shape[1]
            and source.dtype in (torch.int32, torch.int64) and -(2**31) <= int(source.min()) <= int(source.max()) < 2**31):
        import cv2

        small = source.to(torch.int32).numpy()
        return torch.from_numpy(cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)).to(source.dtype)
    return source.index_select(0, rows.first).index_select(1, cols.first)


def upsample_segment_maps(
    keys: Tensor,
    decide: Callable[[Tensor], Tensor],
    maps: Tensor,
    output_size: tuple[int, int],
    table: Tensor | None = None,
) -> tuple[Tensor, Border, tuple[AxisTaps, AxisTaps]]:
    """Keys at ``output_size`` (or ``table[key]``, see ``upsample_keys``) for a rule ``decide`` ((M, P) map values
    -> (P,) keys) whose answer on the input grid is ``keys`` (h, w); ``maps`` (M, h, w) are the segments'
    input-resolution score maps."""
    out, border, taps = upsample_keys(keys, output_size, table)
    if border.rows.numel():
        decided = decide(border.sample(maps))
        out.view(-1)[border.rows * output_size[1] + border.cols] = decided if table is None else table[decided]
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
        out.view(-1)[border.rows * out.shape[1] + border.cols] = mixed
    return out


def segment_totals(
    owners: Tensor,
    border: Border,
    border_owners: Tensor,
    taps: tuple[AxisTaps, AxisTaps],
    length: int,
    depth: Tensor | None = None,
    border_depth: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Pixel count and depth sum per segment of the output maps, without a pass over them.

    ``owners`` (h, w) int64 in [0, length) are the input grid's segment indices, ``border_owners`` (P,) and
    ``border_depth`` (P,) the border pixels' own. An agreeing block's output pixels all belong to its segment: a
    rectangle of rows x columns pixels, whose bilinearly resampled ``depth`` (h, w) sums to the four corner values
    weighted by the summed tap weights along each axis (the resampling is separable). Returns float64 totals.
    """
    height, width = owners.shape
    (rows, cols), device = taps, owners.device

    def axis_sums(axis: AxisTaps, size: int) -> tuple[Tensor, Tensor]:  # per source index: sum of (1 - w), of w
        count = torch.bincount(axis.first, minlength=size).double()
        second = torch.zeros(size, dtype=torch.float64, device=device).index_add_(0, axis.first, axis.weight.double())
        return count - second, second

    row_first, row_second = axis_sums(rows, height)
    col_first, col_second = axis_sums(cols, width)
    agreeing = border.agreeing
    segment = owners[agreeing]
    areas = torch.zeros(length, dtype=torch.float64, device=device)
    areas.index_add_(0, segment, ((row_first + row_second)[:, None] * (col_first + col_second)[None, :])[agreeing])
    areas.index_add_(0, border_owners, torch.ones_like(border_owners, dtype=torch.float64))
    if depth is None:
        return areas, None
    d = depth.double()
    below = torch.cat([d[1:], d[-1:]], 0)  # the second taps, clamped at the last row / column like the taps
    right = torch.cat([d[:, 1:], d[:, -1:]], 1)
    diagonal = torch.cat([below[:, 1:], below[:, -1:]], 1)
    blocks = (row_first[:, None] * (col_first[None, :] * d + col_second[None, :] * right)
              + row_second[:, None] * (col_first[None, :] * below + col_second[None, :] * diagonal))
    sums = torch.zeros(length, dtype=torch.float64, device=device).index_add_(0, segment, blocks[agreeing])
    sums.index_add_(0, border_owners, border_depth.double())
    return areas, sums
