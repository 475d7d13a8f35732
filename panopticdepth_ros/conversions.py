"""Camera messages -> NumPy: images to RGB arrays and camera_info to intrinsics, validated, for the per-frame path.

The functions read message *fields* only (``height``, ``encoding``, ``data``, ``k``, ...), so they accept rosbags
message objects (what the node and the bag tool deserialize), real rclpy messages and any look-alike object. Bad
input raises :class:`FrameError` naming the field that is wrong and what was expected; nothing else escapes, so
the per-frame path can skip the frame, warn and count the reason (``FrameError.code``).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

from panopticdepth_core.inference.pointcloud import scale_intrinsics

#: encoding -> (channels, bytes per channel, channel order of the RGB output taken from the pixel)
ENCODINGS: dict[str, tuple[int, int, tuple[int, ...]]] = {
    "rgb8": (3, 1, (0, 1, 2)),
    "bgr8": (3, 1, (2, 1, 0)),
    "rgba8": (4, 1, (0, 1, 2)),
    "bgra8": (4, 1, (2, 1, 0)),
    "mono8": (1, 1, (0, 0, 0)),
    "8uc1": (1, 1, (0, 0, 0)),
    "mono16": (1, 2, (0, 0, 0)),
}

#: Largest image accepted (pixels); bigger ones are rejected before any allocation (decompression bombs).
MAX_PIXELS = 64 * 1024 * 1024

#: Relative aspect-ratio difference tolerated between camera_info and the image before it counts as a mismatch.
ASPECT_TOLERANCE = 0.01


class FrameError(ValueError):
    """A frame that cannot be processed; ``code`` is a short category for diagnostics counters."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


def _data_bytes(data, what: str) -> np.ndarray:
    """The message's ``data`` field as a flat uint8 array, without a copy where the buffer allows it."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise FrameError(f"{what}.data: expected uint8 bytes, got an array of {data.dtype}", "data")
        return data.reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview)) or hasattr(data, "buffer_info"):  # array.array from rclpy
        return np.frombuffer(data, dtype=np.uint8)
    try:
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError) as error:
        raise FrameError(f"{what}.data: expected bytes, got {type(data).__name__} ({error})", "data") from error


def _int_field(value, what: str, code: str = "size") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise FrameError(f"{what}: expected an integer, got {value!r}", code)
    return int(value)


def image_msg_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB (a new, writable, C-contiguous array).

    Supports rgb8, bgr8, rgba8, bgra8 (alpha dropped), mono8 / 8UC1 and mono16 (grey replicated; mono16 keeps its
    high byte). Honours ``step`` (row padding) and, for mono16, ``is_bigendian``. ``data`` must hold exactly
    ``step * height`` bytes.
    """
    try:
        return _image_msg_to_rgb(msg)
    except FrameError:
        raise
    except Exception as error:  # a field of an unexpected type or shape: still a bad frame, not a crash
        raise FrameError(f"image: unreadable message ({type(error).__name__}: {error})", "invalid") from error


