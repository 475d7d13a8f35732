"""Colour images for people: panoptic colours, overlays on the camera image, and colour-mapped depth.

All functions are vectorised numpy with lookup tables, fast enough for every frame of the ROS node and
`panopticdepth predict` (about 20-40 ms each for 1024x2048 on one core). They accept numpy arrays or CPU/GPU
tensors and return numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from ..data.classes import CITYSCAPES_CLASSES, LABEL_DIVISOR, ClassInfo

#: Largest per-channel change of a thing instance's colour from its class colour.
INSTANCE_JITTER = 48
BOUNDARY_COLOR = (255, 255, 255)

# A compact approximation of the "turbo" colormap (Mikhailov 2019): control points at t = 0, 0.1, ..., 1,
# linearly interpolated into a 256-entry table. Dark blue-purple = far, dark red = near.
_TURBO_POINTS = np.array([
    (48, 18, 59), (68, 96, 212), (50, 158, 249), (26, 214, 203), (70, 247, 132), (164, 252, 60),
    (225, 221, 55), (254, 166, 46), (242, 96, 21), (196, 38, 3), (122, 4, 3),
], dtype=np.float64)


def _turbo_table() -> np.ndarray:
    positions = np.linspace(0.0, 1.0, len(_TURBO_POINTS))
    t = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(t, positions, _TURBO_POINTS[:, c]) for c in range(3)], axis=1)
    return np.round(table).astype(np.uint8)  # (256, 3)


DEPTH_COLORMAP: np.ndarray = _turbo_table()


def _as_numpy(array) -> np.ndarray:
    """numpy arrays pass through; torch tensors (any device) are copied to the CPU (no torch import needed)."""
    if hasattr(array, "detach"):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def class_color_table(classes: Sequence[ClassInfo] = CITYSCAPES_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """(256, 3) uint8 colour per class id (void and unknown ids black) and (256,) bool thing flags."""
    colors = np.zeros((256, 3), dtype=np.uint8)
    is_thing = np.zeros(256, dtype=bool)
    for info in classes:
        colors[info.train_id] = info.color
        is_thing[info.train_id] = info.is_thing
    return colors, is_thing


def _hash32(values: np.ndarray) -> np.ndarray:
    """A fixed integer mix (splitmix-style) so an instance id always gets the same jitter, on every machine."""
    x = values.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(29)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(32)
    return x


#: Instance ids below this share one lookup table with the class ids (larger ids take a slower path).
_LUT_INSTANCES = 1024


@lru_cache(maxsize=4)
def _panoptic_lut(classes: tuple[ClassInfo, ...]) -> np.ndarray:
    """(256 * _LUT_INSTANCES,) uint32 colour of every (class, instance) code class * _LUT_INSTANCES + instance,
    as the little-endian bytes R, G, B, 0 (one 4-byte gather per pixel; the fourth byte is dropped after)."""
    colors, is_thing = class_color_table(classes)
    codes = np.arange(256 * _LUT_INSTANCES, dtype=np.int64)
    semantic, instance = codes // _LUT_INSTANCES, codes % _LUT_INSTANCES
    rgb = _colors_for(semantic, instance, colors, is_thing)  # (codes, 3)
    rgba = np.zeros((rgb.shape[0], 4), np.uint8)
    rgba[:, :3] = rgb
    table = rgba.view("<u4").reshape(-1)
    table.flags.writeable = False
    return table


def _colors_for(semantic: np.ndarray, instance: np.ndarray, colors: np.ndarray, is_thing: np.ndarray) -> np.ndarray:
    """(P,) in-range class ids and instance ids -> (P, 3) uint8 colours (things jittered per instance)."""
    out = colors[semantic]  # (P, 3)
    jittered = is_thing[semantic] & (instance > 0)
    if jittered.any():
        thing_class = semantic[jittered]
        bits = _hash32(thing_class * LABEL_DIVISOR + instance[jittered])  # (J,)
        shifted = colors[thing_class].astype(np.int16)  # (J, 3)
        for channel in range(3):
            offset = ((bits >> np.uint64(8 * channel)) & np.uint64(0xFF)).astype(np.int16)
            shifted[:, channel] += offset * (2 * INSTANCE_JITTER) // 255 - INSTANCE_JITTER
        out[jittered] = np.clip(shifted, 0, 255).astype(np.uint8)
    return out


def colorize_panoptic(semantic: np.ndarray, instance: np.ndarray,
                      classes: Sequence[ClassInfo] = CITYSCAPES_CLASSES) -> np.ndarray:
    """(H, W) class and instance maps -> (H, W, 3) uint8: class colour, things shifted per instance, void black.

    The shift depends only on (class, instance), so a tracked instance keeps its colour across frames.
    """
    semantic = _as_numpy(semantic)
    instance = _as_numpy(instance)
    if semantic.shape != instance.shape or semantic.ndim != 2:
        raise ValueError(f"semantic {semantic.shape} and instance {instance.shape} must be the same (H, W) shape")
    if semantic.size == 0:
        return np.zeros((*semantic.shape, 3), np.uint8)
    integers = semantic.dtype.kind in "iub" and instance.dtype.kind in "iub"  # shifts and ors need integers
    sem_in_range = semantic.min() >= 0 and semantic.max() < 256
    if integers and sem_in_range and instance.max() < _LUT_INSTANCES:
        # codes = class * 1024 + max(instance, 0) (two in-place passes), then one 4-byte table gather; the codes
        # are built as intp because take() converts any other index type first (int32 codes: 2.5x slower)
        codes = np.left_shift(semantic, 10, dtype=np.intp)
        np.bitwise_or(codes, np.maximum(instance, 0) if instance.min() < 0 else instance, out=codes,
                      casting="unsafe")
        rgba = _panoptic_lut(tuple(classes)).take(codes).view(np.uint8).reshape(*semantic.shape, 4)
        return _rgba_to_rgb(rgba)
    sem = semantic.astype(np.int64)
    if not sem_in_range:
        sem = np.where((sem >= 0) & (sem < 256), sem, 255)  # out-of-range ids draw as void
    inst = np.maximum(instance.astype(np.int64), 0)
    if inst.max() < _LUT_INSTANCES:
        return _rgba_to_rgb(_panoptic_lut(tuple(classes)).take(sem * _LUT_INSTANCES + inst).view(np.uint8)
                            .reshape(*sem.shape, 4))
    colors, is_thing = class_color_table(classes)
    return _colors_for(sem.reshape(-1), inst.reshape(-1), colors, is_thing).reshape(*sem.shape, 3)


def _rgba_to_rgb(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) -> contiguous (H, W, 3): OpenCV's SIMD channel drop, several times numpy's strided copy."""
    import cv2  # a dependency; imported on first use so that importing this module stays light

    if rgba.shape[0] * rgba.shape[1] == 0 or rgba.shape[1] > 2**31 - 1:
        return np.ascontiguousarray(rgba[..., :3])
    return cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)


