"""Colour images: shapes, void black, deterministic per-instance colours, overlays and depth colours."""

from __future__ import annotations

import numpy as np
import pytest

from panopticdepth_core.data.classes import CITYSCAPES_CLASSES
from panopticdepth_core.inference.visualize import (
    BOUNDARY_COLOR,
    INSTANCE_JITTER,
    _colors_for,
    class_color_table,
    colorize_depth,
    colorize_panoptic,
    overlay,
)

CAR, ROAD, VOID = 13, 0, 255


def maps() -> tuple[np.ndarray, np.ndarray]:
    semantic = np.array([[ROAD, ROAD, CAR, CAR], [VOID, CAR, CAR, 300]], np.int32)
    instance = np.array([[0, 0, 1, 1], [0, 2, 2, 0]], np.int32)
    return semantic, instance


def test_panoptic_colours():
    semantic, instance = maps()
    image = colorize_panoptic(semantic, instance)
    assert image.shape == (2, 4, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == list(CITYSCAPES_CLASSES[ROAD].color)  # stuff: exact class colour
    assert image[1, 0].tolist() == [0, 0, 0] and image[1, 3].tolist() == [0, 0, 0]  # void, unknown id
    car = np.array(CITYSCAPES_CLASSES[CAR].color)
    assert np.all(np.abs(image[0, 2].astype(int) - car) <= INSTANCE_JITTER)
    assert image[0, 2].tolist() == image[0, 3].tolist()  # one instance, one colour
    assert image[0, 2].tolist() != image[1, 2].tolist()  # two instances, two colours


def test_instance_colours_are_deterministic_and_position_free():
    semantic, instance = maps()
    first = colorize_panoptic(semantic, instance)
    moved = colorize_panoptic(np.fliplr(semantic), np.fliplr(instance))
    assert np.array_equal(first, np.fliplr(moved))
    # Large ids take the slow path; it must agree with the lookup table for small ids.
    colors, is_thing = class_color_table()
    ids = np.arange(1, 50)
    slow = _colors_for(np.full(ids.shape, CAR), ids, colors, is_thing)
    fast = colorize_panoptic(np.full((1, ids.size), CAR), ids[None, :])[0]
    assert np.array_equal(slow, fast)
    assert len({tuple(c) for c in fast.tolist()}) > 40  # instances are told apart
    big = colorize_panoptic(np.full((1, 2), CAR), np.array([[5000, 5000]]))
    assert big.shape == (1, 2, 3) and big[0, 0].tolist() == big[0, 1].tolist()


def test_overlay_blends_labelled_pixels_only():
    semantic, instance = maps()
    color = colorize_panoptic(semantic, instance)
    image = np.full((2, 4, 3), 200, np.uint8)
    plain = overlay(image, color, alpha=0.5, boundaries=False)
    assert plain[1, 0].tolist() == [200, 200, 200]  # void keeps the camera image
    assert plain[0, 0].tolist() == [round((200 + c) / 2) for c in CITYSCAPES_CLASSES[ROAD].color]
    assert np.array_equal(overlay(image, color, alpha=1.0, boundaries=False)[0, 0], color[0, 0])
    edged = overlay(image, color, labels=semantic * 1000 + instance)
    assert edged[0, 1].tolist() == list(BOUNDARY_COLOR)  # road | car boundary
    assert edged[0, 2].tolist() == list(BOUNDARY_COLOR)  # car 1 above car 2: same colour class, other segment
    assert edged[1, 1].tolist() == plain[1, 1].tolist()  # right and lower neighbours in the same segment
    with pytest.raises(ValueError):
        overlay(image, color[:1])


def test_depth_colours():
    depth = np.array([[0.0, 1.0, 40.0, 80.0, 500.0, np.nan]], np.float32)
    image = colorize_depth(depth, max_depth=80.0)
    assert image.shape == (1, 6, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [0, 0, 0] and image[0, 5].tolist() == [0, 0, 0]  # invalid
    assert image[0, 3].tolist() == image[0, 4].tolist()  # beyond max_depth: the far colour
    near, middle, far = (image[0, i].astype(int) for i in (1, 2, 3))
    assert near[0] > near[2] and far[2] > far[0]  # near reddish, far bluish
    assert len({tuple(near), tuple(middle), tuple(far)}) == 3
    with pytest.raises(ValueError):
        colorize_depth(depth, max_depth=0.0)


def test_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    semantic, instance = maps()
    expected = colorize_panoptic(semantic, instance)
    assert np.array_equal(colorize_panoptic(torch.from_numpy(semantic), torch.from_numpy(instance)), expected)
    depth = torch.tensor([[0.0, 5.0]])
    assert np.array_equal(colorize_depth(depth), colorize_depth(depth.numpy()))


@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.3, 0.5, 0.75, 0.999, 1.0])
def test_overlay_equals_the_fixed_point_blend_for_every_alpha(alpha: float):
    """The blend gives ``(image * (256 - w) + colour * w + 128) >> 8``
    on labelled pixels, the camera image on void, white on boundaries: every byte value pair is tried."""
    rng = np.random.default_rng(4)
    values = np.arange(256, dtype=np.uint8)
    image = np.stack(np.meshgrid(values, values), -1).reshape(256, 256, 2)[..., [0, 1, 0]].copy()  # all pairs
    color = np.ascontiguousarray(image[..., ::-1])
    color[rng.random((256, 256)) < 0.2] = 0  # void pixels
    labels = rng.integers(0, 3, (256, 256))
    weight = round(alpha * 256)
    expected = ((image.astype(np.int64) * (256 - weight) + color.astype(np.int64) * weight + 128) >> 8)
    expected = np.where((color == 0).all(axis=2, keepdims=True), image, expected).astype(np.uint8)
    assert np.array_equal(overlay(image, color, alpha, boundaries=False), expected)
    edges = np.zeros(labels.shape, bool)
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edges[:-1] |= labels[:-1] != labels[1:]
    expected[edges] = BOUNDARY_COLOR
    assert np.array_equal(overlay(image, color, alpha, labels=labels), expected)


def test_panoptic_colours_fast_path_equals_the_per_pixel_rule():
    """The packed lookup (in-range ids), the int64 lookup (out-of-range classes) and the per-pixel path (instance
    ids >= 1024) all give ``_colors_for`` of (class clipped to void, instance clipped at 0)."""
    rng = np.random.default_rng(5)
    colors, is_thing = class_color_table()
    for low, high, top in ((0, 19, 30), (-5, 300, 30), (0, 256, 1023), (0, 19, 5000)):
        semantic = rng.integers(low, high, (31, 17)).astype(np.int32)
        instance = rng.integers(-2, top, (31, 17)).astype(np.int32)
        sem = np.where((semantic >= 0) & (semantic < 256), semantic, 255).reshape(-1)
        expected = _colors_for(sem, np.maximum(instance, 0).reshape(-1), colors, is_thing).reshape(31, 17, 3)
        assert np.array_equal(colorize_panoptic(semantic, instance), expected), (low, high, top)
