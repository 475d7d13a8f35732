"""Training losses of PanopticDepth: focal position losses, kernel selection, dice mask losses and depth losses.

Mirrors the released ``PanopticDepth.losses`` / ``loss_single_level`` / ``depth_loss`` / ``depth_loss_flatten``
(``panoptic_depth.py``) and ``sigmoid_focal_loss`` / ``weighted_dice_loss`` (``loss.py``), as pure functions over
:class:`HeadOutputs` and :class:`TargetSet`.

Deliberate differences from the released code:
  * any batch size (the released depth losses assert one image per GPU): the pixel depth loss is flattened over
    the whole batch as ``depth_loss_flatten`` does, the instance depth loss is computed per image and averaged
    over the images that have at least one thing with valid depth;
  * kernels are only taken from positions inside the object (the released code also trains the depth maps of
    top-k positions outside a small object, whose dice weight is 0); levels with fewer than POS_NUM cells use
    all their cells;
  * empty inputs (no things, no stuff, no valid depth) give exact zeros that stay connected to the graph instead
    of NaN;
  * ``sqrt`` in the depth loss is taken of ``max(x, 1e-12)`` so a perfect prediction has a finite gradient;
  * with several processes, counts (things, stuff, images) and the pixel depth loss's sums are pooled over all
    of them (``cross_process``), so DDP computes the loss of the whole batch; the released code normalises and
    pools per GPU. One process is unaffected;
  * the pixel depth loss also covers, per image and stuff class, the depth map of the stuff depth kernel that
    post-processing builds from the current region predictions (the average over levels of the per-level region
    means, ``_inference_stuff_depth_sums``). The released loss only supervises each level's kernel over its
    ground-truth region, which leaves the kernel inference uses untrained (docs/training.md).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from ..config import CfgNode
from .cross_process import global_counts, normalized, pooled
from .instance_depth import instance_depth_maps
from .settings import LossParams, as_params
from .types import HeadOutputs, KernelProjection, LevelTargets, TargetSet

_DEPTH_EPS = 1e-6  # the released clamp of depths before the log
_DICE_EPS = 1e-8


# ------------------------------------------------------------------------------------------------ primitives
def sigmoid_focal_loss(
    logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0, mode: str = "thing"
) -> Tensor:
    """Sum-reduced sigmoid focal loss with soft targets (the released ``loss.sigmoid_focal_loss``, reduction sum).

    ``mode="thing"`` sums over every element (centre heatmaps); ``mode="stuff"`` first averages each (B, C) map
    over its pixels, then sums (region maps). A negative ``alpha`` disables the class balance term.
    """
    if mode not in ("thing", "stuff"):
        raise ValueError(f"focal loss mode must be 'thing' or 'stuff', got {mode!r}")
    logits = logits.float()
    targets = targets.to(logits.dtype)
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if mode == "stuff":
        loss = loss.reshape(*loss.shape[:2], -1).mean(dim=-1)
    return loss.sum()


def dice_loss(probs: Tensor, targets: Tensor, eps: float = _DICE_EPS) -> Tensor:
    """``1 - 2 sum(p t) / (sum p^2 + sum t^2)`` over the last dim (the core of the released ``weighted_dice_loss``)."""
    denom = (probs**2).sum(dim=-1) + (targets**2).sum(dim=-1)
    return 1 - 2 * (probs * targets).sum(dim=-1) / denom.clamp(min=eps)


def weighted_dice_loss(mask_logits: Tensor, targets: Tensor, weights: Tensor, eps: float = _DICE_EPS) -> Tensor:
    """Score-weighted dice of K candidate masks per object (the released ``weighted_dice_loss``, mode "thing").

    Args:
        mask_logits: (M, K, P) logits of the K masks predicted for each of M objects.
        targets: (M, P) soft target masks.
        weights: (M, K) scores of the K kernels; normalised to sum 1 per object (all-zero stays zero).
    Returns:
        (M,) per-object loss; the caller sums and normalises.
    """
    weights = weights / weights.sum(dim=-1, keepdim=True).clamp(min=eps)
    dice = dice_loss(torch.sigmoid(mask_logits.float()), targets.float()[:, None, :].expand_as(mask_logits), eps)
    return (dice * weights).sum(dim=-1)


def depth_error_sums(gt: Tensor, pred: Tensor, valid: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Sufficient statistics of the depth loss over ``dim`` (all dims when None), for combining groups.

    Returns (..., 4): sum of g^2, sum of g, sum of (1 - pred / gt)^2, count; with g = log gt - log pred over the
    valid entries (depths clamped to 1e-6 as the released code does).
    """
    valid = valid.bool()
    gt_safe = torch.where(valid, gt.float(), torch.ones_like(gt, dtype=torch.float32)).clamp(min=_DEPTH_EPS)
    pred_safe = torch.where(valid, pred.float(), torch.ones_like(pred, dtype=torch.float32)).clamp(min=_DEPTH_EPS)
    zero = torch.zeros_like(gt_safe)
    log_diff = torch.where(valid, torch.log(gt_safe) - torch.log(pred_safe), zero)
    rel = torch.where(valid, (1.0 - pred_safe / gt_safe) ** 2, zero)
    dims = tuple(range(gt_safe.dim())) if dim is None else dim
    return torch.stack(
        [(log_diff**2).sum(dim=dims), log_diff.sum(dim=dims), rel.sum(dim=dims), valid.float().sum(dim=dims)],
        dim=-1,
    )


