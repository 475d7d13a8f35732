"""Per-frame depth for ``panopticdepth extract``: a registered depth image, or a LiDAR cloud projected into the camera.

Depth maps are (H, W) float32 z-depth in metres at the camera image's size, 0 where nothing was measured.
"""

from __future__ import annotations

import numpy as np

from ...conversions import FrameError, fit_to_image, image_array
from ...messages import pointcloud2_to_array

MIN_LIDAR_DEPTH = 0.01  # metres: points closer to the image plane than this are dropped


def depth_from_image(msg, size: tuple[int, int], scale: float | None = None) -> np.ndarray:
    """A depth image (32FC1/64FC1 metres, or 16UC1/mono16 millimetres) -> (H, W) float32 metres, 0 = no depth.

    ``scale`` multiplies the stored values (default 1 for float images, 0.001 for 16-bit ones). NaN, +-Inf and
    values <= 0 mean no measurement (REP 117/118).
    """
    encoding = str(msg.encoding).strip().lower()
    raw = image_array(msg, "depth image", ("32fc1", "64fc1", "16uc1", "mono16"))
    if scale is None:
        scale = 0.001 if encoding in ("16uc1", "mono16") else 1.0
    with np.errstate(invalid="ignore", over="ignore"):
        metres = raw.astype(np.float64) * scale
        valid = np.isfinite(metres) & (metres > 0)
    depth = np.where(valid, metres, 0.0).astype(np.float32)
    return fit_to_image(depth, size, "depth image")


def project_points(points: np.ndarray, k: np.ndarray, size: tuple[int, int],
                   min_depth: float = MIN_LIDAR_DEPTH) -> np.ndarray:
    """(N, 3) points in the camera optical frame -> (H, W) float32 z-depth, nearest point per pixel, 0 elsewhere.

    Pixel centres are at integer coordinates (the camera_info convention), so a point lands in pixel
    ``(round(v), round(u))``. Points with z <= ``min_depth`` (behind the camera) or outside the image are dropped.
    """
    height, width = size
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1) & (points[:, 2] > min_depth)]
    z = points[:, 2]
    uvw = points @ np.asarray(k, dtype=np.float64).T  # (N, 3)
    cols = np.floor(uvw[:, 0] / z + 0.5)
    rows = np.floor(uvw[:, 1] / z + 0.5)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    flat = rows[inside].astype(np.int64) * width + cols[inside].astype(np.int64)
    z = z[inside]
    order = np.lexsort((z, flat))  # by pixel, then nearest first
    flat, z = flat[order], z[order]
    first = np.ones(flat.size, dtype=bool)
    first[1:] = flat[1:] != flat[:-1]
    depth = np.zeros(height * width, dtype=np.float32)
    depth[flat[first]] = z[first]
    return depth.reshape(height, width)


def cloud_xyz(msg) -> np.ndarray:
    """(N, 3) float64 x, y, z of a PointCloud2 (organized or not; NaN points kept, dropped by the projection)."""
    try:
        cloud = pointcloud2_to_array(msg).reshape(-1)
    except (KeyError, ValueError) as exc:
        raise FrameError(f"LiDAR cloud: cannot read its fields ({exc})", "lidar") from exc
    names = cloud.dtype.names or ()
    if not all(axis in names for axis in "xyz"):
        raise FrameError(f"LiDAR cloud: fields {list(names)} lack x, y, z", "lidar")
    return np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1).astype(np.float64)
