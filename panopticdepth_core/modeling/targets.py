"""Training targets of PanopticDepth: centre heatmaps, thing/stuff masks and depth per pyramid level.

Mirrors the released ``GenerateGT`` (``gt_generate.py``): things are downsampled to stride 4 with bilinear
interpolation, placed at their mass centre, assigned to the pyramid levels whose ``INSTANCE_SCALES`` range holds
the square root of their box area, and drawn as CenterNet Gaussians on their class channel; stuff targets are the
bilinear-downsampled one-hot of all classes; depth is sampled at stride 4 with nearest interpolation (with a fallback for sparse depth).

Deliberate differences from the released code (all but the last on inputs it would crash on or mis-handle):
  * things whose stride-4 mask is empty (a few pixels that bilinear sampling misses) are dropped instead of
    getting a NaN centre;
  * more than ``MODEL.TENSOR_DIM`` things on a level are truncated (the released code raises);
  * centre cells are clamped to the level grid (size - 1, not size);
  * boxes are the pixel extent of the mask (Detectron2 ``BitMasks.get_bounding_boxes``: max + 1);
  * a level cell split exactly in half by two classes is a stuff target of the lower class id only (the
    released targets give both 0.5; see ``_stuff_level``).
The stride-4 one-hot downsampling is computed from the label map with four bilinear taps per output pixel,
which equals ``F.interpolate`` of the one-hot stack without building it at full resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import CfgNode
from .settings import TargetParams, as_params
from .types import InstanceTarget, LevelTargets, TargetSet

_FLOAT64_EPS = 2.220446049250313e-16  # the released gaussian2D drops values below eps * max (max = 1)


@dataclass
class _Things:
    """Things of one image, before level assignment."""

    classes: Tensor  # (N,) int64 thing index in [0, T)
    masks4: Tensor  # (N, nh, nw) soft stride-4 masks of the unpadded image
    centers: Tensor  # (N, 2) float (x, y) mass centres at stride 4
    box_wh: Tensor  # (N, 2) float box width and height in input pixels
    scale: Tensor  # (N,) sqrt(box area)
    mean_depth: Tensor | None  # (N,) mean valid stride-4 depth, 0 where none


class _ThingLevel(NamedTuple):
    """Thing targets of one image on one level (the per-image rows of ``LevelTargets``' thing fields)."""

    heat: Tensor  # (T, h_l, w_l)
    masks: Tensor  # (TENSOR_DIM, h4, w4)
    valid: Tensor  # (TENSOR_DIM,) bool
    classes: Tensor  # (TENSOR_DIM,) int64
    mean_depth: Tensor | None  # (TENSOR_DIM,), None without depth


class _StuffLevel(NamedTuple):
    """Stuff targets of one image on one level (the per-image rows of ``LevelTargets``' stuff fields)."""

    scores: Tensor  # (S, h_l, w_l)
    masks: Tensor  # (S, h4, w4)
    region: Tensor  # (S, h_l, w_l)
    valid: Tensor  # (S,) bool
    classes: Tensor  # (S,) int64


# ------------------------------------------------------------------------------------------------ public helpers
def bilinear_taps(in_size: int, out_size: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Source indices and weights of PyTorch's bilinear resize (align_corners=False) along one axis.

    Returns ``idx (2, out)`` int64 and ``weight (2, out)``: output[o] = sum_k weight[k, o] * input[idx[k, o]].
    Float32 arithmetic in PyTorch's order, so the taps match ``F.interpolate`` bit for bit on usual sizes.
    """
    scale = torch.tensor(in_size / out_size, dtype=torch.float32)
    src = (torch.arange(out_size, dtype=torch.float32, device=device) + 0.5) * scale.to(device) - 0.5
    src = src.clamp(min=0.0)
    i0 = src.to(torch.int64)
    i1 = torch.where(i0 < in_size - 1, i0 + 1, i0)
    lam1 = src - i0.to(torch.float32)
    return torch.stack([i0, i1]), torch.stack([1.0 - lam1, lam1])


def downsample_one_hot(labels: Tensor, num_labels: int, out_size: tuple[int, int]) -> Tensor:
    """Bilinear (align_corners=False) downsample of ``one_hot(labels)`` without materialising the one-hot.

    Args:
        labels: (H, W) int64; values outside [0, num_labels) count as no label.
    Returns:
        (num_labels, oh, ow) float32, equal to ``F.interpolate(one_hot.permute(2, 0, 1)[None], out_size)[0]``.
    """
    height, width = labels.shape
    oh, ow = out_size
    device = labels.device
    y_idx, y_w = bilinear_taps(height, oh, device)
    x_idx, x_w = bilinear_taps(width, ow, device)
    out = torch.zeros(num_labels * oh * ow, dtype=torch.float32, device=device)
    position = torch.arange(oh * ow, device=device).reshape(oh, ow)
    for ky in range(2):
        rows = labels.index_select(0, y_idx[ky])  # (oh, W)
        for kx in range(2):
            lab = rows.index_select(1, x_idx[kx])  # (oh, ow)
            weight = y_w[ky][:, None] * x_w[kx][None, :]  # (oh, ow)
            valid = (lab >= 0) & (lab < num_labels)
            flat = (lab.clamp(0, max(num_labels - 1, 0)) * (oh * ow) + position)[valid]
            out.index_add_(0, flat, weight[valid])
    return out.reshape(num_labels, oh, ow)


def gaussian_radius(box_wh: Tensor, min_overlap: float) -> Tensor:
    """CornerNet's Gaussian radius for boxes (..., 2) = (w, h), exactly as the released ``get_gaussian_radius``.

    (It keeps CornerNet's ``(b + sqrt(b^2 - 4ac)) / 2`` form rather than the textbook ``/ (2a)``: the released
    heatmaps were trained with it.)
    """
    width, height = box_wh[..., 0], box_wh[..., 1]
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + torch.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + torch.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return torch.minimum(r1, torch.minimum(r2, r3))


def draw_gaussians(
    num_channels: int,
    size: tuple[int, int],
    centers: Tensor,
    radii: Tensor,
    channels: Tensor,
    sigma_factor: float,
) -> Tensor:
    """Max-merged Gaussian peaks, as the released ``draw_gaussian`` applied to each object in turn.

    Args:
        centers: (N, 2) int64 (x, y) cells; radii: (N,) int64 window half-size; channels: (N,) int64.
    Returns:
        (num_channels, h, w) float32 with 1 at each centre.
    """
    height, width = size
    device = centers.device
    heat = torch.zeros(num_channels, height * width, dtype=torch.float32, device=device)
    if centers.numel() == 0:
        return heat.reshape(num_channels, height, width)
    radii_f = radii.to(torch.float32)
    sigma = (2 * radii_f + 1) / sigma_factor  # (N,)
    dx = torch.arange(width, device=device)[None, :] - centers[:, 0:1]  # (N, w)
    dy = torch.arange(height, device=device)[None, :] - centers[:, 1:2]  # (N, h)
    inside = (dy.abs() <= radii[:, None])[:, :, None] & (dx.abs() <= radii[:, None])[:, None, :]  # (N, h, w)
    dist2 = (dy.to(torch.float32) ** 2)[:, :, None] + (dx.to(torch.float32) ** 2)[:, None, :]
    gauss = torch.exp(-dist2 / (2 * sigma[:, None, None] ** 2))
    gauss = torch.where(inside & (gauss >= _FLOAT64_EPS), gauss, torch.zeros_like(gauss))
    index = channels[:, None].expand(-1, height * width)  # (N, h*w)
    heat.scatter_reduce_(0, index, gauss.reshape(len(centers), -1), "amax", include_self=True)
    return heat.reshape(num_channels, height, width)


def stride_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """The released ``int(h / stride + 0.5)`` rounding of an image size to a stride."""
    return int(size[0] / stride + 0.5), int(size[1] / stride + 0.5)


# ------------------------------------------------------------------------------------------------ per image
def _extract_things(
    target: InstanceTarget, depth4: Tensor | None, size4: tuple[int, int], params: TargetParams
) -> _Things:
    """Thing instances of one image: class, stride-4 mask, mass centre, box and mean depth."""
    semantic = target.semantic.to(torch.int64)
    instance = target.instance.to(torch.int64)
    device = semantic.device
    first_thing = params.num_classes - params.num_things
    is_thing = (semantic >= first_thing) & (semantic < params.num_classes) & (instance > 0)
    flat_thing = is_thing.reshape(-1)
    ids, slot = torch.unique(instance.reshape(-1)[flat_thing], return_inverse=True)
    num = len(ids)
    width = semantic.shape[1]

    # class: the majority thing class of the instance's pixels
    thing_cls = semantic.reshape(-1)[flat_thing] - first_thing
    counts = torch.bincount(slot * params.num_things + thing_cls, minlength=num * params.num_things)
    classes = counts.reshape(num, params.num_things).argmax(dim=1) if num else slot.new_zeros(0)

    # boxes (pixel extent) from the full-resolution masks
    pix = torch.nonzero(flat_thing).squeeze(1)
    ys, xs = pix // width, pix % width
    big = torch.full((num,), 1 << 40, dtype=torch.int64, device=device)
    x0 = big.scatter_reduce(0, slot, xs, "amin")
    y0 = big.scatter_reduce(0, slot, ys, "amin")
    x1 = (-big).scatter_reduce(0, slot, xs, "amax") + 1
    y1 = (-big).scatter_reduce(0, slot, ys, "amax") + 1
    box_wh = torch.stack([x1 - x0, y1 - y0], dim=1).to(torch.float32)  # (N, 2)
    scale = torch.sqrt(box_wh[:, 0] * box_wh[:, 1])

    # soft stride-4 masks and their mass centres
    slot_map = torch.full_like(instance, -1).reshape(-1)
    slot_map[flat_thing] = slot
    masks4 = downsample_one_hot(slot_map.reshape(semantic.shape), num, size4)  # (N, nh, nw)
    on = masks4 > 0
    area4 = on.sum(dim=(1, 2))
    cy = (on.sum(dim=2) * torch.arange(size4[0], device=device)).sum(dim=1)
    cx = (on.sum(dim=1) * torch.arange(size4[1], device=device)).sum(dim=1)
    centers = (torch.stack([cx, cy], dim=1).to(torch.float64) / area4.clamp(min=1)[:, None]).to(torch.float32)

    mean_depth = None
    if depth4 is not None:
        # Mean over the thing's own full-resolution pixels with valid depth (the released code averages its soft
        # stride-4 mask, which lets border cells of other segments in): with sparse LiDAR a thing without a
        # single return gets 0 and so no instance-level depth loss.
        mean_depth = torch.zeros(num, device=device)
        if target.depth is not None and num:
            depth = target.depth.to(device=device, dtype=torch.float32).reshape(-1)[flat_thing]
            has = depth > 0
            total = torch.zeros(num, device=device).index_add_(0, slot[has], depth[has])
            count = torch.zeros(num, device=device).index_add_(0, slot[has], torch.ones_like(depth[has]))
            mean_depth = total / count.clamp(min=1)

    keep = area4 > 0  # a thing bilinear sampling misses entirely has no centre
    return _Things(
        classes=classes[keep],
        masks4=masks4[keep],
        centers=centers[keep],
        box_wh=box_wh[keep],
        scale=scale[keep],
        mean_depth=None if mean_depth is None else mean_depth[keep],
    )


def _thing_level(
    things: _Things,
    level_size: tuple[int, int],
    scale_range: tuple[float, float],
    padded_size: tuple[int, int],
    embed_size: tuple[int, int],
    with_depth: bool,
    params: TargetParams,
) -> _ThingLevel:
    """Thing targets of one image on one level (the released ``_label_assignment``)."""
    device = things.masks4.device
    dim = params.tensor_dim
    hl, wl = level_size
    chosen = torch.nonzero((things.scale >= scale_range[0]) & (things.scale <= scale_range[1])).squeeze(1)[:dim]
    num = len(chosen)

    masks = torch.full((dim, *embed_size), float(params.ignore_value), device=device)
    masks[:num] = 0.0
    nh, nw = min(things.masks4.shape[1], embed_size[0]), min(things.masks4.shape[2], embed_size[1])
    masks[:num, :nh, :nw] = things.masks4[chosen, :nh, :nw]
    valid = torch.zeros(dim, dtype=torch.bool, device=device)
    valid[:num] = True
    classes = torch.zeros(dim, dtype=torch.int64, device=device)
    classes[:num] = things.classes[chosen]
    mean_depth = None
    if with_depth:
        mean_depth = torch.zeros(dim, device=device)
        if things.mean_depth is not None:
            mean_depth[:num] = things.mean_depth[chosen]

    center_scale = torch.tensor([wl / embed_size[1], hl / embed_size[0]], dtype=torch.float32, device=device)
    box_scale = torch.tensor([wl / padded_size[1], hl / padded_size[0]], dtype=torch.float32, device=device)
    cells = (things.centers[chosen] * center_scale).to(torch.int64)  # (n, 2) x, y
    cells[:, 0].clamp_(0, wl - 1)
    cells[:, 1].clamp_(0, hl - 1)
    radius = gaussian_radius(things.box_wh[chosen] * box_scale, params.min_overlap).clamp(min=0).to(torch.int64)
    heat = draw_gaussians(params.num_things, level_size, cells, radius, things.classes[chosen], params.sigma_factor)
    return _ThingLevel(heat=heat, masks=masks, valid=valid, classes=classes, mean_depth=mean_depth)


def _stuff_level(sem4: Tensor, level_size: tuple[int, int]) -> _StuffLevel:
    """Stuff targets of one image on one level (the released ``_sem_assign``)."""
    num_classes = sem4.shape[0]
    scores = F.interpolate(sem4[None], size=level_size, mode="bilinear", align_corners=False)[0]
    scores = scores.clamp(max=1.0)
    scores = torch.where(scores < 0.5, torch.zeros_like(scores), scores)  # (S, hl, wl)
    # A cell split exactly in half by two classes (a border through the middle of the cell) would be a 0.5
    # target, and a region cell, of both. The region head then learns a 0.5 / 0.5 tie that inference's argmax
    # breaks by float noise, so the cell joins one class's region or the other's depending on the machine, and
    # with it that class's stuff kernels move. Such a cell goes to one class: the one argmax picks (lower id).
    tied = (scores > 0).sum(dim=0) > 1  # (hl, wl)
    if bool(tied.any()):
        first = F.one_hot(scores.argmax(dim=0), num_classes).permute(2, 0, 1).bool()
        scores = torch.where(tied[None] & ~first, torch.zeros_like(scores), scores)
    present = torch.nonzero(scores.reshape(num_classes, -1).sum(dim=1) > 0).squeeze(1)
    num = len(present)
    masks = torch.zeros_like(sem4)
    masks[:num] = sem4[present]
    region = torch.zeros_like(scores)
    region[:num] = (scores[present] > 0).to(scores.dtype)
    valid = torch.zeros(num_classes, dtype=torch.bool, device=sem4.device)
    valid[:num] = True
    classes = torch.zeros(num_classes, dtype=torch.int64, device=sem4.device)
    classes[:num] = present
    return _StuffLevel(scores=scores, masks=masks, region=region, valid=valid, classes=classes)


def _stack(rows: Sequence[NamedTuple], field: str) -> Tensor | None:
    """One field of every image's per-level targets stacked into a batch (None where the field is None)."""
    values = [getattr(row, field) for row in rows]
    return None if values[0] is None else torch.stack(values)


def _pad_to(tensor: Tensor, size: tuple[int, int]) -> Tensor:
    """Place a (..., h, w) map in the top-left corner of zeros of (..., size)."""
    out = tensor.new_zeros(*tensor.shape[:-2], *size)
    h, w = min(tensor.shape[-2], size[0]), min(tensor.shape[-1], size[1])
    out[..., :h, :w] = tensor[..., :h, :w]
    return out


# ------------------------------------------------------------------------------------------------ entry point
def _sample_depth_stride4(depth: Tensor, segment: Tensor, size4: tuple[int, int]) -> Tensor:
    """Depth (H, W) -> (h4, w4) by nearest sampling, as the released GenerateGT does. Where the sampled pixel has
    no depth (sparse LiDAR) but other pixels of its cell do, the cell takes the nearest valid depth among the
    pixels of the same segment (``segment``: (H, W) panoptic ids), so depth never leaks across object borders.

    Dense depth gives exactly the released targets; sparse depth keeps most of its points instead of ~1 in 16.
    """
    nearest = F.interpolate(depth[None, None], size=size4, mode="nearest")[0, 0]  # (h4, w4)
    segment4 = F.interpolate(segment[None, None].double(), size=size4, mode="nearest")[0, 0].long()  # (h4, w4)
    height, width = depth.shape
    rows = (torch.arange(height, device=depth.device) * size4[0] // height).clamp(max=size4[0] - 1)
    cols = (torch.arange(width, device=depth.device) * size4[1] // width).clamp(max=size4[1] - 1)
    cell = rows[:, None] * size4[1] + cols[None, :]  # (H, W) index of each pixel's stride-4 cell
    usable = (depth > 0) & (segment == segment4.reshape(-1)[cell])
    inverse = torch.where(usable, 1.0 / depth.clamp(min=1e-6), torch.zeros_like(depth))  # nearest = max 1/d
    pooled = torch.zeros(size4[0] * size4[1], device=depth.device, dtype=depth.dtype)
    pooled = pooled.scatter_reduce(0, cell.reshape(-1), inverse.reshape(-1), reduce="amax")
    fallback = torch.where(pooled > 0, 1.0 / pooled.clamp(min=1e-12), torch.zeros_like(pooled)).reshape(size4)
    return torch.where(nearest > 0, nearest, fallback)


def build_targets(
    targets: list[InstanceTarget],
    padded_size: tuple[int, int],
    level_sizes: list[tuple[int, int]],
    embed_size: tuple[int, int],
    params: TargetParams | CfgNode,
) -> TargetSet:
    """All training targets of a padded batch (the released ``GenerateGT.generate``).

    Args:
        targets: B per-image ground truths at each image's own size (the top-left part of the padded batch).
        padded_size: (H, W) of the padded input batch.
        level_sizes: (h_l, w_l) of each pyramid level, one per ``MODEL.KERNEL_HEAD.INSTANCE_SCALES`` entry.
        embed_size: (h4, w4) of the stride-4 mask embedding.
        params: the model's ``TargetParams`` (or a config to build them from).

    Thing and stuff stride-4 masks are soft (bilinear) values in [0, 1], as the released dice targets are; thing
    slots beyond the real things hold ``MODEL.IGNORE_VALUE``. Everything is created on the device of the
    targets' tensors, so move the ground truth to the model's device first.
    """
    params = as_params(params, TargetParams)
    if len(level_sizes) != len(params.instance_scales):
        raise ValueError(
            f"got {len(level_sizes)} pyramid levels but MODEL.KERNEL_HEAD.INSTANCE_SCALES has "
            f"{len(params.instance_scales)} entries; they must match"
        )
    if not targets:
        raise ValueError("build_targets needs at least one image")
    level_sizes = [(int(h), int(w)) for h, w in level_sizes]
    embed_size = (int(embed_size[0]), int(embed_size[1]))
    with_depth = any(t.depth is not None for t in targets)

    per_level: list[list[tuple[_ThingLevel, _StuffLevel]]] = [[] for _ in level_sizes]
    depths: list[Tensor] = []
    class_masks: list[Tensor] = []
    for target in targets:
        height, width = target.semantic.shape
        if height > padded_size[0] or width > padded_size[1]:
            raise ValueError(f"image of size {(height, width)} is larger than the padded batch size {padded_size}")
        size4 = stride_size((height, width), params.common_stride)
        semantic = target.semantic.to(torch.int64)
        sem4 = _pad_to(downsample_one_hot(semantic, params.num_classes, size4), embed_size)  # (S, h4, w4)
        class_masks.append(sem4)

        depth4 = None
        if with_depth:
            if target.depth is None:
                depth4 = torch.zeros(embed_size, device=semantic.device)
            else:
                raw = target.depth.to(device=semantic.device, dtype=torch.float32)
                segment = semantic.long() * 1000 + target.instance.to(semantic.device).long()
                depth4 = _pad_to(_sample_depth_stride4(raw, segment, size4), embed_size)
            depths.append(depth4)

        things = _extract_things(target, depth4, size4, params)
        for level, (size, scale_range) in enumerate(zip(level_sizes, params.instance_scales)):
            thing = _thing_level(things, size, scale_range, padded_size, embed_size, with_depth, params)
            per_level[level].append((thing, _stuff_level(sem4, size)))

    levels = []
    for entries in per_level:
        things_b = [thing for thing, _ in entries]
        stuff_b = [stuff for _, stuff in entries]
        levels.append(
            LevelTargets(
                center_heatmap=_stack(things_b, "heat"),
                thing_masks=_stack(things_b, "masks"),
                thing_valid=_stack(things_b, "valid"),
                thing_classes=_stack(things_b, "classes"),
                thing_mean_depth=_stack(things_b, "mean_depth"),
                stuff_scores=_stack(stuff_b, "scores"),
                stuff_masks=_stack(stuff_b, "masks"),
                stuff_region_masks=_stack(stuff_b, "region"),
                stuff_valid=_stack(stuff_b, "valid"),
                stuff_classes=_stack(stuff_b, "classes"),
            )
        )
    return TargetSet(
        levels=levels,
        depth=torch.stack(depths) if with_depth else None,
        class_masks=torch.stack(class_masks),
        image_sizes=[(int(t.semantic.shape[0]), int(t.semantic.shape[1])) for t in targets],
        padded_size=(int(padded_size[0]), int(padded_size[1])),
    )


__all__ = [
    "TargetParams",
    "bilinear_taps",
    "build_targets",
    "downsample_one_hot",
    "draw_gaussians",
    "gaussian_radius",
    "stride_size",
]