def depth_error_from_sums(sums: Tensor) -> Tensor:
    """``5 * (mean g^2 - (mean g)^2) + sqrt(mean (1 - pred/gt)^2)`` from :func:`depth_error_sums`; 0 where empty."""
    count = sums[..., 3].clamp(min=1)
    scale_invariant = sums[..., 0] / count - (sums[..., 1] / count) ** 2
    relative = torch.sqrt((sums[..., 2] / count).clamp(min=1e-12))
    return torch.where(sums[..., 3] > 0, 5.0 * scale_invariant + relative, torch.zeros_like(count))


def depth_loss_flatten(gt: Tensor, pred: Tensor, valid: Tensor | None = None) -> Tensor:
    """The depth loss over all valid entries pooled together (the released ``depth_loss_flatten``)."""
    if valid is None:
        valid = gt > 0
    return depth_error_from_sums(depth_error_sums(gt, pred, valid))


def depth_loss_rows(gt: Tensor, pred: Tensor, valid: Tensor) -> Tensor:
    """The depth loss of each row over the last dim (the released ``depth_loss`` before its mean); 0 for empty rows."""
    return depth_error_from_sums(depth_error_sums(gt, pred, valid, dim=-1))


# ------------------------------------------------------------------------------------------------ selection
@dataclass
class _Selection:
    """Selected kernels and the matching targets: of one level (n things, m stuff slots), or of all levels
    concatenated along the slot axis (see :meth:`cat`)."""

    thing_kernels: Tensor  # (B, n, K, C) kernel features at the selected positions
    thing_scores: Tensor  # (B, n, K) guidance scores of those positions (dice weights)
    kernel_valid: Tensor  # (B, n, K) bool: the position lies inside the object
    thing_valid: Tensor  # (B, n)
    thing_masks: Tensor  # (B, n, h4, w4)
    stuff_kernels: Tensor  # (B, m, C) region-mean kernel features
    stuff_valid: Tensor  # (B, m)
    stuff_masks: Tensor  # (B, m, h4, w4)
    stuff_classes: Tensor  # (B, m)
    thing_depth_kernels: Tensor | None = None  # (B, n, K, 2 + Kd); None without depth
    stuff_depth_kernels: Tensor | None = None  # (B, m, 2 + Kd)
    thing_mean_depth: Tensor | None = None  # (B, n) mean gt depth per thing; None when the targets have none

    @classmethod
    def cat(cls, levels: list[_Selection]) -> _Selection:
        """All levels' slots side by side (dim 1); a field is None if it is None on any level."""

        def join(name: str) -> Tensor | None:
            parts = [getattr(level, name) for level in levels]
            return None if any(p is None for p in parts) else torch.cat(parts, dim=1)

        return cls(**{f.name: join(f.name) for f in fields(cls)})


