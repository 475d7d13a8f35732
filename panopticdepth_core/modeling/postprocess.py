"""Inference post-processing: raw head outputs -> per-image panoptic labels, instance ids and metric depth.

Follows the released PanopticDepth inference (``inference_single_level``, ``process_inst``, the generators'
``kernel_fusion`` and ``combine_thing_and_stuff``), written over the tensors of ``types.py``. Per image:

1. thing candidates: centre peaks per level (sigmoid, average with an avg-pool, 3x3 max-pool NMS, top-k,
   threshold), their kernels (and depth kernels) gathered at the peaks; stuff candidates: per level and class,
   the mean kernel over the cells whose argmax is that class and whose probability is >= 0.4;
2. kernel fusion: near-identical thing kernels of one class are merged, stuff kernels of one class averaged
   over levels;
3. masks = projected kernels @ mask embedding (stride 4), thing rescoring by mean in-mask probability;
4. combine at the output resolution: things pasted greedily by score with overlap suppression, stuff from the
   argmax of the stuff probabilities; then either a per-pixel argmax over the survivors (depth-aware rule, no
   void) or the classic paste (void where nothing was placed); each pixel takes the depth of its segment.

Deliberate differences from the released code (each one only matters for padded batches or edge cases):
the depth embedding is cropped to the image before it is resized (the release resizes the padded one); level
maps and stride-4 maps are cropped to the image's valid area before peaks, stuff regions and mask rescoring
are computed; images where nothing survives return all-void results instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import CfgNode
from .instance_depth import instance_depth_maps
from .label_upsampling import (
    axis_taps,
    copy_blocks,
    segment_totals,
    upsample_segment_depth,
    upsample_segment_maps,
)
from .settings import PostprocessParams, as_params
from .types import (
    LABEL_DIVISOR,
    VOID_CLASS,
    VOID_PANOPTIC_ID,
    HeadOutputs,
    KernelProjection,
    PanopticResult,
    Segment,
    empty_result,
)

#: A level cell counts towards a stuff class's region only where that class's probability reaches this
#: (hard-coded in the released code, as here).
STUFF_REGION_MIN_PROB = 0.4
#: Things whose rescored score falls below this are dropped before the top-k (hard-coded in the release).
THING_MIN_SCORE = 0.05
#: Up to this many values (segments x network-input pixels, 128 MiB of float32), depths at another output size
#: are read from every segment's whole depth map; beyond it, computed pixel by pixel (less memory, slower).
_MAX_DEPTH_MAP_VALUES = 1 << 25


@dataclass
class _Candidates:
    """Segments of one image before combination, one row per candidate.

    ``kernels`` are in the kernel-head space (C_kernel) as gathered from the levels and in the mask-embedding
    space (E) once projected; the other fields are the same at every stage.
    """

    kernels: Tensor  # (N, C_kernel) or (N, E)
    classes: Tensor  # (N,) int64 class ids
    scores: Tensor  # (N,)
    depth_kernels: Tensor | None  # (N, 2 + Kd); None without depth

    def __len__(self) -> int:
        return self.classes.shape[0]

    def select(self, index: Tensor) -> _Candidates:
        """The candidates at ``index`` (a bool mask or positions)."""
        depth = self.depth_kernels[index] if self.depth_kernels is not None else None
        return _Candidates(self.kernels[index], self.classes[index], self.scores[index], depth)

    @staticmethod
    def cat(parts: list[_Candidates]) -> _Candidates:
        """The candidates of all ``parts`` (e.g. levels) in order."""
        depth = [p.depth_kernels for p in parts]
        return _Candidates(
            torch.cat([p.kernels for p in parts]),
            torch.cat([p.classes for p in parts]),
            torch.cat([p.scores for p in parts]),
            None if any(d is None for d in depth) else torch.cat(depth),
        )


# ------------------------------------------------------------------------------------------- candidates


def thing_peaks(center_logits: Tensor, pool_size: int, top_k: int, threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """Centre peaks of one image and level.

    Smoothing with an average pool first makes a plateau (or a ragged blob) peak at its middle, so the 3x3
    max-pool NMS keeps one cell per object.

    Args:
        center_logits: (T, h, w) centre-heatmap logits.

    Returns:
        scores (K,), thing indices (K,) in [0, T), flat cell indices (K,) into h*w; sorted by score, > threshold.
    """
    num_things, height, width = center_logits.shape
    prob = center_logits.sigmoid()[None]  # (1, T, h, w)
    prob = (prob + F.avg_pool2d(prob, pool_size, stride=1, padding=(pool_size - 1) // 2)) / 2.0
    peaks = prob * (F.max_pool2d(prob, 3, stride=1, padding=1) == prob)
    k = min(top_k, height * width)
    scores, flat = torch.topk(peaks.reshape(-1), k)  # over (T*h*w)
    keep = scores > threshold
    scores, flat = scores[keep], flat[keep]
    return scores, torch.div(flat, height * width, rounding_mode="floor"), flat % (height * width)


def stuff_regions(region_logits: Tensor, threshold: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Stuff candidates of one image and level: one per class that wins the argmax somewhere.

    Args:
        region_logits: (S, h, w) region logits over all classes.

    Returns:
        classes (M,), scores (M,), region masks (M, h*w) float, argmax cell counts (M,). A class's score is
        the summed probability over its region divided by its argmax cell count (as released).
    """
    num_classes = region_logits.shape[0]
    prob = region_logits.sigmoid().reshape(num_classes, -1)  # (S, h*w)
    winner = F.one_hot(prob.argmax(0), num_classes).T.bool()  # (S, h*w)
    counts = winner.sum(1)
    region = winner & (prob >= STUFF_REGION_MIN_PROB)
    scores = (prob * region).sum(1) / counts.clamp(min=1)
    keep = (counts > 0) & (scores > threshold)
    classes = torch.nonzero(keep).flatten()
    return classes, scores[keep], region[keep].float(), counts[keep]


