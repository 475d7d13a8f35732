"""Losses: the primitives on hand-made inputs, and compute_losses end to end on hand-built head outputs."""

from __future__ import annotations

import math

import pytest
import torch

from panopticdepth_core.config import get_default_config
from panopticdepth_core.modeling.losses import (
    compute_losses,
    depth_loss_flatten,
    depth_loss_rows,
    dice_loss,
    sigmoid_focal_loss,
    weighted_dice_loss,
)
from panopticdepth_core.modeling.targets import build_targets
from panopticdepth_core.modeling.types import HeadOutputs, InstanceTarget, TargetSet

LEVELS = [(8, 16), (4, 8), (2, 4), (1, 2), (1, 1)]  # P3..P7 of a 64x128 padded batch
EMBED = (16, 32)
C_KERNEL, E_DIM, KD = 12, 8, 4
ROAD, PERSON, CAR = 0, 11, 13
D_ROAD, D_CAR, D_PERSON = 30.0, 10.0, 20.0


# ------------------------------------------------------------------------------------------------ primitives
def test_focal_loss_matches_hand_value_and_prefers_the_right_heatmap() -> None:
    # one element, logit 0, target 1: p = 0.5, ce = ln 2, (1 - p_t)^2 = 0.25, alpha_t = 0.25
    value = sigmoid_focal_loss(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1), alpha=0.25, gamma=2.0)
    assert value.item() == pytest.approx(0.25 * 0.25 * math.log(2), rel=1e-6)
    # stuff mode averages each map over its pixels: 4 identical pixels give the same value as one
    four = sigmoid_focal_loss(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), mode="stuff")
    assert four.item() == pytest.approx(value.item(), rel=1e-6)

    heat = torch.zeros(1, 2, 8, 8)
    heat[0, 0, 3, 3] = 1.0
    heat[0, 0, 3, 4] = heat[0, 0, 4, 3] = 0.6
    perfect = torch.logit(heat.clamp(1e-4, 1 - 1e-4))
    wrong = torch.roll(perfect, shifts=(3, 3), dims=(2, 3))
    assert sigmoid_focal_loss(perfect, heat) * 10 < sigmoid_focal_loss(wrong, heat)
    with pytest.raises(ValueError, match="mode"):
        sigmoid_focal_loss(perfect, heat, mode="both")


def test_dice_is_zero_for_identical_masks_and_large_for_wrong_ones() -> None:
    target = torch.zeros(2, 64)
    target[0, :20] = 1.0
    target[1, 30:50] = 1.0
    perfect_logits = (target * 2 - 1) * 30.0  # (2, 64)
    assert dice_loss(torch.sigmoid(perfect_logits), target).max() < 1e-6
    wrong = torch.flip(perfect_logits, dims=[0])  # each object gets the other's mask
    assert (dice_loss(torch.sigmoid(wrong), target) > 0.5).all()

    # weighted: kernel 0 perfect, kernel 1 wrong; the weights decide the mix and are normalised per object
    logits = torch.stack([perfect_logits, wrong], dim=1)  # (M=2, K=2, P)
    only_good = weighted_dice_loss(logits, target, torch.tensor([[0.9, 0.0], [0.5, 0.0]]))
    assert only_good.max() < 1e-6
    only_bad = weighted_dice_loss(logits, target, torch.tensor([[0.0, 0.2], [0.0, 0.7]]))
    assert (only_bad > 0.5).all()
    half = weighted_dice_loss(logits, target, torch.tensor([[0.3, 0.3], [0.1, 0.1]]))
    assert torch.allclose(half, only_bad / 2, atol=1e-5)
    assert torch.equal(weighted_dice_loss(logits, target, torch.zeros(2, 2)), torch.zeros(2))