def _gather_positions(features: Tensor, index: Tensor) -> Tensor:
    """Features (B, C, h, w) at flat positions index (B, n, K) -> (B, n, K, C)."""
    batch, channels = features.shape[:2]
    n, k = index.shape[1:]
    flat = features.reshape(batch, channels, -1)  # (B, C, h*w)
    picked = torch.gather(flat, 2, index.reshape(batch, 1, n * k).expand(batch, channels, n * k))
    return picked.reshape(batch, channels, n, k).permute(0, 2, 3, 1)


def _region_mean(features: Tensor, regions: Tensor) -> Tensor:
    """Mean of features (B, C, h, w) over binary regions (B, m, h, w) -> (B, m, C); 0 for empty regions."""
    area = regions.sum(dim=(2, 3)).clamp(min=1)  # (B, m)
    total = torch.einsum("bmhw,bchw->bmc", regions.to(features.dtype), features)
    return total / area[..., None].to(total.dtype)


def _select_level(
    center_logits: Tensor,
    region_logits: Tensor,
    kernel_features: Tensor,
    depth_params: Tensor | None,
    target: LevelTargets,
    params: LossParams,
) -> tuple[Tensor, Tensor, _Selection]:
    """Position losses (thing, stuff; sum-reduced focal losses) and kernel selection of one level (the released
    ``loss_single_level``)."""
    batch, _, height, width = center_logits.shape
    pos_thing = sigmoid_focal_loss(center_logits, target.center_heatmap, params.alpha, params.gamma, "thing")
    pos_stuff = sigmoid_focal_loss(region_logits, target.stuff_scores, params.alpha, params.gamma, "stuff")

    # things: top-k positions inside each object, ranked by the predicted centre score of its class
    n = max(int(target.thing_valid.sum(dim=1).max()), 1)
    masks = target.thing_masks[:, :n].float()  # (B, n, h4, w4)
    valid = target.thing_valid[:, :n]
    classes = target.thing_classes[:, :n].clamp(0, params.num_things - 1)
    guide_masks = F.interpolate(masks, size=(height, width), mode="bilinear", align_corners=False)
    inside = (guide_masks > 0.1) & valid[..., None, None]  # (B, n, h, w)
    scores = torch.sigmoid(torch.gather(center_logits, 1, classes[..., None, None].expand(-1, -1, height, width)))
    guidance = torch.where(inside, scores, torch.zeros_like(scores)).reshape(batch, n, -1)  # (B, n, h*w)
    k_eff = min(params.pos_num, height * width)
    top_scores, top_index = torch.topk(guidance, k=k_eff, dim=-1)  # (B, n, k_eff)
    kernel_valid = torch.gather(inside.reshape(batch, n, -1), 2, top_index)
    if k_eff < params.pos_num:  # a level smaller than POS_NUM cells: pad with unusable duplicates
        pad = params.pos_num - k_eff
        top_scores = F.pad(top_scores, (0, pad))
        top_index = F.pad(top_index, (0, pad))
        kernel_valid = F.pad(kernel_valid, (0, pad), value=False)
    top_scores = torch.where(kernel_valid, top_scores, torch.zeros_like(top_scores))
    thing_kernels = _gather_positions(kernel_features, top_index)

    # stuff: mean kernel over each present class's region on this level
    m = max(int(target.stuff_valid.sum(dim=1).max()), 1)
    regions = target.stuff_region_masks[:, :m]  # (B, m, h, w)
    stuff_kernels = _region_mean(kernel_features, regions)

    thing_depth = stuff_depth = None
    if depth_params is not None:
        thing_depth = _gather_positions(depth_params, top_index)
        stuff_depth = _region_mean(depth_params, regions)

    mean_depth = target.thing_mean_depth
    return pos_thing, pos_stuff, _Selection(
        thing_kernels=thing_kernels,
        thing_scores=top_scores,
        kernel_valid=kernel_valid,
        thing_valid=valid,
        thing_masks=masks,
        stuff_kernels=stuff_kernels,
        stuff_valid=target.stuff_valid[:, :m],
        stuff_masks=target.stuff_masks[:, :m].float(),
        stuff_classes=target.stuff_classes[:, :m],
        thing_depth_kernels=thing_depth,
        stuff_depth_kernels=stuff_depth,
        thing_mean_depth=None if mean_depth is None else mean_depth[:, :n].float(),
    )