def level_extent(shape: tuple[int, int], image_size: tuple[int, int], padded_size: tuple[int, int]) -> tuple[int, int]:
    """Rows and columns of a level map that cover the image (the rest only sees padding)."""
    return tuple(
        max(1, min(cells, math.ceil(size * cells / padded)))
        for cells, size, padded in zip(shape, image_size, padded_size)
    )


def _image_candidates(
    head: HeadOutputs, index: int, image_size: tuple[int, int], padded_size: tuple[int, int], st: PostprocessParams
) -> tuple[_Candidates, _Candidates]:
    """Thing and stuff candidates of one image, concatenated over levels (things in level then score order,
    stuff in level then class order); kernels still in the kernel-head space."""
    num_classes = head.region_logits[0].shape[1]
    first_thing = num_classes - head.center_logits[0].shape[1]
    things: list[_Candidates] = []
    stuffs: list[_Candidates] = []
    for level, (centers, regions, features) in enumerate(
        zip(head.center_logits, head.region_logits, head.kernel_features)
    ):
        rows, cols = level_extent(tuple(centers.shape[-2:]), image_size, padded_size)
        feats = features[index, :, :rows, :cols].float().reshape(features.shape[1], -1)  # (C, h*w)
        depth = None
        if st.depth_on:
            params = head.depth_kernel_params[level]
            depth = params[index, :, :rows, :cols].float().reshape(params.shape[1], -1)  # (2+Kd, h*w)

        scores, thing_idx, cells = thing_peaks(
            centers[index, :, :rows, :cols].float(), st.center_pool_sizes[level], st.thing_top_num // 2,
            st.center_threshold,
        )
        things.append(_Candidates(
            kernels=feats[:, cells].T,
            classes=thing_idx + first_thing,
            scores=scores,
            depth_kernels=depth[:, cells].T if depth is not None else None,
        ))  # fmt: skip

        classes, st_scores, region, counts = stuff_regions(
            regions[index, :, :rows, :cols].float(), st.stuff_score_threshold
        )
        stuffs.append(_Candidates(
            kernels=region @ feats.T / counts[:, None].float(),
            classes=classes,
            scores=st_scores,
            depth_kernels=region @ depth.T / region.sum(1, keepdim=True).clamp(min=1) if depth is not None else None,
        ))  # fmt: skip
    return _Candidates.cat(things), _Candidates.cat(stuffs)


# ------------------------------------------------------------------------------------------- kernel fusion


def _similarity(kernels: Tensor, kind: str) -> Tensor:
    """(N, N) pairwise similarity of kernels (N, E)."""
    if kind == "cosine":
        unit = kernels / kernels.norm(dim=1, keepdim=True).clamp(min=1e-8)
        return unit @ unit.T
    return 1.0 - torch.cdist(kernels, kernels)


def fuse_thing_kernels(
    kernels: Tensor, classes: Tensor, threshold: float, class_specific: bool = True, kind: str = "cosine"
) -> tuple[Tensor, Tensor]:
    """Groups of near-duplicate thing kernels (ThingGenerator.kernel_fusion).

    Kernels must be sorted by score. A kernel leads a group unless an earlier kernel is similar to it; each
    leader claims the later similar kernels no earlier kernel claimed. Duplicates are several peaks on one
    object, so merging them removes duplicate masks.

    Returns:
        keep: (N,) bool, the group leaders (they keep their score and class).
        groups: (K, N) float membership of each leader's group (rows sum to >= 1).
    """
    count = kernels.shape[0]
    linked = torch.triu(_similarity(kernels, kind) >= threshold)  # (N, N): i <= j similar
    if class_specific:
        linked &= classes[:, None] == classes[None, :]
    linked |= torch.eye(count, dtype=torch.bool, device=kernels.device)  # a zero kernel still leads itself
    first_claim = torch.cumsum(linked.int(), dim=0) < 2  # (N, N): row i is the first to link column j
    keep = first_claim.diagonal().clone()
    return keep, (linked & first_claim)[keep].float()


