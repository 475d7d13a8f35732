"""Transforms keep labels, depth and intrinsics consistent with the image through resize, crop, pad and flip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from panopticdepth_core.config import get_default_config
from panopticdepth_core.data.sample import Sample
from panopticdepth_core.data.transforms import (
    IMAGE_PAD_VALUE,
    ColorAugSSD,
    RandomCrop,
    RandomHorizontalFlip,
    ResizeShortestEdge,
    SampleTransform,
    build_test_transform,
    build_train_transform,
    resize_frame,
)

H, W = 32, 48
K = np.array([[40.0, 0.0, 20.5], [0.0, 41.0, 14.25], [0.0, 0.0, 1.0]])


def make_sample(h: int = H, w: int = W) -> Sample:
    rng = np.random.default_rng(0)
    semantic = np.zeros((h, w), np.int32)
    semantic[: h // 4] = 10
    semantic[h // 2:, : w // 3] = 13
    semantic[-2:] = 255
    instance = np.zeros((h, w), np.int32)
    instance[h // 2:-2, : w // 6] = 1
    instance[h // 2:-2, w // 6: w // 3] = 2
    depth = rng.uniform(1.0, 60.0, (h, w)).astype(np.float32)
    depth[::5] = 0.0
    return Sample(image=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), semantic=semantic, instance=instance,
                  depth=depth, intrinsics=K.copy(), name="f")


def run(steps, sample: Sample | None = None, seed: int = 0, depth_bound: bool = True, focal_canonical: float = 0.0):
    torch.manual_seed(seed)
    return SampleTransform(steps, depth_bound=depth_bound, focal_canonical=focal_canonical)(sample or make_sample())


def test_resize_scales_depth_by_inverse_factor_and_labels_stay_nearest():
    s = make_sample()
    ex = run([lambda f: resize_frame(f, 2 * H, 2 * W)], s, depth_bound=False)
    assert ex.image.shape == (3, 2 * H, 2 * W) and ex.image.dtype == torch.uint8
    t = ex.target
    assert t.semantic.dtype == torch.int64 and t.instance.dtype == torch.int64 and t.depth.dtype == torch.float32
    # nearest: every output pixel is a source pixel, depth halved (objects twice as large look twice as close)
    np.testing.assert_allclose(t.depth[::2, ::2].numpy(), s.depth / 2, rtol=1e-6)
    np.testing.assert_array_equal(t.semantic[::2, ::2].numpy(), s.semantic)
    assert set(t.semantic.unique().tolist()) <= set(np.unique(s.semantic).tolist())
    assert set(t.instance.unique().tolist()) <= set(np.unique(s.instance).tolist())
    assert (t.depth[::2][::5] == 0).all()  # invalid stays invalid
    np.testing.assert_allclose(ex.intrinsics[0, 0].item(), 80.0)
    # down by 1/3: no new label values either, depth x3 (no bound)
    small = run([lambda f: resize_frame(f, H // 2, W // 3)], s, depth_bound=False)
    assert set(small.target.semantic.unique().tolist()) <= set(np.unique(s.semantic).tolist())
    valid = small.target.depth > 0
    assert small.target.depth[valid].max() > s.depth.max() * 2


def test_depth_bound_clips_to_frame_max():
    s = make_sample()
    ex = run([lambda f: resize_frame(f, H // 2, W // 2)], s, depth_bound=True)
    assert ex.target.depth.max().item() == pytest.approx(float(s.depth.max()))
    assert (ex.target.depth > 0).any()


def test_intrinsics_follow_resize_and_crop_projection():
    """A 3D point that lands on pixel (u, v) lands where that pixel went, under the new K."""
    s = make_sample()
    u, v = 30, 20
    point = np.linalg.inv(K) @ np.array([u, v, 1.0]) * 7.0  # 7 m along that pixel's ray
    s.semantic[v, u] = 5  # unique marker
    s.instance[:] = 0
    s.instance[v, u] = 9  # the only instance: an instance-aware crop must keep it
    ex = run([lambda f: resize_frame(f, 2 * H, 2 * W), RandomCrop("absolute", (24, 30), instance_aware=True)], s)
    assert tuple(ex.image.shape[-2:]) == (24, 30)
    ys, xs = np.nonzero(ex.target.semantic.numpy() == 5)
    proj = ex.intrinsics.numpy() @ point
    u2, v2 = proj[:2] / proj[2]
    assert xs.min() - 0.5 <= u2 <= xs.max() + 0.5 and ys.min() - 0.5 <= v2 <= ys.max() + 0.5


def test_crop_with_pad_fills_void_zero_and_grey():
    s = make_sample()
    ex = run([RandomCrop("absolute", (H + 8, W + 10), pad_to_size=True)], s)
    assert ex.image.shape == (3, H + 8, W + 10)
    t = ex.target
    # centred padding: 4 rows on top, 5 columns on the left
    assert (t.semantic[:4] == 255).all() and (t.semantic[:, :5] == 255).all() and (t.semantic[-4:] == 255).all()
    assert (t.instance[:4] == 0).all() and (t.depth[:, -5:] == 0).all()
    assert (ex.image[:, :4] == IMAGE_PAD_VALUE).all()
    np.testing.assert_array_equal(t.semantic[4:-4, 5:-5].numpy(), s.semantic)
    np.testing.assert_allclose(ex.intrinsics[:2, 2].numpy(), K[:2, 2] + [5, 4])


def test_flip_mirrors_labels_and_cx():
    s = make_sample()
    ex = run([RandomHorizontalFlip(prob=1.0)], s)
    np.testing.assert_array_equal(ex.target.semantic.numpy(), s.semantic[:, ::-1])
    np.testing.assert_array_equal(ex.image.permute(1, 2, 0).numpy(), s.image[:, ::-1])
    assert ex.intrinsics[0, 2].item() == pytest.approx(W - 1 - K[0, 2])
    assert ex.intrinsics[0, 0].item() == K[0, 0] and ex.intrinsics[1, 2].item() == K[1, 2]


def test_instance_aware_crop_keeps_whole_instance():
    h, w = 120, 200
    s = make_sample(h, w)
    s.instance[:] = 0
    s.instance[100:110, 180:190] = 4  # one small instance near a corner
    whole_plain = whole_aware = 0
    for seed in range(40):
        aware = run([RandomCrop("absolute", (50, 60), instance_aware=True)], s, seed)
        plain = run([RandomCrop("absolute", (50, 60), instance_aware=False)], s, seed)
        whole_aware += int((aware.target.instance == 4).sum()) == 100
        whole_plain += int((plain.target.instance == 4).sum()) == 100
    assert whole_aware == 40
    assert whole_plain < 20
    # an instance larger than the crop: the crop holds its centre
    s.instance[:] = 0
    s.instance[10:110, 20:180] = 1
    for seed in range(10):
        ex = run([RandomCrop("absolute", (30, 40), instance_aware=True)], s, seed)
        assert (ex.target.instance == 1).any()


def test_color_aug_changes_only_the_image_and_is_seeded():
    s = make_sample()
    a = run([ColorAugSSD()], s, seed=5)
    b = run([ColorAugSSD()], s, seed=5)
    changed = [not torch.equal(run([ColorAugSSD()], s, seed=k).image, torch.from_numpy(s.image).permute(2, 0, 1))
               for k in range(8)]
    assert torch.equal(a.image, b.image) and a.image.dtype == torch.uint8
    assert any(changed)
    np.testing.assert_array_equal(a.target.semantic.numpy(), s.semantic)
    np.testing.assert_array_equal(a.target.depth.numpy(), s.depth)


def test_train_transform_from_cfg_is_deterministic_and_multiscale():
    cfg = get_default_config()
    cfg.INPUT.MIN_SIZE_TRAIN = (16, 24, 48)
    cfg.INPUT.MAX_SIZE_TRAIN = 4096
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.SIZE = (16, 24)
    cfg.INPUT.CROP.INSTANCE_AWARE = True
    transform = build_train_transform(cfg)
    s = make_sample()
    a = [run(transform.steps, s, seed=k) for k in range(6)]
    b = [run(transform.steps, s, seed=k) for k in range(6)]
    for x, y in zip(a, b):
        assert torch.equal(x.image, y.image) and torch.equal(x.target.depth, y.target.depth)
        assert torch.equal(x.intrinsics, y.intrinsics)
        assert x.image.shape == (3, 16, 24) and x.orig_size == (H, W)
    assert len({float(x.intrinsics[0, 0]) for x in a}) > 1  # several scales drawn


def test_dps_rescale_crop_gives_fixed_size():
    cfg = get_default_config()
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.SIZE = (H, W)
    cfg.INPUT.CROP.RESCALE = (0.8, 1.2)
    transform = build_train_transform(cfg)
    for k in range(5):
        ex = run(transform.steps, seed=k)
        assert ex.image.shape == (3, H, W) and ex.target.depth.shape == (H, W)


def test_shortest_edge_range_and_test_transform():
    step = ResizeShortestEdge([16, 20], 4096, "range")
    sizes = {run([step], seed=k).image.shape[-2] for k in range(20)}
    assert sizes <= set(range(16, 21)) and len(sizes) > 1
    cfg = get_default_config()
    cfg.INPUT.MIN_SIZE_TEST = 16
    cfg.INPUT.MAX_SIZE_TEST = 20  # long side capped: 32x48 -> 13x20 (Detectron2 rounding)
    ex = build_test_transform(cfg)(make_sample())
    assert tuple(ex.image.shape[-2:]) == (13, 20) and ex.target.semantic.shape == (13, 20)
    with pytest.raises(ValueError, match="MIN_SIZE_TRAIN_SAMPLING"):
        ResizeShortestEdge([16], 100, "uniform")