def test_depth_loss_is_zero_for_a_perfect_prediction_and_ignores_invalid_pixels() -> None:
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(3, 50, generator=gen) * 40 + 1
    gt[:, ::3] = 0.0  # sparse ground truth
    pred = torch.where(gt > 0, gt, torch.rand(3, 50, generator=gen) * 100)  # garbage where gt is unknown
    assert depth_loss_flatten(gt, pred).item() < 1e-5
    assert depth_loss_flatten(gt, pred * 1.5).item() > 0.1
    # a global scale error only costs the relative term: 5 * var(log) stays 0, sqrt(mean (1 - 1.5)^2) = 0.5
    assert depth_loss_flatten(gt, torch.where(gt > 0, gt * 1.5, pred)).item() == pytest.approx(0.5, abs=1e-4)
    rows = depth_loss_rows(gt, pred, gt > 0)
    assert rows.shape == (3,) and rows.max() < 1e-5
    empty = depth_loss_flatten(torch.zeros(10), torch.rand(10, requires_grad=True))
    assert empty.item() == 0.0


def test_instance_depth_loss_reacts_to_swapped_relative_depths() -> None:
    # two things (near 10 m, far 30 m), three kernels each; the right means vs the two swapped
    gt = torch.tensor([[10.0, 10, 10, 30, 30, 30]])
    right = gt.clone()
    swapped = torch.tensor([[30.0, 30, 30, 10, 10, 10]])
    valid = torch.ones_like(gt, dtype=torch.bool)
    assert depth_loss_rows(gt, right, valid).item() < 1e-6
    assert depth_loss_rows(gt, swapped, valid).item() > 1.0
    # the scale-invariant term does not punish a global scale as much as a wrong ordering
    assert depth_loss_rows(gt, right * 1.2, valid) < depth_loss_rows(gt, swapped, valid)


# ------------------------------------------------------------------------------------------------ scenes
def _cfg(depth_on: bool = True):
    cfg = get_default_config()
    cfg.MODEL.DEPTH_ON = depth_on
    cfg.MODEL.TENSOR_DIM = 8
    cfg.MODEL.DEPTH_HEAD.DEPTH_KERNEL_DIM = KD
    return cfg


def _scene() -> InstanceTarget:
    """Road, a car (levels 0) and a person (levels 0, 1), every edge on a multiple of 16: exact level masks."""
    semantic = torch.full((64, 128), ROAD, dtype=torch.int64)
    instance = torch.zeros((64, 128), dtype=torch.int64)
    semantic[32:48, 16:48] = CAR  # 32 x 16 box, sqrt(area) 22.6 -> level 0
    instance[32:48, 16:48] = 3
    semantic[16:64, 64:112] = PERSON  # 48 x 48 -> levels 0 and 1
    instance[16:64, 64:112] = 4
    depth = torch.full((64, 128), D_ROAD)
    depth[32:48, 16:48] = D_CAR
    depth[16:64, 64:112] = D_PERSON
    depth[::5] = 0.0  # sparse: every fifth row unknown
    return InstanceTarget(semantic=semantic, instance=instance, depth=depth)


def _void() -> InstanceTarget:
    return InstanceTarget(
        semantic=torch.full((64, 128), 255, dtype=torch.int64), instance=torch.zeros((64, 128), dtype=torch.int64)
    )


def _random_head(batch: int, seed: int = 0) -> HeadOutputs:
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).requires_grad_(True)

    return HeadOutputs(
        center_logits=[rnd(batch, 8, h, w) for h, w in LEVELS],
        region_logits=[rnd(batch, 19, h, w) for h, w in LEVELS],
        kernel_features=[rnd(batch, C_KERNEL, h, w) for h, w in LEVELS],
        mask_embedding=rnd(batch, E_DIM, *EMBED),
        depth_kernel_params=[rnd(batch, 2 + KD, h, w) for h, w in LEVELS],
        depth_embedding=rnd(batch, KD, *EMBED),
    )


