"""Numeric sensor_msgs/Image messages (depth and label images) as numpy arrays at the camera image's size."""

from __future__ import annotations

import numpy as np

from .conversions import FrameError, resize_nearest

#: numeric image encodings -> (numpy dtype, channels)
_NUMERIC_ENCODINGS = {
    "mono8": ("u1", 1), "8uc1": ("u1", 1), "8sc1": ("i1", 1), "mono16": ("u2", 1), "16uc1": ("u2", 1),
    "16sc1": ("i2", 1), "32sc1": ("i4", 1), "32fc1": ("f4", 1), "64fc1": ("f8", 1),
    "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4),
}


def image_array(msg, what: str, encodings: tuple[str, ...] | None = None) -> np.ndarray:
    """A numeric sensor_msgs/Image as an (H, W) or (H, W, C) array (native byte order, row padding removed)."""
    encoding = str(msg.encoding).strip().lower()
    allowed = encodings or tuple(_NUMERIC_ENCODINGS)
    if encoding not in _NUMERIC_ENCODINGS or encoding not in allowed:
        raise FrameError(f"{what}: encoding {msg.encoding!r} not supported here (expected one of "
                         f"{', '.join(allowed)})", "encoding")
    dtype_code, channels = _NUMERIC_ENCODINGS[encoding]
    dtype = np.dtype(dtype_code).newbyteorder(">" if msg.is_bigendian else "<")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if height <= 0 or width <= 0 or step < row_bytes:
        raise FrameError(f"{what}: bad size {width}x{height} with step {step} for {encoding}", "size")
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    if data.size != step * height:
        raise FrameError(f"{what}: {data.size} data bytes, expected step * height = {step * height}", "size")
    rows = np.ascontiguousarray(data.reshape(height, step)[:, :row_bytes])
    array = rows.view(dtype).reshape(height, width, channels).astype(dtype.newbyteorder("="), copy=False)
    return array[:, :, 0] if channels == 1 else array


def fit_to_image(array: np.ndarray, size: tuple[int, int], what: str) -> np.ndarray:
    """``array`` at the image size: equal sizes pass, same aspect ratio is resampled (nearest), else FrameError."""
    if array.shape[:2] == tuple(size):
        return array
    (h, w), (height, width) = array.shape[:2], size
    if abs(w / h - width / height) > 0.01 * (width / height):
        raise FrameError(f"{what} is {w}x{h} but the image is {width}x{height}; expected it registered to the "
                         "camera image (same size or aspect ratio)", "size")
    return resize_nearest(array, size)