def _fuse_things(cand: _Candidates, st: PostprocessParams) -> _Candidates:
    keep, groups = fuse_thing_kernels(
        cand.kernels, cand.classes, st.similarity_threshold, st.class_specific_fusion, st.similarity_type
    )
    norm = groups.sum(1, keepdim=True)
    depth = groups @ cand.depth_kernels / norm if cand.depth_kernels is not None else None
    return _Candidates(groups @ cand.kernels / norm, cand.classes[keep], cand.scores[keep], depth)


def fuse_stuff_kernels(
    kernels: Tensor, classes: Tensor, scores: Tensor, depth_kernels: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """One stuff candidate per class (StuffGenerator.kernel_fusion): kernels, scores and depth kernels of the
    class's per-level candidates averaged. Returns them in ascending class order."""
    unique = torch.unique(classes)  # sorted
    groups = (unique[:, None] == classes[None, :]).float()  # (U, M)
    norm = groups.sum(1, keepdim=True)
    depth = groups @ depth_kernels / norm if depth_kernels is not None else None
    return groups @ kernels / norm, unique, (groups @ scores[:, None] / norm)[:, 0], depth


# ------------------------------------------------------------------------------------------- resizing


def _to_output(maps: Tensor, stride: int, image_size: tuple[int, int], output_size: tuple[int, int]) -> Tensor:
    """(N, h, w) stride-4 maps -> (N, *output_size): upsample by the stride, crop to the image, resize."""
    height, width = maps.shape[-2:]
    up = F.interpolate(maps[None], size=(height * stride, width * stride), mode="bilinear", align_corners=False)
    up = up[..., : image_size[0], : image_size[1]]
    if tuple(output_size) != tuple(image_size):
        up = F.interpolate(up, size=tuple(output_size), mode="bilinear", align_corners=False)
    return up[0]


# ------------------------------------------------------------------------------------------- combination


@dataclass
class _Survivor:
    category: int
    is_thing: bool
    score: float
    depth_kernel: Tensor | None
    kernel: Tensor | None = None  # (E,) things' projected mask kernel, kept for tracking
    source: int = -1  # its row in the thing (or stuff) candidates


def _axis_window(first: int, last: int, stride: int, image: int) -> tuple[int, int]:
    """Image pixels [start, stop) along one axis that bilinear upsampling can feed from stride-4 cells
    [first, last]: a conservative bound (a bilinear value is a convex mix of its two taps)."""
    return max(0, stride * (first - 1)), min(image, stride * (last + 2))


def _mask_windows(probs: Tensor, threshold: float, stride: int, image_size) -> list[tuple[int, ...]]:
    """Per map, the image window (y0, y1, x0, x1) outside which its upsampling cannot exceed ``threshold``;
    empty windows (y0 == y1) where no stride-4 cell does."""
    above = probs > threshold  # (N, h, w)
    bounds = []
    for reduce_dim in (2, 1):  # rows, then columns
        hits = above.any(reduce_dim).int()  # (N, cells)
        first = hits.argmax(1)
        last = hits.shape[1] - 1 - hits.flip(1).argmax(1)
        bounds.append((first.tolist(), last.tolist(), hits.any(1).tolist()))
    windows = []
    for i in range(probs.shape[0]):
        if not bounds[0][2][i]:
            windows.append((0, 0, 0, 0))
            continue
        rows = _axis_window(bounds[0][0][i], bounds[0][1][i], stride, image_size[0])
        cols = _axis_window(bounds[1][0][i], bounds[1][1][i], stride, image_size[1])
        windows.append((*rows, *cols))
    return windows


def _first_argmax(values: Tensor) -> Tensor:
    """(M, P) -> (P,) int64 index of each column's first maximum (``argmax(0)``, which is several times slower
    on the CPU for a reduction over the leading dimension)."""
    best = values[0].clone()
    winner = torch.zeros(values.shape[1], dtype=torch.long, device=values.device)
    for row in range(1, values.shape[0]):
        _argmax_step(best, winner, values[row], row)
    return winner


def _argmax_step(best: Tensor, winner: Tensor, prob: Tensor, index: int) -> None:
    """One step of a running argmax over maps (in place); strict > keeps the first maximum, like argmax."""
    better = prob > best
    torch.maximum(best, prob, out=best)
    winner.masked_fill_(better, index)


def _combine(
    things: _Candidates,
    thing_probs: Tensor,
    stuff: _Candidates,
    stuff_probs: Tensor,
    first_thing: int,
    image_size: tuple[int, int],
    st: PostprocessParams,
    paste_stuff: bool = True,
) -> tuple[Tensor, list[_Survivor]]:
    """The survivors (things first, by score) and the classic paste's map (H, W) int64 of survivor indices
    (-1 = void) at the network input's size; without ``paste_stuff``, that map holds the things only (enough
    for callers that need only the survivors).

    A thing's map is upsampled inside its window only (outside it, it cannot exceed the mask threshold, see
    ``_mask_windows``): its mask, area and overlap need nothing more. The argmax rule's map is
    ``_argmax_winner``'s.
    """
    device = stuff_probs.device
    stride = st.common_stride
    pasted = torch.full(image_size, -1, dtype=torch.long, device=device)  # the greedy paste, survivor index
    survivors: list[_Survivor] = []
    window_map = _WindowUpsampler(thing_probs, stride)
    for i, (y0, y1, x0, x1) in enumerate(_mask_windows(thing_probs, st.mask_threshold, stride, image_size)):
        if y0 == y1 or x0 == x1:
            continue
        mask = window_map(i, y0, y1, x0, x1) > st.mask_threshold  # (y1 - y0, x1 - x0)
        area = int(torch.count_nonzero(mask))
        if area == 0:
            continue
        mask &= pasted[y0:y1, x0:x1] < 0
        if (area - int(torch.count_nonzero(mask))) / area > st.overlap_threshold:
            continue
        depth = things.depth_kernels[i] if things.depth_kernels is not None else None
        survivors.append(_Survivor(int(things.classes[i]), True, float(things.scores[i]), depth, things.kernels[i], i))
        pasted[y0:y1, x0:x1].masked_fill_(mask, len(survivors) - 1)

    if stuff_probs.shape[0]:
        label = _upsampled_argmax(stuff_probs, stride, image_size)  # (H, W) stuff index
        free = pasted < 0
        count = stuff_probs.shape[0]  # stuff regions are disjoint: one count of the free pixels' labels
        areas = torch.bincount(torch.where(free, label, count).view(-1), minlength=count + 1)[:count].tolist()
        table = [-1] * count  # stuff index -> survivor index (-1: not placed)
        for u, area in enumerate(areas):
            category = int(stuff.classes[u])
            if category >= first_thing or area == 0 or area < st.stuff_min_area:
                continue
            depth = stuff.depth_kernels[u] if stuff.depth_kernels is not None else None
            survivors.append(_Survivor(category, False, float(stuff.scores[u]), depth, None, u))
            table[u] = len(survivors) - 1
        if paste_stuff and max(table) >= 0:  # one lookup for every free pixel, not a pass per stuff region
            pasted = torch.where(free, torch.tensor(table, device=device)[label], pasted)
    return pasted, survivors


class _WindowUpsampler:
    """Thing maps upsampled by the stride inside a window of the image, equal to the same window of the full
    upsampling: the window's stride-4 cells (from its first pixel's first tap to its last pixel's second tap) are
    upsampled alone. The source positions within them are those of the full map shifted by whole cells (the scale
    is exactly 1 / stride), so the bilinear weights and taps, and the values, are the same."""

    def __init__(self, maps: Tensor, stride: int) -> None:
        self.maps, self.stride = maps, stride
        rows, cols = maps.shape[-2:]
        self.taps = [(taps.first.tolist(), taps.second.tolist())
                     for taps in (axis_taps(rows * stride, rows, maps.device), axis_taps(cols * stride, cols, maps.device))]

    def __call__(self, index: int, y0: int, y1: int, x0: int, x1: int) -> Tensor:
        (first_y, second_y), (first_x, second_x) = self.taps
        r0, r1, c0, c1 = first_y[y0], second_y[y1 - 1] + 1, first_x[x0], second_x[x1 - 1] + 1
        cells = self.maps[index, r0:r1, c0:c1]
        up = F.interpolate(cells[None, None], size=((r1 - r0) * self.stride, (c1 - c0) * self.stride),
                           mode="bilinear", align_corners=False)[0, 0]
        top, left = y0 - self.stride * r0, x0 - self.stride * c0
        return up[top : top + y1 - y0, left : left + x1 - x0]


def _survivor_maps(survivors: list[_Survivor], thing_probs: Tensor, stuff_probs: Tensor) -> Tensor:
    """(S, h, w) the survivors' stride-4 maps, in survivor order (things first)."""
    rows = [(thing_probs if s.is_thing else stuff_probs)[s.source] for s in survivors]
    return torch.stack(rows) if rows else stuff_probs.new_zeros(0, *stuff_probs.shape[-2:])


def _argmax_winner(survivors: list[_Survivor], thing_probs: Tensor, stuff_probs: Tensor, stride: int,
                   image_size: tuple[int, int]) -> Tensor:
    """(H, W) int64: at each pixel of the image, the first survivor whose upsampled map is highest."""
    return _upsampled_argmax(_survivor_maps(survivors, thing_probs, stuff_probs), stride, image_size)


def _upsampled_argmax(maps: Tensor, stride: int, image_size: tuple[int, int]) -> Tensor:
    """(H, W) int64: at each pixel of the image, the index of the first of the (M, h, w) stride-4 ``maps`` whose
    upsampling (``_to_output``) is highest.

    Decided on the stride-4 grid, then upsampled as ``label_upsampling`` does: a pixel whose four stride-4 taps
    agree takes their answer (the winner there wins any convex mix of them); only the others (segment borders)
    are decided from bilinearly sampled values. M full-size maps would cost M passes over the image.
    """
    count, rows, cols = maps.shape
    keys = _first_argmax(maps.reshape(count, -1)).reshape(rows, cols)
    winner, _, _ = upsample_segment_maps(keys, _first_argmax, maps, (rows * stride, cols * stride))
    return winner[: image_size[0], : image_size[1]]


class _StrideCellDepth:
    """Depth under a segment's kernel at pixels of the network input, from the stride-4 depth embedding (Kd, h, w)
    of the S ``survivors``.

    Why not upsample the embedding: the kernel's dot product is linear in the embedding, so w . (bilinear E) at a
    pixel is the bilinear mix of the four stride-4 values of w . E (equal up to float rounding). Those are S small
    maps; each pixel then gathers its own segment's four taps, where an upsampled embedding would be Kd full maps.
    """

    def __init__(self, survivors: list[_Survivor], embedding: Tensor, stride: int, st: PostprocessParams) -> None:
        kd, rows, cols = embedding.shape
        device = embedding.device
        kernels = torch.stack([s.depth_kernel for s in survivors]).float()  # (S, 2 + Kd)
        self.cells, self.cols, self.max_depth = rows * cols, cols, st.max_depth
        self.relative = (kernels[:, 2:] @ embedding.reshape(kd, -1)).reshape(-1)  # (S * h * w,) w . E per cell
        self.mean = torch.sigmoid(kernels[:, 0]) * st.mean_scale  # (S,) as instance_depth_maps computes them
        self.spread = torch.sigmoid(kernels[:, 1]) * st.range_scale
        # taps of the x``stride`` upsampling that _to_output does before cropping to the image
        self.taps_y, self.taps_x = axis_taps(rows * stride, rows, device), axis_taps(cols * stride, cols, device)

    def _metres(self, owner: Tensor, relative: Tensor) -> Tensor:
        """Depth of segments ``owner`` (>= 0) from their w . E values, as instance_depth_maps computes it."""
        values = torch.relu(self.mean[owner] + self.spread[owner] * (torch.sigmoid(relative) * 2.0 - 1.0))
        return values.clamp(0.0, self.max_depth)

    def map(self, winner: Tensor) -> Tensor:
        """(H, W) depth of each pixel under its winning segment (``winner`` (H, W), -1 = void: depth 0)."""
        height, width = winner.shape
        taps_y, taps_x = self.taps_y, self.taps_x
        x0, x1, wx = taps_x.first[:width], taps_x.second[:width], taps_x.weight[:width]  # (W,)
        depth = torch.zeros(height, width, device=winner.device)
        chunk = max(1, 131072 // width)  # rows per pass: bounds the (rows, W) index tensors
        for top in range(0, height, chunk):
            bottom = min(height, top + chunk)
            owner = winner[top:bottom]  # (r, W)
            index = owner.clamp(min=0)
            base = index * self.cells  # (r, W) start of each pixel's segment in ``relative``
            y0 = (taps_y.first[top:bottom] * self.cols)[:, None]  # (r, 1)
            y1 = (taps_y.second[top:bottom] * self.cols)[:, None]
            relative = self._mix(base, y0, y1, x0, x1, taps_y.weight[top:bottom, None], wx)  # (r, W)
            depth[top:bottom] = torch.where(owner >= 0, self._metres(index, relative), 0.0)
        return depth

    def at(self, owner: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        """(Q,) depth of segments ``owner`` (Q,) (>= 0) at input pixels (``rows``, ``cols``) (Q,)."""
        taps_y, taps_x = self.taps_y, self.taps_x
        relative = self._mix(owner * self.cells, taps_y.first[rows] * self.cols, taps_y.second[rows] * self.cols,
                             taps_x.first[cols], taps_x.second[cols], taps_y.weight[rows], taps_x.weight[cols])
        return self._metres(owner, relative)

    def _mix(self, base: Tensor, y0: Tensor, y1: Tensor, x0: Tensor, x1: Tensor, wy: Tensor, wx: Tensor) -> Tensor:
        """The bilinear mix of a segment's four stride-4 w . E values (flat offsets broadcast together)."""
        cells = self.relative
        upper = torch.lerp(torch.take(cells, base + y0 + x0), torch.take(cells, base + y0 + x1), wx)
        lower = torch.lerp(torch.take(cells, base + y1 + x0), torch.take(cells, base + y1 + x1), wx)
        return torch.lerp(upper, lower, wy)


def _depth_from_stride_cells(winner: Tensor, survivors: list[_Survivor], embedding: Tensor, stride: int,
                             st: PostprocessParams) -> Tensor:
    """(H, W) depth at the network input's size from the stride-4 depth embedding (Kd, h, w): each pixel under its
    winning segment's kernel, 0 where void (see ``_StrideCellDepth``)."""
    return _StrideCellDepth(survivors, embedding, stride, st).map(winner)


def _segment_sums(index: Tensor, length: int, weights: Tensor | None = None) -> list[float]:
    """Per-value count (or sum of ``weights``, in float64) of a flat int64 index in [0, length).

    On the CPU through NumPy, whose bincount makes one pass; torch's scans for the minimum and maximum first and
    takes twice as long on a camera-sized map.
    """
    if index.device.type == "cpu":
        values = None if weights is None else weights.numpy()
        return np.bincount(index.numpy(), weights=values, minlength=length).tolist()
    values = None if weights is None else weights.double()
    return torch.bincount(index, weights=values, minlength=length).tolist()


def _result(winner: Tensor, survivors: list[_Survivor], depth: Tensor | None, index: Tensor | None = None,
            render: Callable[[Tensor], Tensor] | None = None, totals: tuple[Tensor, Tensor | None] | None = None,
            ) -> PanopticResult:
    """Encode the winner map; drops segments that won no pixel and numbers things 1..N by score.

    ``index``: ``winner + 1`` (0 = void, 1 + i = survivor i) when the caller has it already. ``render``: makes a
    label map from a lookup table indexed like ``index`` (int32, void at 0), when the caller can do it faster
    than a full-size lookup. ``totals``: (pixel counts, depth sums) per index value, when the caller has them.
    """
    count = len(survivors)
    shape = winner.shape
    index = (winner + 1 if index is None else index).reshape(-1)
    if totals is None:
        areas = _segment_sums(index, count + 1)[1:]
        depth_sums = _segment_sums(index, count + 1, depth.reshape(-1))[1:] if depth is not None else None
    else:
        areas = [round(a) for a in totals[0].tolist()[1:]]
        depth_sums = totals[1].tolist()[1:] if totals[1] is not None else None
    panoptic_ids, categories, instances, segments = [], [], [], []
    next_instance = 1
    for i, (surv, area) in enumerate(zip(survivors, areas)):
        instance = 0
        if surv.is_thing and area > 0:
            instance, next_instance = next_instance, next_instance + 1
        panoptic_ids.append(surv.category * LABEL_DIVISOR + instance)
        categories.append(surv.category)
        instances.append(instance)
        if area > 0:
            mean_depth = float(depth_sums[i] / area) if depth_sums is not None else float("nan")
            embedding = surv.kernel.float().cpu().numpy() if surv.kernel is not None else None
            segments.append(Segment(panoptic_ids[-1], surv.category, surv.is_thing, surv.score, int(area), instance,
                                    mean_depth, embedding))

    def lookup(values: list[int], void: int) -> Tensor:
        table = torch.tensor([void, *values], dtype=torch.int32, device=winner.device)  # void at 0
        return torch.take(table, index).reshape(shape) if render is None else render(table)

    return PanopticResult(
        panoptic=lookup(panoptic_ids, VOID_PANOPTIC_ID),
        semantic=lookup(categories, VOID_CLASS),
        instance=lookup(instances, 0),
        depth=depth,
        segments=segments,
    )


# ------------------------------------------------------------------------------------------- entry point


def _check_inputs(head: HeadOutputs, image_sizes, output_sizes, st: PostprocessParams) -> None:
    batch = head.mask_embedding.shape[0]
    if len(image_sizes) != batch or len(output_sizes) != batch:
        raise ValueError(
            f"postprocess got {len(image_sizes)} image_sizes and {len(output_sizes)} output_sizes for a batch of {batch}"
        )
    if len(st.center_pool_sizes) < len(head.center_logits):
        raise ValueError(
            f"MODEL.INFERENCE.CENTER_POOL_SIZES has {len(st.center_pool_sizes)} entries; the head has "
            f"{len(head.center_logits)} levels"
        )
    if head.center_logits[0].shape[1] > head.region_logits[0].shape[1]:
        raise ValueError("the centre head has more (thing) classes than the region head has classes")
    if st.depth_on and (head.depth_kernel_params is None or head.depth_embedding is None):
        raise ValueError("MODEL.DEPTH_ON is True but the head outputs carry no depth kernels / depth embedding")
    padded = tuple(s * st.common_stride for s in head.mask_embedding.shape[-2:])
    for size in image_sizes:
        if size[0] > padded[0] or size[1] > padded[1]:
            raise ValueError(f"image size {tuple(size)} exceeds the padded batch {padded}")


def postprocess(
    head: HeadOutputs,
    project_thing: KernelProjection,
    project_stuff: KernelProjection,
    image_sizes: list[tuple[int, int]],
    output_sizes: list[tuple[int, int]],
    params: PostprocessParams | CfgNode,
) -> list[PanopticResult]:
    """Panoptic results, one per image of the batch, at ``output_sizes``.

    Args:
        head: the network's outputs for a padded batch.
        project_thing, project_stuff: the generators' 1x1 convs, kernels (..., C_kernel) -> (..., E).
        image_sizes: each image's unpadded network-input (H, W), the top-left of the padded batch.
        output_sizes: the (H, W) to return results at (e.g. the camera's resolution).
        params: the model's ``PostprocessParams`` (``model.postprocess_params``), or a model config to build them
            from (MODEL.INFERENCE.*, MODEL.POSITION_HEAD.*, MODEL.DEPTH_*; see docs/postprocess.md).
    """
    st = as_params(params, PostprocessParams)
    _check_inputs(head, image_sizes, output_sizes, st)
    with torch.no_grad():
        return [
            _postprocess_one(head, i, tuple(image_sizes[i]), tuple(output_sizes[i]), project_thing, project_stuff, st)
            for i in range(head.mask_embedding.shape[0])
        ]


def _postprocess_one(
    head: HeadOutputs,
    index: int,
    image_size: tuple[int, int],
    output_size: tuple[int, int],
    project_thing: KernelProjection,
    project_stuff: KernelProjection,
    st: PostprocessParams,
) -> PanopticResult:
    embedding = head.mask_embedding[index].float()
    stride = st.common_stride
    padded = (embedding.shape[-2] * stride, embedding.shape[-1] * stride)
    first_thing = head.region_logits[0].shape[1] - head.center_logits[0].shape[1]
    thing_candidates, stuff_candidates = _image_candidates(head, index, image_size, padded, st)

    # stride-4 maps that the upsampled image area reads (one extra row/column for the bilinear border)
    rows = min(embedding.shape[-2], math.ceil(image_size[0] / stride) + 1)
    cols = min(embedding.shape[-1], math.ceil(image_size[1] / stride) + 1)
    embedding = embedding[:, :rows, :cols]
    flat_embedding = embedding.reshape(embedding.shape[0], -1)  # (E, h*w)
    inside_rows, inside_cols = math.ceil(image_size[0] / stride), math.ceil(image_size[1] / stride)

    things = thing_candidates.select(torch.sort(thing_candidates.scores, descending=True, stable=True).indices)
    things.kernels = project_thing(things.kernels) if len(things) else things.kernels.new_zeros(0, embedding.shape[0])
    thing_probs = embedding.new_zeros(0, rows, cols)
    if len(things):
        things = _fuse_things(things, st)
        # rescoring only lowers scores, so things already below COMBINE.INST_THRESH can never be placed: skip
        # their masks (the released code computes them for its instance-segmentation output)
        things = things.select(things.scores >= max(st.combine_score_threshold, THING_MIN_SCORE))
        thing_probs = (things.kernels.float() @ flat_embedding).sigmoid().reshape(-1, rows, cols)
        # rescore by the mean probability inside each mask, over the stride-4 cells inside the image
        inner = thing_probs[:, :inside_rows, :inside_cols]
        mask = (inner > st.mask_threshold).float()
        things.scores = things.scores * (inner * mask).sum((1, 2)) / (mask.sum((1, 2)) + 1e-6)
        order = torch.sort(things.scores, descending=True, stable=True).indices
        order = order[things.scores[order] >= THING_MIN_SCORE][: st.thing_top_num]
        order = order[things.scores[order] >= st.combine_score_threshold]  # only these can enter the panoptic map
        things, thing_probs = things.select(order), thing_probs[order]

    stuff_probs = embedding.new_zeros(0, rows, cols)
    stuff = _Candidates(embedding.new_zeros(0, embedding.shape[0]), stuff_candidates.classes,
                        stuff_candidates.scores, None)
    if len(stuff_candidates):
        stuff = _Candidates(*fuse_stuff_kernels(
            project_stuff(stuff_candidates.kernels), stuff_candidates.classes, stuff_candidates.scores,
            stuff_candidates.depth_kernels,
        ))  # fmt: skip
        stuff_probs = (stuff.kernels.float() @ flat_embedding).sigmoid().reshape(-1, rows, cols)

    if thing_probs.shape[0] == 0 and stuff_probs.shape[0] == 0:
        return empty_result(*output_size, with_depth=st.depth_on, device=embedding.device)
    depth_embedding = head.depth_embedding[index, :, :rows, :cols].float() if st.depth_on else None
    if tuple(output_size) != tuple(image_size):
        return _resampled_result(things, thing_probs, stuff, stuff_probs, depth_embedding, first_thing, image_size,
                                 output_size, st)
    winner, survivors = _combine(things, thing_probs, stuff, stuff_probs, first_thing, image_size, st,
                                 paste_stuff=st.combine_mode != "argmax")
    if not survivors:
        return empty_result(*output_size, with_depth=st.depth_on, device=embedding.device)
    if st.combine_mode == "argmax":
        winner = _argmax_winner(survivors, thing_probs, stuff_probs, stride, image_size)
    depth = None
    if st.depth_on:
        depth = _depth_from_stride_cells(winner, survivors, depth_embedding, stride, st)
    return _result(winner, survivors, depth)


def _resampled_result(
    things: _Candidates,
    thing_probs: Tensor,
    stuff: _Candidates,
    stuff_probs: Tensor,
    depth_embedding: Tensor | None,
    first_thing: int,
    image_size: tuple[int, int],
    output_size: tuple[int, int],
    st: PostprocessParams,
) -> PanopticResult:
    """The result at an output size other than the network input's (a camera's resolution).

    Segments are chosen at the network input's resolution (areas, overlaps and STUFF_AREA_LIMIT in its pixels,
    which is what the config's values mean); the label map at the output size is then the same per-pixel rule over
    the same segments' bilinearly resampled maps, evaluated only where the rule can change (see
    ``label_upsampling``), and the depth is each pixel's own segment's depth resampled.
    """
    stride = st.common_stride
    _, survivors = _combine(things, thing_probs, stuff, stuff_probs, first_thing, image_size, st, paste_stuff=False)
    if not survivors:
        return empty_result(*output_size, with_depth=st.depth_on, device=stuff_probs.device)
    device = stuff_probs.device

    def at_input(maps: Tensor) -> Tensor:  # (N, h4, w4) stride-4 maps -> (N, *image_size)
        if maps.shape[0] == 0:
            return maps.new_zeros(0, *image_size)
        return _to_output(maps, stride, image_size, image_size)

    if st.combine_mode == "argmax":
        maps = at_input(_survivor_maps(survivors, thing_probs, stuff_probs))  # (S, h, w) in survivor order
        keys_to_owner = torch.arange(len(survivors), device=device)

        def decide(values: Tensor) -> Tensor:  # (S, P) -> (P,): the first maximum, as the running argmax
            return _first_argmax(values)
    else:
        admitted = torch.tensor([s.source for s in survivors if s.is_thing], dtype=torch.long, device=device)
        count = admitted.numel()
        maps = torch.cat([at_input(thing_probs[admitted]), at_input(stuff_probs)])  # things in survivor order
        stuff_owner = torch.full((max(stuff_probs.shape[0], 1),), -1, dtype=torch.long, device=device)
        for i, survivor in enumerate(survivors):
            if not survivor.is_thing:
                stuff_owner[survivor.source] = i
        keys_to_owner = torch.cat([torch.arange(count, device=device), stuff_owner])

        def decide(values: Tensor) -> Tensor:  # (T + U, P) -> (P,): the first thing over the mask threshold, else
            key = count + (_first_argmax(values[count:]) if values.shape[0] > count  # the stuff argmax (key
                           else values.new_zeros(values.shape[1], dtype=torch.long))  # count + u)
            for thing in range(count - 1, -1, -1):  # the first thing over the threshold wins
                key.masked_fill_(values[thing] > st.mask_threshold, thing)
            return key

    keys = decide(maps.reshape(maps.shape[0], -1)).reshape(image_size)
    # owners + 1 (0 = void) at the output size: the encoding's index, looked up on the input grid
    index_in = (keys_to_owner + 1)[keys]
    index_out, border, taps = upsample_segment_maps(keys, decide, maps, output_size, table=keys_to_owner + 1)
    border_pixels = border.rows * output_size[1] + border.cols
    border_index = index_out.view(-1)[border_pixels]

    def render(table: Tensor) -> Tensor:  # a label map: looked up on the input grid, copied out, borders patched
        out = copy_blocks(table[index_in], *taps, output_size)
        out.view(-1)[border_pixels] = table[border_index]
        return out
    depth = None
    if depth_embedding is not None:
        owners_in = keys_to_owner[keys]
        pixels = image_size[0] * image_size[1]
        if len(survivors) * pixels <= _MAX_DEPTH_MAP_VALUES:  # every segment's depth over the whole input
            kernels = torch.stack([s.depth_kernel for s in survivors])  # (S, 2 + Kd)
            maps, _ = instance_depth_maps(at_input(depth_embedding)[None], kernels[None], st.mean_scale,
                                          st.range_scale)
            every = maps.reshape(-1).clamp_(0.0, st.max_depth)  # (S * h * w,)
            own = owners_in.clamp(min=0) * pixels + torch.arange(pixels, device=every.device).reshape(image_size)
            depth_in = torch.where(owners_in >= 0, torch.take(every, own), 0.0)

            def owner_depth_at(owner: Tensor, source: Tensor) -> Tensor:  # (Q,), (Q,) -> (Q,) metres
                return torch.take(every, owner * pixels + source)
        else:  # a large network input: each pixel from its own segment's stride-4 cells only
            cells = _StrideCellDepth(survivors, depth_embedding, stride, st)
            depth_in = cells.map(owners_in)

            def owner_depth_at(owner: Tensor, source: Tensor) -> Tensor:  # (Q,), (Q,) -> (Q,) metres
                return cells.at(owner, source // image_size[1], source % image_size[1])

        owners_out = border_index - 1
        depth = upsample_segment_depth(depth_in, owners_out, border, owner_depth_at,
                                       output_size).clamp_(0.0, st.max_depth)  # weights sum to 1 +- rounding
    border_depth = depth.view(-1)[border_pixels] if depth is not None else None
    totals = segment_totals(index_in, border, border_index, taps, len(survivors) + 1,
                            depth_in if depth is not None else None, border_depth)
    return _result(index_out, survivors, depth, index=index_out, render=render, totals=totals)
