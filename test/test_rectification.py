"""Raw (distorted) images: `rectify` undoes plumb_bob, rational_polynomial and equidistant distortion as image_proc
does, within a pixel; outputs then describe the rectified camera. The distortion models are written out here from
their definitions (OpenCV's docs, ROS camera_info) and inverted numerically, independently of OpenCV, so the test
checks the plumbing (which matrix, which size, which coefficients in which order) against the models themselves.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("cv2")

from panopticdepth_core.data.synthetic import render_scene, scene_seed  # noqa: E402
from panopticdepth_ros import messages as m  # noqa: E402
from panopticdepth_ros import params as node_params  # noqa: E402
from panopticdepth_ros.conversions import camera_geometry  # noqa: E402
from panopticdepth_ros.frame_pipeline import OUTPUTS, FramePipeline, PipelineSettings  # noqa: E402
from panopticdepth_ros.rectification import Rectifier  # noqa: E402

HEIGHT, WIDTH = 128, 256
FX = 120.0  # a wide lens: 94 degrees across
K = np.array([[FX, 0.0, (WIDTH - 1) / 2 + 3.0], [0.0, FX, (HEIGHT - 1) / 2 - 2.0], [0.0, 0.0, 1.0]])
LENSES = {
    "plumb_bob": [-0.28, 0.07, 0.0012, -0.0008, -0.006],
    "rational_polynomial": [0.8, 0.1, 0.001, -0.0005, 0.0, 1.05, 0.2, 0.0],
    "equidistant": [0.04, -0.012, 0.003, -0.0004],
}


def distort(model: str, d: list[float], x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised undistorted (x, y) -> distorted, by the model's definition."""
    r2 = x * x + y * y
    if model == "equidistant":
        r = np.sqrt(r2)
        theta = np.arctan(r)
        t2 = theta * theta
        theta_d = theta * (1 + d[0] * t2 + d[1] * t2**2 + d[2] * t2**3 + d[3] * t2**4)
        ratio = np.where(r > 1e-12, theta_d / np.maximum(r, 1e-12), 1.0)
        return x * ratio, y * ratio
    k1, k2, p1, p2, k3 = d[:5]
    k4, k5, k6 = (d[5:8] if len(d) >= 8 else [0.0, 0.0, 0.0])
    radial = (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd


def undistort(model: str, d: list[float], xd: np.ndarray, yd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``distort`` by Gauss-Newton on the forward model (numeric Jacobian); checked to converge."""
    x, y = xd.copy(), yd.copy()
    eps = 1e-6
    for _ in range(50):
        fx_, fy_ = distort(model, d, x, y)
        ex, ey = fx_ - xd, fy_ - yd
        ax, ay = distort(model, d, x + eps, y)
        bx, by = distort(model, d, x, y + eps)
        j11, j21, j12, j22 = (ax - fx_) / eps, (ay - fy_) / eps, (bx - fx_) / eps, (by - fy_) / eps
        det = j11 * j22 - j12 * j21
        x = x - (j22 * ex - j12 * ey) / det
        y = y - (-j21 * ex + j11 * ey) / det
    residual = np.hypot(*(a - b for a, b in zip(distort(model, d, x, y), (xd, yd))))
    assert residual.max() < 1e-9
    return x, y


def raw_to_pinhole_pixels(model: str, d: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel of the raw (distorted) image: where it lies in the pinhole image with the same K."""
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    x, y = undistort(model, d, (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1])
    return K[0, 0] * x + K[0, 2], K[1, 1] * y + K[1, 2]


def bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample (H, W, C) float ``image`` at (u, v); also a mask of samples inside the image."""
    inside = (u >= 0) & (u <= WIDTH - 1) & (v >= 0) & (v <= HEIGHT - 1)
    u, v = np.clip(u, 0, WIDTH - 1.001), np.clip(v, 0, HEIGHT - 1.001)
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    a, b = (u - u0)[..., None], (v - v0)[..., None]
    out = (image[v0, u0] * (1 - a) * (1 - b) + image[v0, u0 + 1] * a * (1 - b)
           + image[v0 + 1, u0] * (1 - a) * b + image[v0 + 1, u0 + 1] * a * b)
    return out, inside


def camera_info(model: str, d: list[float], store=None, k: np.ndarray = K, size=(HEIGHT, WIDTH)):
    store = store or m.get_store("humble")
    types = store.types
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    p = np.concatenate([k, np.zeros((3, 1))], axis=1)
    return types[m.CAMERA_INFO](
        header=m.make_header(store, 1, 2, "cam"), height=size[0], width=size[1], distortion_model=model,
        d=np.array(d, dtype=np.float64), k=k.reshape(-1).copy(), r=np.eye(3).reshape(-1), p=p.reshape(-1),
        binning_x=0, binning_y=0, roi=roi)


@pytest.mark.parametrize("model", sorted(LENSES))
def test_rectified_pixels_land_where_the_pinhole_camera_puts_them(model: str) -> None:
    """A raw image whose pixels carry their own pinhole coordinates (channels u, v, inside; float32 so 8-bit
    rounding does not blur the measurement): after rectification pixel (x, y) must carry (x, y) within a pixel.
    Measured on this machine: at most 0.04-0.06 px, mean 0.015 px (the fixed-point maps step 1/32 px)."""
    d = LENSES[model]
    u, v = raw_to_pinhole_pixels(model, d)
    inside = (u >= 0) & (u <= WIDTH - 1) & (v >= 0) & (v <= HEIGHT - 1)
    raw = np.stack([u, v, np.where(inside, 1.0, 0.0)], axis=-1).astype(np.float32)
    info = camera_info(model, d)
    rectified = Rectifier().rectify(raw, info, camera_geometry(info))
    assert rectified.remapped
    np.testing.assert_allclose(rectified.K, K)
    out = rectified.image.astype(np.float64)
    valid = out[..., 2] >= 1.0 - 1e-6  # pixels that came from inside the pinhole frame only
    assert valid.mean() > 0.7, valid.mean()
    ys, xs = np.nonzero(valid)
    error = np.hypot(out[ys, xs, 0] - xs, out[ys, xs, 1] - ys)
    assert error.max() < 0.25, (model, error.max())  # the requirement is 1 px; measured far below
    # without rectification the same pixels are far off: the test sees the distortion
    raw_error = np.hypot(raw[ys, xs, 0] - xs, raw[ys, xs, 1] - ys)
    assert raw_error.max() > 5.0


@pytest.mark.parametrize("model", ["plumb_bob", "equidistant"])
def test_distorted_render_rectified_matches_the_undistorted_render(model: str) -> None:
    """A synthetic street rendered through a pinhole camera, distorted with a known D (8-bit, as a camera sends
    it), rectified: it lines up with the pinhole render better than with the render shifted by half a pixel in
    any direction. Both are low-passed first: the two bilinear resamplings blur the rectified image, and an
    unblurred render would favour the (blurring) half-pixel shifts for that reason alone."""
    d = LENSES[model]
    render = render_scene(scene_seed(1_000_000, 5), (HEIGHT, WIDTH), FX).image.astype(np.float64)
    u, v = raw_to_pinhole_pixels(model, d)
    # the render's principal point is the image centre; K's is 3 px right and 2 px up: shift to K's
    raw, inside = bilinear(render, u - 3.0, v + 2.0)
    raw = np.where(inside[..., None], raw, 0.0)
    info = camera_info(model, d)
    rectified = Rectifier().rectify(np.rint(raw).astype(np.uint8), info, camera_geometry(info))
    image = rectified.image.astype(np.float64)
    grid_u, grid_v = np.meshgrid(np.arange(WIDTH, dtype=np.float64), np.arange(HEIGHT, dtype=np.float64))
    back = np.isclose(image, 0).all(axis=-1)

    def blur(a: np.ndarray) -> np.ndarray:  # [1, 2, 1] / 4 twice along each axis
        for _ in range(2):
            a = (np.roll(a, 1, 0) + 2 * a + np.roll(a, -1, 0)) / 4
            a = (np.roll(a, 1, 1) + 2 * a + np.roll(a, -1, 1)) / 4
        return a

    def error(du: float, dv: float, of: np.ndarray = image) -> float:
        target, inside = bilinear(render, grid_u - 3.0 + du, grid_v + 2.0 + dv)
        interior = inside & ~back
        interior[:8], interior[-8:], interior[:, :8], interior[:, -8:] = False, False, False, False
        return float(np.abs(blur(of) - blur(target))[interior].mean())

    aligned = error(0.0, 0.0)
    shifts = [(du, dv) for du in (-0.5, 0.0, 0.5) for dv in (-0.5, 0.0, 0.5) if (du, dv) != (0.0, 0.0)]
    shifted = min(error(du, dv) for du, dv in shifts)
    unrectified = error(0.0, 0.0, of=np.rint(raw))
    assert aligned < shifted and aligned < 0.25 * unrectified, (aligned, shifted, unrectified)


def test_maps_are_built_once_per_camera_info_and_sizes_scale() -> None:
    rectifier = Rectifier()
    info = camera_info("plumb_bob", LENSES["plumb_bob"])
    image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for _ in range(3):
        rectifier.rectify(image, info, camera_geometry(info))
    assert rectifier.maps_computed == 1
    # a camera_info calibrated at twice the size: K and P scale, D applies unchanged
    big = camera_info("plumb_bob", LENSES["plumb_bob"], k=np.diag([2.0, 2.0, 1.0]) @ K + [[0, 0, 0.5], [0, 0, 0.5],
                                                                                          [0, 0, 0]],
                      size=(2 * HEIGHT, 2 * WIDTH))
    rectified = rectifier.rectify(image, big, camera_geometry(big))
    np.testing.assert_allclose(rectified.K, K, atol=1e-9)
    assert rectifier.maps_computed == 1  # the same camera at this image size: the same maps
    rectifier.rectify(np.zeros((HEIGHT // 2, WIDTH // 2, 3), np.uint8), info, camera_geometry(info))
    assert rectifier.maps_computed == 2  # the image at half the calibrated size: new maps
    # no distortion, no rotation, P = K: nothing to do
    plain = camera_info("plumb_bob", [0.0] * 5)
    assert not rectifier.rectify(image, plain, camera_geometry(plain)).remapped


# --------------------------------------------------------------------------------------------- in the pipeline
class FakePredictor:
    depth_on = True

    def __init__(self) -> None:
        self.images = []
        self.focals = []

    def __call__(self, rgb, focal=None):
        self.images.append(rgb)
        self.focals.append(focal)
        h, w = rgb.shape[:2]
        semantic = np.full((h, w), 13, np.int32)
        instance = np.ones((h, w), np.int32)
        return SimpleNamespace(panoptic=semantic * 1000 + instance, semantic=semantic, instance=instance,
                               depth=np.full((h, w), 7.0, np.float32))


def _image_bytes(store, rgb: np.ndarray) -> bytes:
    return m.serialize(m.image_message(store, m.make_header(store, 1, 2, "cam"), rgb, "rgb8"), m.IMAGE, store)


def test_pipeline_rectifies_and_publishes_the_rectified_camera() -> None:
    store = m.get_store("humble")
    d = LENSES["plumb_bob"]
    info = camera_info("plumb_bob", d, store)
    # P differs from K (a rectified camera with a narrower view), as a camera_calibration result often does
    new_k = K.copy()
    new_k[0, 0] = new_k[1, 1] = 100.0
    info.p = np.concatenate([new_k, np.zeros((3, 1))], axis=1).reshape(-1)
    rgb = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    predictor = FakePredictor()
    pipeline = FramePipeline(predictor, PipelineSettings(rectify=True))
    info_bytes = m.serialize(info, m.CAMERA_INFO, store)
    for _ in range(2):
        result = pipeline.process(_image_bytes(store, rgb), info_bytes)
        assert not result.skipped and set(result.outputs) == set(OUTPUTS) and not result.warnings
    assert pipeline.rectifier.maps_computed == 1
    expected = Rectifier().rectify(rgb, info, camera_geometry(info)).image
    np.testing.assert_array_equal(predictor.images[-1], expected)  # the network saw the rectified image
    assert predictor.focals[-1] == pytest.approx(100.0)  # and the rectified camera's focal length
    out = m.deserialize(result.outputs["depth/camera_info"][1], m.CAMERA_INFO, store)
    np.testing.assert_allclose(np.asarray(out.k).reshape(3, 3), new_k)
    np.testing.assert_allclose(out.d, 0.0)
    np.testing.assert_allclose(np.asarray(out.r).reshape(3, 3), np.eye(3))
    cloud = m.pointcloud2_to_array(m.deserialize(result.outputs["points"][1], m.POINT_CLOUD2, store))
    col = np.arange(WIDTH)
    np.testing.assert_allclose(cloud["x"][0] / cloud["z"][0], (col - new_k[0, 2]) / 100.0, rtol=1e-5, atol=1e-6)


def test_distortion_without_rectify_warns_once_naming_the_parameter() -> None:
    store = m.get_store("humble")
    info_bytes = m.serialize(camera_info("plumb_bob", LENSES["plumb_bob"], store), m.CAMERA_INFO, store)
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    pipeline = FramePipeline(FakePredictor())
    first = pipeline.process(_image_bytes(store, rgb), info_bytes)
    second = pipeline.process(_image_bytes(store, rgb), info_bytes)
    assert set(first.outputs) == set(OUTPUTS) == set(second.outputs)
    assert len(first.warnings) == 1 and "'rectify'" in first.warnings[0] and "camera_info.d" in first.warnings[0]
    assert second.warnings == []


def test_unknown_distortion_model_costs_only_the_3d_outputs() -> None:
    store = m.get_store("humble")
    info = camera_info("fov", [0.9], store)
    pipeline = FramePipeline(FakePredictor(), PipelineSettings(rectify=True))
    result = pipeline.process(_image_bytes(store, np.zeros((HEIGHT, WIDTH, 3), np.uint8)),
                              m.serialize(info, m.CAMERA_INFO, store))
    assert not result.skipped and set(result.outputs) == {"panoptic", "semantic", "instance", "depth", "overlay", "detections"}
    assert "camera_info.distortion_model" in result.warnings[0] and "not rectified" in result.warnings[0]
    assert pipeline.stats.partial == {"camera_info": 1}


def test_rectify_needs_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    assert node_params.validate({"rectify": True}).rectify
    monkeypatch.setattr(node_params, "opencv_available", lambda: False)
    with pytest.raises(node_params.ParameterError, match="'rectify'.*opencv-python-headless"):
        node_params.validate({"rectify": True})
    assert not node_params.validate({"rectify": False}).rectify