def _apply_kernels(kernels: Tensor, embedding: Tensor) -> Tensor:
    """Mask logits of kernels (B, N, E) over the embedding (B, E, h, w) -> (B, N, h*w)."""
    batch, channels = embedding.shape[:2]
    return torch.matmul(kernels, embedding.reshape(batch, channels, -1))


def _zero_like_graph(*tensors: Tensor) -> Tensor:
    """An exact 0 that backpropagates (zeros) into every given tensor, for losses with nothing to supervise."""
    total = tensors[0].float().sum() * 0.0
    for tensor in tensors[1:]:
        total = total + tensor.float().sum() * 0.0
    return total


# ------------------------------------------------------------------------------------------------ depth
def _depth_losses(
    head: HeadOutputs,
    targets: TargetSet,
    sel: _Selection,
    params: LossParams,
) -> tuple[Tensor, Tensor, int]:
    """What the pixel and instance-level depth losses (the depth part of the released ``losses``) are made of:
    the pixel loss's sums (4,) (see :func:`depth_error_sums`), the sum of the per-image instance losses and the
    number of images it sums over. The caller pools them over processes and normalises."""
    thing_depth_kernels, stuff_depth_kernels = sel.thing_depth_kernels, sel.stuff_depth_kernels
    batch, num_things, k = thing_depth_kernels.shape[:3]
    embedding = head.depth_embedding
    thing_maps, thing_mu = instance_depth_maps(
        embedding, thing_depth_kernels.reshape(batch, num_things * k, -1), params.mean_scale, params.range_scale
    )  # (B, Nt*K, h4, w4), (B, Nt*K)
    stuff_maps, _ = instance_depth_maps(embedding, stuff_depth_kernels, params.mean_scale, params.range_scale)
    anchor = _zero_like_graph(thing_maps, stuff_maps, thing_mu)
    if targets.depth is None:
        return anchor.expand(4), anchor, 0

    depth = targets.depth.float().reshape(batch, 1, -1)  # (B, 1, h4*w4)
    depth_valid = depth > 0
    thing_pixels = (sel.thing_masks.reshape(batch, num_things, -1) > 0) & depth_valid  # (B, Nt, P)
    mean_gt = sel.thing_mean_depth  # (B, Nt), or None for hand-made targets without it
    if mean_gt is None:
        mean_gt = (depth * thing_pixels).sum(dim=-1) / thing_pixels.sum(dim=-1).clamp(min=1)
    has_depth = sel.thing_valid & (mean_gt > 0)  # (B, Nt)
    use_kernel = sel.kernel_valid & has_depth[..., None]  # (B, Nt, K)

    # pixel loss, things: each usable kernel's map over its thing's pixels (soft mask > 0) with valid depth
    b_idx, n_idx, k_idx = torch.nonzero(use_kernel, as_tuple=True)  # only the M used kernels, not B*Nt*K
    thing_rows = thing_maps.reshape(batch, num_things, k, -1)[b_idx, n_idx, k_idx]  # (M, P)
    thing_sums = depth_error_sums(depth[b_idx, 0], thing_rows, thing_pixels[b_idx, n_idx])
    # pixel loss, stuff: each stuff-class kernel's map over the class's pixels (soft mask > 0.5) with valid depth
    is_stuff = sel.stuff_valid & (sel.stuff_classes < params.num_classes - params.num_things)  # (B, Ns)
    num_stuff = stuff_maps.shape[1]
    b_idx, s_idx = torch.nonzero(is_stuff, as_tuple=True)
    stuff_pixels = sel.stuff_masks.reshape(batch, num_stuff, -1)[b_idx, s_idx] > 0.5  # (Ms, P)
    stuff_rows = stuff_maps.reshape(batch, num_stuff, -1)[b_idx, s_idx]
    stuff_sums = depth_error_sums(depth[b_idx, 0], stuff_rows, stuff_pixels & depth_valid[b_idx, 0])
    pixel_sums = thing_sums + stuff_sums + anchor
    if targets.class_masks is not None and targets.image_sizes is not None:
        pixel_sums = pixel_sums + _inference_stuff_depth_sums(head, targets, depth_valid, params)

    # instance loss: per image, the K selected kernels' mean depths against the thing's mean gt depth
    mu = thing_mu.reshape(batch, num_things * k)
    gt_rows = mean_gt[..., None].expand(-1, -1, k).reshape(batch, num_things * k)
    valid_rows = use_kernel.reshape(batch, num_things * k)
    per_image = depth_loss_rows(gt_rows, mu, valid_rows)  # (B,)
    images = valid_rows.any(dim=1)
    return pixel_sums, per_image[images].sum() + anchor, int(images.sum())