def _projections(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    w_thing = torch.randn(C_KERNEL, E_DIM, generator=gen)
    w_stuff = torch.randn(C_KERNEL, E_DIM, generator=gen)
    return (lambda k: k @ w_thing), (lambda k: k @ w_stuff)


def _targets(images: list[InstanceTarget], cfg) -> TargetSet:
    return build_targets(images, (64, 128), LEVELS, EMBED, cfg)


def _all_leaves(head: HeadOutputs) -> list[torch.Tensor]:
    return [
        *head.center_logits,
        *head.region_logits,
        *head.kernel_features,
        head.mask_embedding,
        *head.depth_kernel_params,
        head.depth_embedding,
    ]


# ------------------------------------------------------------------------------------------------ end to end
def test_losses_are_finite_weighted_and_backprop_for_a_batch_with_an_empty_image() -> None:
    cfg = _cfg()
    head = _random_head(2)
    losses = compute_losses(head, _targets([_scene(), _void()], cfg), *_projections(), cfg)
    assert set(losses) == {"loss_pos_th", "loss_pos_st", "loss_seg_th", "loss_seg_st", "loss_depth", "loss_depth_ins"}
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), name
        assert value.item() > 0, name
    sum(losses.values()).backward()
    for tensor in _all_leaves(head):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all()
    # gradients reach the kernel features on the levels holding things, the embeddings and the depth kernels
    assert head.kernel_features[0].grad[0].abs().sum() > 0
    assert head.kernel_features[1].grad[0].abs().sum() > 0
    assert head.mask_embedding.grad[0].abs().sum() > 0
    assert head.depth_kernel_params[0].grad[0].abs().sum() > 0
    assert head.depth_embedding.grad[0].abs().sum() > 0
    assert head.center_logits[0].grad[0].abs().sum() > 0
    # nothing in the empty image is a thing or stuff: its kernels get no mask gradient
    assert head.kernel_features[0].grad[1].abs().sum() == 0
    assert head.mask_embedding.grad[1].abs().sum() == 0


def test_all_empty_batch_gives_zero_losses_connected_to_the_graph() -> None:
    cfg = _cfg()
    head = _random_head(2)
    losses = compute_losses(head, _targets([_void(), _void()], cfg), *_projections(), cfg)
    for name in ("loss_seg_th", "loss_seg_st", "loss_depth", "loss_depth_ins"):
        assert losses[name].item() == 0.0, name
        assert losses[name].requires_grad, name
    assert torch.isfinite(losses["loss_pos_th"]) and losses["loss_pos_th"] > 0  # negatives still supervised
    sum(losses.values()).backward()
    assert head.mask_embedding.grad is not None and head.depth_embedding.grad is not None


def test_loss_weights_come_from_the_config() -> None:
    cfg = _cfg()
    targets = _targets([_scene()], cfg)
    base = compute_losses(_random_head(1), targets, *_projections(), cfg)
    cfg.MODEL.LOSS_WEIGHT.SEGMENT = 8.0
    cfg.MODEL.LOSS_WEIGHT.POSITION_STUFF = 3.0
    cfg.MODEL.DEPTH_HEAD.FACTOR = 1.0
    cfg.MODEL.DEPTH_HEAD.FACTOR_INS = 2.0
    scaled = compute_losses(_random_head(1), targets, *_projections(), cfg)
    assert scaled["loss_seg_th"].item() == pytest.approx(2 * base["loss_seg_th"].item(), rel=1e-5)
    assert scaled["loss_seg_st"].item() == pytest.approx(2 * base["loss_seg_st"].item(), rel=1e-5)
    assert scaled["loss_pos_st"].item() == pytest.approx(3 * base["loss_pos_st"].item(), rel=1e-5)
    assert scaled["loss_pos_th"].item() == pytest.approx(base["loss_pos_th"].item(), rel=1e-5)
    assert scaled["loss_depth"].item() == pytest.approx(base["loss_depth"].item() / 5, rel=1e-5)
    assert scaled["loss_depth_ins"].item() == pytest.approx(base["loss_depth_ins"].item() * 2 / 5, rel=1e-5)
    cfg.MODEL.DEPTH_ON = False
    assert "loss_depth" not in compute_losses(_random_head(1), targets, *_projections(), cfg)


def test_duplicating_the_batch_leaves_every_loss_unchanged() -> None:
    cfg = _cfg()
    single = _random_head(1)
    double = HeadOutputs(
        *[[t.detach().repeat(2, 1, 1, 1) for t in field] for field in (single.center_logits, single.region_logits)],
        kernel_features=[t.detach().repeat(2, 1, 1, 1) for t in single.kernel_features],
        mask_embedding=single.mask_embedding.detach().repeat(2, 1, 1, 1),
        depth_kernel_params=[t.detach().repeat(2, 1, 1, 1) for t in single.depth_kernel_params],
        depth_embedding=single.depth_embedding.detach().repeat(2, 1, 1, 1),
    )
    one = compute_losses(single, _targets([_scene()], cfg), *_projections(), cfg)
    two = compute_losses(double, _targets([_scene(), _scene()], cfg), *_projections(), cfg)
    for name in one:
        assert two[name].item() == pytest.approx(one[name].item(), rel=1e-4), name


