"""Undistort raw camera images before the network, as image_proc's rectify does (parameter ``rectify``).

Why: a network and the back-projection of its depth both assume a pinhole camera; a wide-angle lens bends straight
lines, so the labeled cloud of a raw (``image_raw``) image bends too. With ``rectify`` on, each image is remapped
with camera_info's D (distortion), R (rectification) and P (the rectified camera) by OpenCV's
``initUndistortRectifyMap`` (``cv2.fisheye.initUndistortRectifyMap`` for ``equidistant``) and ``remap``,
bilinear with a black border, exactly what image_geometry's ``rectifyImage`` does. Every output then lives in the
rectified geometry, whose intrinsics are P's (zero distortion).

The maps are computed once per distinct camera_info (its distortion model, D, K, R, P, and the image size) and
cached, so a steady camera costs one ``remap`` per frame. OpenCV (``opencv-python-headless``) is imported only
here, when a first image is rectified: the node and the bag tool run without it while ``rectify`` is off.
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from panopticdepth_core.inference.pointcloud import scale_intrinsics

from .conversions import CameraGeometry, FrameError

#: distortion_model -> number of coefficients OpenCV reads (plumb_bob: k1 k2 t1 t2 k3; rational_polynomial adds k4
#: k5 k6; equidistant: k1..k4 of the fisheye model). Shorter D are padded with zeros, longer ones refused.
DISTORTION_MODELS: dict[str, int] = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}
OPENCV_PACKAGE = "opencv-python-headless"
#: Distinct camera_infos whose maps are kept (a camera that switches between a few calibrations stays cached).
CACHE_SIZE = 4


def opencv_available() -> bool:
    """Whether ``cv2`` can be imported (checked without importing it)."""
    return importlib.util.find_spec("cv2") is not None


def _cv2():
    try:
        import cv2
    except ImportError as error:
        raise FrameError(f"parameter 'rectify' needs OpenCV: pip install {OPENCV_PACKAGE} ({error})",
                         "rectify") from error
    return cv2


def distortion(info) -> np.ndarray:
    """camera_info's D as float64 (FrameError ``camera_info`` naming the field for NaN/Inf or unreadable values)."""
    try:
        d = np.asarray(info.d, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise FrameError(f"camera_info.d: expected numbers ({error})", "camera_info") from error
    if not np.all(np.isfinite(d)):
        raise FrameError(f"camera_info.d: contains NaN or Inf ({d.tolist()})", "camera_info")
    return d


def is_distorted(info) -> bool:
    """True when camera_info's D has a non-zero coefficient (the image, if raw, needs undistorting)."""
    try:
        d = np.asarray(info.d, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return False
    return bool(np.any(d[np.isfinite(d)] != 0))


def _rotation(info) -> np.ndarray:
    try:
        r = np.asarray(info.r, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise FrameError(f"camera_info.r: expected 9 numbers ({error})", "camera_info") from error
    if r.size != 9 or not np.all(np.isfinite(r)):
        raise FrameError(f"camera_info.r: expected 9 finite numbers, got {r.tolist()}", "camera_info")
    return np.eye(3) if not np.any(r) else r.reshape(3, 3)  # an all-zero R (unset) means no rotation


@dataclass(frozen=True)
class Rectified:
    """A rectified image and the pinhole camera it now has."""

    image: np.ndarray  # (H, W, 3) uint8, same size as the input
    K: np.ndarray  # (3, 3) float64: P's intrinsics for this image size (D = 0)
    remapped: bool  # False when camera_info describes an undistorted, unrotated camera: the image is unchanged


class Rectifier:
    """Undistorts images with their camera_info; maps cached per camera_info content (see the module docstring)."""

    def __init__(self, cache_size: int = CACHE_SIZE) -> None:
        self.cache_size = cache_size
        self._maps: OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.maps_computed = 0  # how often maps were built (a test checks that a steady camera builds them once)

    def rectify(self, rgb: np.ndarray, info, geometry: CameraGeometry) -> Rectified:
        """Undistort ``rgb`` (H, W, 3) uint8 with ``info`` (its CameraInfo) and ``geometry`` (validated K, P, size).

        ``geometry.size`` may differ from the image's by a uniform scale (a resized image): K and P are scaled and
        D, in normalised coordinates, still applies. Raises FrameError (code ``camera_info``) naming the field for an
        unknown distortion model or unusable D / R, and (code ``rectify``) when OpenCV is missing.
        """
        height, width = rgb.shape[:2]
        k, p = geometry.K, geometry.P[:, :3]
        if geometry.size is not None and geometry.size != (height, width):
            k = scale_intrinsics(k, geometry.size, (height, width))
            p = scale_intrinsics(p, geometry.size, (height, width))
        model = str(info.distortion_model).strip().lower()
        d = distortion(info)
        r = _rotation(info)
        if not np.any(d) and np.allclose(r, np.eye(3)) and np.allclose(p, k, rtol=1e-9, atol=1e-9):
            return Rectified(rgb, p.copy(), remapped=False)
        if model not in DISTORTION_MODELS:
            known = ", ".join(DISTORTION_MODELS)
            raise FrameError(f"camera_info.distortion_model: {info.distortion_model!r} cannot be undone here "
                             f"(expected one of {known})", "camera_info")
        count = DISTORTION_MODELS[model]
        if d.size > count and np.any(d[count:]):
            raise FrameError(f"camera_info.d: {d.size} coefficients for {model}, which has {count}", "camera_info")
        d = np.concatenate([d, np.zeros(max(0, count - d.size))])[:count]
        key = np.concatenate([[list(DISTORTION_MODELS).index(model), height, width], d, k.reshape(-1),
                              r.reshape(-1), p.reshape(-1)]).tobytes()
        maps = self._maps.get(key)
        if maps is None:
            maps = self._build_maps(model, k, d, r, p, (height, width))
            self._maps[key] = maps
            while len(self._maps) > self.cache_size:
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(key)
        cv2 = _cv2()
        image = cv2.remap(np.ascontiguousarray(rgb), maps[0], maps[1], interpolation=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return Rectified(image, p.copy(), remapped=True)

    def _build_maps(self, model: str, k: np.ndarray, d: np.ndarray, r: np.ndarray, p: np.ndarray,
                    size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        cv2 = _cv2()
        height, width = size
        try:
            if model == "equidistant":
                maps = cv2.fisheye.initUndistortRectifyMap(k, d, r, p, (width, height), cv2.CV_16SC2)
            else:
                maps = cv2.initUndistortRectifyMap(k, d, r, p, (width, height), cv2.CV_16SC2)
        except cv2.error as error:
            raise FrameError(f"camera_info: OpenCV cannot build rectification maps from it ({error})",
                             "camera_info") from error
        self.maps_computed += 1
        return maps