def _inference_stuff_depth_sums(head: HeadOutputs, targets: TargetSet, depth_valid: Tensor, params: LossParams) -> Tensor:
    """Pixel depth-loss sums (4,) of the stuff depth kernels that post-processing would use on these predictions.

    At inference a stuff class's depth kernel is the mean of the depth kernels over the cells it wins (argmax,
    probability >= 0.4) on each level where it scores above STUFF.THRES, then averaged over those levels
    (``postprocess.stuff_regions`` and ``fuse_stuff_kernels``, called here on the detached region logits). The
    released loss only supervises each level's mean over its ground-truth region, and the depth map is
    non-linear in the kernel: an average of level kernels that are each right is not right in general (on the
    overfit test's road, levels at AbsRel 0.02 each gave 0.06 averaged). Supervising the kernel inference builds
    trains what is used; its pixels are the class's ground-truth pixels. Gradients reach the depth-kernel head
    through the selected cells; the selection itself is not differentiated. (The selection must also be the
    same as at inference: see the tie rule in ``targets._stuff_level``.)
    """
    from .postprocess import fuse_stuff_kernels, level_extent, stuff_regions

    first_thing = params.num_classes - params.num_things
    embedding = head.depth_embedding
    depth = targets.depth.float()
    sums = []
    for b, image_size in enumerate(targets.image_sizes):
        classes, scores, kernels = [], [], []
        for logits, depth_params in zip(head.region_logits, head.depth_kernel_params):
            rows, cols = level_extent(tuple(logits.shape[-2:]), image_size, targets.padded_size)
            found, score, region, _ = stuff_regions(
                logits[b, :, :rows, :cols].detach().float(), params.stuff_score_threshold
            )
            cells = depth_params[b, :, :rows, :cols].float().reshape(depth_params.shape[1], -1)  # (2 + Kd, h*w)
            classes.append(found)
            scores.append(score)
            kernels.append(region @ cells.T / region.sum(1, keepdim=True).clamp(min=1))
        fused, unique, _, _ = fuse_stuff_kernels(torch.cat(kernels), torch.cat(classes), torch.cat(scores))
        stuff = unique < first_thing
        if not bool(stuff.any()):
            continue
        maps, _ = instance_depth_maps(embedding[b : b + 1], fused[stuff][None], params.mean_scale, params.range_scale)
        pixels = (targets.class_masks[b, unique[stuff]] > 0.5) & depth_valid[b].reshape(1, *depth.shape[1:])
        sums.append(depth_error_sums(depth[b].expand_as(maps[0]), maps[0], pixels))
    if not sums:
        return embedding.new_zeros(4)
    return torch.stack(sums).sum(0)