def test_an_empty_image_does_not_dilute_the_mask_and_depth_losses() -> None:
    cfg = _cfg()
    pair = _random_head(2)
    first = HeadOutputs(
        center_logits=[t.detach()[:1] for t in pair.center_logits],
        region_logits=[t.detach()[:1] for t in pair.region_logits],
        kernel_features=[t.detach()[:1] for t in pair.kernel_features],
        mask_embedding=pair.mask_embedding.detach()[:1],
        depth_kernel_params=[t.detach()[:1] for t in pair.depth_kernel_params],
        depth_embedding=pair.depth_embedding.detach()[:1],
    )
    alone = compute_losses(first, _targets([_scene()], cfg), *_projections(), cfg)
    with_empty = compute_losses(pair, _targets([_scene(), _void()], cfg), *_projections(), cfg)
    for name in ("loss_seg_th", "loss_seg_st", "loss_depth", "loss_depth_ins"):
        assert with_empty[name].item() == pytest.approx(alone[name].item(), rel=1e-4), name


def _perfect_depth_head(car: float = D_CAR, person: float = D_PERSON) -> HeadOutputs:
    """Depth kernels whose maps are constant = the ground truth: mean logit per segment, zero kernel weights; the
    region head names each cell's class (so the stuff kernels post-processing would build are right too)."""
    head = _random_head(1)

    def logit(metres: float) -> float:
        return math.log(metres / (44.0 - metres))

    params, regions = [], []
    semantic = _scene().semantic
    for level, (h, w) in enumerate(LEVELS):
        p = torch.zeros(1, 2 + KD, h, w)
        p[:, 0] = logit(D_ROAD)
        stride = 64 // h
        if level == 0:  # the car lives on level 0 only
            p[:, 0, 32 // stride : 48 // stride, 16 // stride : 48 // stride] = logit(car)
        if level in (0, 1):  # the person on levels 0 and 1
            p[:, 0, 16 // stride : 64 // stride, 64 // stride : 112 // stride] = logit(person)
        params.append(p.requires_grad_(True))
        centre_class = semantic[stride // 2 :: stride, (128 // w) // 2 :: 128 // w][:h, :w]  # (h, w)
        regions.append((torch.nn.functional.one_hot(centre_class, 19).permute(2, 0, 1)[None] * 20.0 - 10.0)
                       .requires_grad_(True))
    head.depth_kernel_params = params
    head.region_logits = regions
    return head


def test_perfect_depth_kernels_give_zero_depth_losses_and_wrong_ones_do_not() -> None:
    cfg = _cfg()
    targets = _targets([_scene()], cfg)
    perfect = compute_losses(_perfect_depth_head(), targets, *_projections(), cfg)
    assert perfect["loss_depth"].item() < 1e-4
    assert perfect["loss_depth_ins"].item() < 1e-4
    off = compute_losses(_perfect_depth_head(person=35.0), targets, *_projections(), cfg)
    assert off["loss_depth"].item() > 1.0 and off["loss_depth_ins"].item() > 1.0
    swapped = compute_losses(_perfect_depth_head(car=D_PERSON, person=D_CAR), targets, *_projections(), cfg)
    assert swapped["loss_depth_ins"].item() > 5.0  # measured 14.2; a wrong ordering costs most


def test_the_stuff_depth_kernel_post_processing_builds_is_supervised() -> None:
    """The car's cells of level 0 given to the road by the region head: every level's road kernel over its
    ground-truth region is still right (the released loss is 0), but the road kernel inference builds averages
    the car's depth kernels in, and that is what gets supervised."""
    cfg = _cfg()
    targets = _targets([_scene()], cfg)
    assert compute_losses(_perfect_depth_head(), targets, *_projections(), cfg)["loss_depth"].item() < 1e-4
    head = _perfect_depth_head()
    with torch.no_grad():
        head.region_logits[0][0, :, 4:6, 2:6] = -10.0
        head.region_logits[0][0, ROAD, 4:6, 2:6] = 10.0
    losses = compute_losses(head, targets, *_projections(), cfg)
    assert losses["loss_depth"].item() > 0.01
    losses["loss_depth"].backward()
    grad = head.depth_kernel_params[0].grad[0, 0]  # mean logits of level 0
    assert grad[4, 2] < 0  # descent raises the car cells' mean logits, towards the road's 30 m
    assert grad[0, 0] < 0  # and the road cells' (the averaged kernel is too near)
    assert grad[2, 8] == 0  # the person's cells are not in the road's region


def test_things_without_valid_depth_add_no_depth_loss() -> None:
    cfg = _cfg()
    scene = _scene()
    scene.depth[16:64, 64:112] = 0.0  # the person has no depth at all
    targets = _targets([scene], cfg)
    assert targets.levels[0].thing_mean_depth[0, 1] == 0.0
    # a wildly wrong person depth costs nothing, the car still counts
    wrong_person = compute_losses(_perfect_depth_head(person=40.0), targets, *_projections(), cfg)
    assert wrong_person["loss_depth"].item() < 1e-4 and wrong_person["loss_depth_ins"].item() < 1e-4
    wrong_car = compute_losses(_perfect_depth_head(car=40.0), targets, *_projections(), cfg)
    assert wrong_car["loss_depth_ins"].item() > 0.1


def test_perfect_masks_give_near_zero_segmentation_loss() -> None:
    """Kernels equal to one-hot codes of their segment over an embedding that spells the masks out."""
    cfg = _cfg(depth_on=False)
    targets = _targets([_scene()], cfg)
    head = _random_head(1)
    # embedding channel 0: road, 1: car, 2: person; 30 inside the segment, -30 outside
    semantic4 = _scene().semantic[::4, ::4]
    embedding = torch.zeros(1, E_DIM, *EMBED)
    for channel, cls in enumerate((ROAD, CAR, PERSON)):
        embedding[0, channel] = torch.where(semantic4 == cls, 30.0, -30.0)
    head.mask_embedding = embedding.requires_grad_(True)
    # kernel features: channel c = 1 at the cells of segment c on every level (level masks are exact)
    features = []
    for h, w in LEVELS:
        stride = 64 // h
        f = torch.zeros(1, C_KERNEL, h, w)
        f[0, 0] = 1.0
        f[0, 0, 32 // stride : 48 // stride, 16 // stride : 48 // stride] = 0.0
        f[0, 1, 32 // stride : 48 // stride, 16 // stride : 48 // stride] = 1.0
        f[0, 0, 16 // stride : 64 // stride, 64 // stride : 112 // stride] = 0.0
        f[0, 2, 16 // stride : 64 // stride, 64 // stride : 112 // stride] = 1.0
        features.append(f.requires_grad_(True))
    head.kernel_features = features
    select = torch.zeros(C_KERNEL, E_DIM)
    select[0, 0] = select[1, 1] = select[2, 2] = 1.0
    losses = compute_losses(head, targets, lambda k: k @ select, lambda k: k @ select, cfg)
    assert losses["loss_seg_th"].item() < 1e-3
    # stuff covers all classes; on levels 2..4 some region means mix classes, so only a bound here (measured 0.92)
    assert losses["loss_seg_st"].item() < 1.0
    shuffled = torch.zeros(C_KERNEL, E_DIM)
    shuffled[0, 1] = shuffled[1, 2] = shuffled[2, 0] = 1.0  # every kernel paints another segment
    wrong = compute_losses(head, targets, lambda k: k @ shuffled, lambda k: k @ shuffled, cfg)
    assert wrong["loss_seg_th"].item() > 0.5 * cfg.MODEL.LOSS_WEIGHT.SEGMENT
    assert wrong["loss_seg_st"].item() > 3 * losses["loss_seg_st"].item()  # measured 3.69


def test_depth_on_without_depth_outputs_is_an_error() -> None:
    cfg = _cfg()
    head = _random_head(1)
    head.depth_kernel_params = None
    with pytest.raises(ValueError, match="DEPTH_ON"):
        compute_losses(head, _targets([_scene()], cfg), *_projections(), cfg)