def segment_boundaries(labels: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose right or lower neighbour has a different label (labels (H, W) or (H, W, C))."""
    labels = _as_numpy(labels)
    if labels.ndim == 3:  # colours: pack channels into one integer per pixel
        labels = labels.astype(np.int64) @ (256 ** np.arange(labels.shape[2], dtype=np.int64))
    edges = np.empty(labels.shape[:2], dtype=bool)
    np.not_equal(labels[:, :-1], labels[:, 1:], out=edges[:, :-1])  # right neighbour, written in place
    edges[:, -1:] = False
    edges[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edges


def overlay(image_rgb: np.ndarray, color: np.ndarray, alpha: float = 0.5, boundaries: bool = True,
            labels: np.ndarray | None = None) -> np.ndarray:
    """Blend a colour label image onto the camera image; black (void) pixels keep the camera image.

    Boundaries are drawn in white between differently coloured segments, or between different ``labels`` (e.g.
    panoptic ids) when given, which is exact even if two segments happen to share a colour.
    """
    image = np.ascontiguousarray(_as_numpy(image_rgb), dtype=np.uint8)
    color = np.ascontiguousarray(_as_numpy(color), dtype=np.uint8)
    if image.shape != color.shape or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image {image.shape} and colour {color.shape} must both be (H, W, 3)")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if image.size == 0:
        return image.copy()
    import cv2  # a dependency; imported on first use so that importing this module stays light

    # (image * (256 - w) + color * w + 128) >> 8 with w = round(alpha * 256), in one SIMD pass: OpenCV blends in
    # float, where every term here is exact (8-bit values times multiples of 1/256), and rounds to nearest; the
    # offset 1/512 (instead of 128/256) turns that rounding into the shift's floor without ever meeting a tie.
    weight = int(round(alpha * 256))
    out = cv2.addWeighted(image, (256 - weight) / 256, color, weight / 256, 1 / 512)
    # Void (black) pixels keep the camera image: inRange marks them, a masked copy of whole pixels restores them
    # (numpy's copyto(where=mask[..., None]) broadcast over the channels is ~100x slower).
    void = cv2.inRange(color, (0, 0, 0), (0, 0, 0))  # (H, W) uint8, 255 on black
    cv2.copyTo(image, void, out)
    if boundaries:
        edges = segment_boundaries(color if labels is None else labels)
        out.reshape(-1, 3)[np.flatnonzero(edges)] = BOUNDARY_COLOR
    return out


def colorize_depth(depth: np.ndarray, max_depth: float = 80.0, min_depth: float = 0.0) -> np.ndarray:
    """(H, W) metres -> (H, W, 3) uint8 turbo colours, near red to far blue; invalid (<= 0 or not finite) black.

    Depths beyond max_depth take the far colour; the scale is linear in depth between min_depth and max_depth.
    """
    if not max_depth > min_depth:
        raise ValueError(f"max_depth ({max_depth}) must exceed min_depth ({min_depth})")
    depth = _as_numpy(depth).astype(np.float32, copy=False)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    t = (np.where(valid, depth, max_depth) - min_depth) / (max_depth - min_depth)
    index = np.round((1.0 - np.clip(t, 0.0, 1.0)) * 255).astype(np.intp)  # near -> 255 (red)
    image = DEPTH_COLORMAP[index]
    image[~valid] = 0
    return image