def _image_msg_to_rgb(msg) -> np.ndarray:
    encoding = str(msg.encoding).strip().lower()
    if encoding not in ENCODINGS:
        supported = ", ".join(e for e in ENCODINGS if e != "8uc1")
        raise FrameError(f"image.encoding: unsupported {msg.encoding!r} (expected one of {supported})", "encoding")
    channels, depth_bytes, order = ENCODINGS[encoding]
    height = _int_field(msg.height, "image.height")
    width = _int_field(msg.width, "image.width")
    step = _int_field(msg.step, "image.step")
    if height <= 0 or width <= 0:
        raise FrameError(f"image: empty image ({width}x{height}); expected width and height > 0", "empty")
    if height * width > MAX_PIXELS:
        raise FrameError(f"image: {width}x{height} is larger than the {MAX_PIXELS} pixels accepted", "size")
    row_bytes = width * channels * depth_bytes
    if step < row_bytes:
        raise FrameError(
            f"image.step: {step} bytes is less than width * bytes per pixel = {width} * {channels * depth_bytes} "
            f"= {row_bytes} for {encoding}",
            "size",
        )
    data = _data_bytes(msg.data, "image")
    expected = step * height
    if data.size < expected:
        raise FrameError(f"image.data: truncated, {data.size} bytes but step * height = {expected}", "truncated")
    if data.size > expected:
        raise FrameError(
            f"image.data: {data.size} bytes but step * height = {step} * {height} = {expected} (size mismatch)",
            "size",
        )
    rows = data.reshape(height, step)[:, :row_bytes]  # (H, row_bytes) view, padding dropped
    if depth_bytes == 2:
        big_endian = bool(msg.is_bigendian)
        grey16 = np.ascontiguousarray(rows).view(">u2" if big_endian else "<u2")  # (H, W)
        grey = (grey16 >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    pixels = rows.reshape(height, width, channels)
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if order == (0, 1, 2) and channels == 3:
        return np.array(pixels, copy=True, order="C")
    return np.ascontiguousarray(pixels[:, :, list(order)])


def compressed_msg_to_rgb(msg, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG or PNG, as image_transport's ``compressed`` plugin sends) -> RGB uint8.

    The ``format`` string (``"jpeg"``, ``"bgr8; jpeg compressed bgr8"``, ...) is only checked for the
    unsupported ``compressedDepth`` transport; the codec is detected from the bytes. Colour order is right for
    both: image_transport encodes standard JPEG/PNG files.
    """
    try:
        return _compressed_msg_to_rgb(msg, max_pixels)
    except FrameError:
        raise
    except Exception as error:
        raise FrameError(f"compressed image: cannot decode ({type(error).__name__}: {error})", "decode") from error


def _compressed_msg_to_rgb(msg, max_pixels: int) -> np.ndarray:
    from PIL import Image

    fmt = str(msg.format)
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise FrameError(f"compressed image.format: {fmt!r} is a depth transport; expected jpeg or png", "encoding")
    data = _data_bytes(msg.data, "compressed image")
    if data.size == 0:
        raise FrameError("compressed image.data: empty", "empty")
    with Image.open(io.BytesIO(data.tobytes())) as image:
        if image.format not in ("JPEG", "PNG"):
            raise FrameError(f"compressed image: {image.format} data; expected JPEG or PNG", "encoding")
        width, height = image.size
        if width * height > max_pixels:
            raise FrameError(f"compressed image: {width}x{height} is larger than {max_pixels} pixels", "size")
        image.load()
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            grey = (np.asarray(image, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
            return np.repeat(grey[:, :, None], 3, axis=2)
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise FrameError(f"compressed image: decoded to an empty array {rgb.shape}", "empty")
    return np.array(rgb, copy=True, order="C")


@dataclass
class CameraGeometry:
    """Intrinsics of the image actually published with a camera_info (binning and ROI applied)."""

    K: np.ndarray  # (3, 3) float64
    P: np.ndarray  # (3, 4) float64; [K | 0] when the message's P is empty
    size: tuple[int, int] | None  # (height, width) the matrices refer to; None when camera_info leaves it 0


def _matrix(values, count: int, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise FrameError(f"camera_info.{name}: expected {count} numbers ({error})", "camera_info") from error
    if array.size != count:
        raise FrameError(f"camera_info.{name}: expected {count} numbers, got {array.size}", "camera_info")
    return array


# Smallest focal length taken as a camera's (pixels): far below any lens (fx 0.001 px is a 179.99 deg view of a
# 100 px image), but large enough that rays stay finite in float32.
MIN_FOCAL_PX = 1e-3


def camera_geometry(msg) -> CameraGeometry:
    """Validate a sensor_msgs/CameraInfo and return K, P for the image it describes (after binning and ROI).

    Rejected (FrameError, code ``camera_info``): K or P with NaN/Inf, fx or fy below MIN_FOCAL_PX (an uncalibrated
    camera publishes zeros; a denormal one would overflow the rays). An all-zero P is replaced by [K | 0]. Binning and ROI follow REP 104: K and P describe the
    full-resolution sensor; the published image is its ROI, binned.
    """
    try:
        return _camera_geometry(msg)
    except FrameError:
        raise
    except Exception as error:
        raise FrameError(f"camera_info: unreadable message ({type(error).__name__}: {error})", "camera_info") from error


def _camera_geometry(msg) -> CameraGeometry:
    k = _matrix(msg.k, 9, "k").reshape(3, 3)
    p = _matrix(msg.p, 12, "p").reshape(3, 4)
    for name, array in (("k", k), ("p", p)):
        if not np.all(np.isfinite(array)):
            raise FrameError(f"camera_info.{name}: contains NaN or Inf ({array.reshape(-1).tolist()})", "camera_info")
    fx, fy = k[0, 0], k[1, 1]
    if not (fx >= MIN_FOCAL_PX and fy >= MIN_FOCAL_PX):
        raise FrameError(
            f"camera_info.k: fx={fx:g}, fy={fy:g}; expected fx, fy >= {MIN_FOCAL_PX:g} px (is the camera calibrated?)",
            "camera_info",
        )
    if not np.any(p[:, :3]):
        p = np.concatenate([k, np.zeros((3, 1))], axis=1)
    elif not (p[0, 0] >= MIN_FOCAL_PX and p[1, 1] >= MIN_FOCAL_PX):
        raise FrameError(
            f"camera_info.p: fx'={p[0, 0]:g}, fy'={p[1, 1]:g}; expected >= {MIN_FOCAL_PX:g} px or an all-zero P",
            "camera_info",
        )
    width = _int_field(msg.width, "camera_info.width", "camera_info")
    height = _int_field(msg.height, "camera_info.height", "camera_info")
    binning_x = max(1, _int_field(msg.binning_x, "camera_info.binning_x", "camera_info"))
    binning_y = max(1, _int_field(msg.binning_y, "camera_info.binning_y", "camera_info"))
    roi = msg.roi
    roi_x, roi_y, roi_w, roi_h = (
        _int_field(getattr(roi, name), f"camera_info.roi.{name}", "camera_info")
        for name in ("x_offset", "y_offset", "width", "height")
    )
    if roi_w > 0 and roi_h > 0:
        k, p = k.copy(), p.copy()
        k[0, 2] -= roi_x
        k[1, 2] -= roi_y
        p[0, 2] -= roi_x
        p[1, 2] -= roi_y
        width, height = roi_w, roi_h
    if width <= 0 or height <= 0:
        return CameraGeometry(K=k, P=p, size=None)
    size = (height, width)
    if binning_x > 1 or binning_y > 1:
        binned = (max(1, height // binning_y), max(1, width // binning_x))
        # Binning is a downscale by 1/b; scale from the exact (unrounded) full size.
        k = scale_intrinsics(k, size, (height / binning_y, width / binning_x))
        p = scale_intrinsics(p, size, (height / binning_y, width / binning_x))
        size = binned
    return CameraGeometry(K=k, P=p, size=size)


def check_image_size(geometry: CameraGeometry, image_size: tuple[int, int]) -> None:
    """Raise FrameError when camera_info's size cannot describe an image of ``image_size`` (height, width).

    Equal sizes and uniformly scaled ones (same aspect ratio, e.g. a resized image with the full-size
    camera_info) are accepted; the intrinsics are then scaled.
    """
    if geometry.size is None:
        return
    (info_h, info_w), (img_h, img_w) = geometry.size, image_size
    if (info_h, info_w) == (img_h, img_w):
        return
    ratio_w, ratio_h = img_w / info_w, img_h / info_h
    if abs(ratio_w - ratio_h) > ASPECT_TOLERANCE * max(ratio_w, ratio_h):
        raise FrameError(
            f"camera_info is {info_w}x{info_h} but the image is {img_w}x{img_h} (different aspect ratio); "
            "expected camera_info for this image",
            "camera_info",
        )


def camera_info_to_K(msg, image_size: tuple[int, int] | None = None, source: str = "p") -> np.ndarray:
    """Validated 3x3 intrinsics (float64) for an image of ``image_size`` (height, width) from a CameraInfo.

    ``source="p"`` (default) takes fx, fy, cx, cy from P like depth_image_proc and image_geometry do, which is
    right for rectified images (``image_rect``); an all-zero P falls back to K. ``source="k"`` takes K (raw,
    distorted images; distortion itself is not undone). ``image_size`` None keeps camera_info's own size.
    """
    if source not in ("p", "k"):
        raise ValueError(f"source must be 'p' or 'k', got {source!r}")
    geometry = camera_geometry(msg)
    matrix = geometry.P[:, :3].copy() if source == "p" else geometry.K.copy()
    if image_size is None or geometry.size is None:
        return matrix
    check_image_size(geometry, image_size)
    if tuple(image_size) == geometry.size:
        return matrix
    return scale_intrinsics(matrix, geometry.size, image_size)


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resample of an (h, w, ...) array to ``size`` = (H, W), pixel centres aligned (no new
    values: labels and depth stay exact)."""
    height, width = size
    rows = np.minimum(((np.arange(height) + 0.5) * array.shape[0] / height).astype(np.intp), array.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * array.shape[1] / width).astype(np.intp), array.shape[1] - 1)
    return array[rows[:, None], cols[None, :]]


def stamp_seconds(header) -> float:
    """The header stamp in seconds (for latency); NaN when unreadable."""
    try:
        return float(header.stamp.sec) + float(header.stamp.nanosec) * 1e-9
    except Exception:
        return math.nan


# ------------------------------------------------------------------ numeric images (depth, labels) of recordings
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