# ------------------------------------------------------------------------------------------------ entry point
def compute_losses(
    head: HeadOutputs,
    targets: TargetSet,
    project_thing: KernelProjection,
    project_stuff: KernelProjection,
    params: LossParams | CfgNode,
) -> dict[str, Tensor]:
    """Weighted training losses of one batch (the released ``PanopticDepth.losses``).

    Returns loss_pos_th, loss_pos_st, loss_seg_th, loss_seg_st and, with MODEL.DEPTH_ON, loss_depth and
    loss_depth_ins; each already multiplied by its MODEL.LOSS_WEIGHT / MODEL.DEPTH_HEAD factor. ``params``: the
    model's ``LossParams`` (or a config to build them from).
    """
    params = as_params(params, LossParams)
    num_levels = len(targets.levels)
    if not (len(head.center_logits) == len(head.region_logits) == len(head.kernel_features) == num_levels):
        raise ValueError(
            f"head outputs have {len(head.center_logits)} levels but the targets have {num_levels}; "
            "build the targets with the head's level sizes"
        )
    use_depth = params.depth_on
    if use_depth and (head.depth_kernel_params is None or head.depth_embedding is None):
        raise ValueError("MODEL.DEPTH_ON is True but the head produced no depth kernels / depth embedding")
    depth_params = head.depth_kernel_params if use_depth else [None] * num_levels

    pos_thing, pos_stuff, levels = zip(*[
        _select_level(c, r, f, d, t, params)
        for c, r, f, d, t in zip(
            head.center_logits, head.region_logits, head.kernel_features, depth_params, targets.levels
        )
    ])  # fmt: skip
    sel = _Selection.cat(list(levels))
    embedding = head.mask_embedding
    batch = embedding.shape[0]
    thing_gt_num = int(sel.thing_valid.sum())
    stuff_gt_num = int(sel.stuff_valid.sum())

    # thing masks: K candidate masks per thing slot, score-weighted dice over the real things
    thing_kernels = project_thing(sel.thing_kernels)  # (B, Nt, K, E)
    num_things, k = thing_kernels.shape[1:3]
    thing_logits = _apply_kernels(thing_kernels.reshape(batch, num_things * k, -1), embedding)
    thing_logits = thing_logits.reshape(batch, num_things, k, -1)  # (B, Nt, K, h4*w4)
    if thing_gt_num > 0:
        valid = sel.thing_valid
        loss_thing = weighted_dice_loss(
            thing_logits[valid], sel.thing_masks.reshape(batch, num_things, -1)[valid], sel.thing_scores[valid]
        ).sum()
    else:
        loss_thing = _zero_like_graph(thing_logits, sel.thing_scores)

    # stuff masks: one region-mean kernel per present class and level, plain dice
    stuff_kernels = project_stuff(sel.stuff_kernels)  # (B, Ns, E)
    stuff_logits = _apply_kernels(stuff_kernels, embedding)  # (B, Ns, h4*w4)
    if stuff_gt_num > 0:
        valid = sel.stuff_valid
        num_stuff = stuff_logits.shape[1]
        loss_stuff = dice_loss(
            torch.sigmoid(stuff_logits[valid].float()), sel.stuff_masks.reshape(batch, num_stuff, -1)[valid]
        ).sum()
    else:
        loss_stuff = _zero_like_graph(stuff_logits)

    pixel_sums = instance_sum = None
    depth_image_num = 0
    if use_depth:
        pixel_sums, instance_sum, depth_image_num = _depth_losses(head, targets, sel, params)
    # counts of the whole batch over all processes (DDP then trains as one process would; see cross_process)
    things, stuff, images, depth_images = global_counts(
        [thing_gt_num, stuff_gt_num, batch, depth_image_num], embedding.device
    )
    losses = {
        "loss_pos_th": params.weight_pos_thing * normalized(sum(pos_thing), things),
        "loss_pos_st": params.weight_pos_stuff * normalized(sum(pos_stuff), images),
        "loss_seg_th": params.weight_segment * normalized(loss_thing, things),
        "loss_seg_st": params.weight_segment * normalized(loss_stuff, stuff),
    }
    if use_depth:
        losses["loss_depth"] = params.depth_factor * pooled(pixel_sums, depth_error_from_sums)
        losses["loss_depth_ins"] = params.depth_factor * params.depth_factor_ins * normalized(instance_sum,
                                                                                              depth_images)
    return losses


__all__ = [
    "LossParams",
    "compute_losses",
    "depth_error_from_sums",
    "depth_error_sums",
    "depth_loss_flatten",
    "depth_loss_rows",
    "dice_loss",
    "sigmoid_focal_loss",
    "weighted_dice_loss",
]
