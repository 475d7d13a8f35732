"""Image and camera_info conversions: every encoding, row padding, endianness, bad input -> FrameError, fuzzing."""

from __future__ import annotations

import array
import io
from types import SimpleNamespace

import numpy as np
import pytest
from fuzzing import HealthCheck, given, settings, st
from PIL import Image as PilImage

from panopticdepth_ros import messages as m
from panopticdepth_ros.conversions import (
    ENCODINGS,
    FrameError,
    camera_geometry,
    camera_info_to_K,
    compressed_msg_to_rgb,
    image_msg_to_rgb,
)

RGB = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
GREY = RGB[:, :, 1]


def _encode(rgb: np.ndarray, encoding: str, padding: int = 0, big_endian: bool = False) -> SimpleNamespace:
    """A look-alike Image message (field names as in sensor_msgs/Image) with ``padding`` bytes per row."""
    height, width = rgb.shape[:2]
    grey = rgb[:, :, 1]
    pixels = {
        "rgb8": rgb,
        "bgr8": rgb[:, :, ::-1],
        "rgba8": np.concatenate([rgb, np.full((height, width, 1), 77, np.uint8)], axis=2),
        "bgra8": np.concatenate([rgb[:, :, ::-1], np.full((height, width, 1), 77, np.uint8)], axis=2),
        "mono8": grey,
        "mono16": (grey.astype(np.uint16) << 8 | 0x5A).astype(">u2" if big_endian else "<u2"),
    }[encoding]
    rows = np.ascontiguousarray(pixels).view(np.uint8).reshape(height, -1)
    padded = np.concatenate([rows, np.full((height, padding), 0xEE, np.uint8)], axis=1)
    return SimpleNamespace(height=height, width=width, encoding=encoding, is_bigendian=int(big_endian),
                           step=padded.shape[1], data=padded.tobytes())


def _expected(encoding: str) -> np.ndarray:
    return np.repeat(GREY[:, :, None], 3, axis=2) if encoding.startswith("mono") else RGB


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"])
@pytest.mark.parametrize("padding", [0, 3, 64])
def test_every_encoding_with_row_padding(encoding: str, padding: int) -> None:
    out = image_msg_to_rgb(_encode(RGB, encoding, padding))
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8 and out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_array_equal(out, _expected(encoding))


def test_mono16_honours_is_bigendian() -> None:
    big = _encode(RGB, "mono16", big_endian=True)
    np.testing.assert_array_equal(image_msg_to_rgb(big)[:, :, 0], GREY)
    big.is_bigendian = 0  # the same bytes read as little-endian give the low byte (0x5A) instead
    assert (image_msg_to_rgb(big)[:, :, 0] == 0x5A).all()


@pytest.mark.parametrize("distro", ["humble", "jazzy"])
def test_real_message_types_and_data_containers(distro: str) -> None:
    store = m.get_store(distro)
    header = m.make_header(store, 1, 2, "cam")
    msg = m.image_message(store, header, RGB[:, :, ::-1], "bgr8")
    decoded = m.deserialize(m.serialize(msg, m.IMAGE, store), m.IMAGE, store)
    np.testing.assert_array_equal(image_msg_to_rgb(decoded), RGB)
    for container in (bytes, bytearray, lambda b: array.array("B", b), memoryview):  # rclpy uses array.array
        look_alike = _encode(RGB, "rgb8", 2)
        look_alike.data = container(look_alike.data)
        np.testing.assert_array_equal(image_msg_to_rgb(look_alike), RGB)


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        ({"encoding": "yuv422"}, "encoding", "yuv422"),
        ({"encoding": "32FC1"}, "encoding", "32FC1"),
        ({"height": 0, "data": b""}, "empty", "empty"),
        ({"step": 20}, "size", "step"),
        ({"data": b"\x00" * 100}, "truncated", "truncated"),
        ({"data": b""}, "truncated", "truncated"),
        ({"data": b"\x00" * 200}, "size", "mismatch"),
        ({"height": "five"}, "size", "image.height"),
        ({"data": None}, "data", "data"),
    ],
)
def test_bad_images_raise_frame_error_naming_the_problem(change: dict, code: str, words: str) -> None:
    msg = _encode(RGB, "rgb8", padding=2)  # step 23, 115 bytes
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(FrameError, match=words) as info:
        image_msg_to_rgb(msg)
    assert info.value.code == code


def _compressed(fmt: str, rgb: np.ndarray = RGB, mode: str = "RGB", **save) -> SimpleNamespace:
    buffer = io.BytesIO()
    PilImage.fromarray(rgb if mode == "RGB" else rgb[:, :, 1]).save(buffer, format=fmt, **save)
    return SimpleNamespace(format=f"bgr8; {fmt.lower()} compressed bgr8", data=buffer.getvalue())


def test_compressed_png_and_jpeg() -> None:
    np.testing.assert_array_equal(compressed_msg_to_rgb(_compressed("PNG")), RGB)
    grey = compressed_msg_to_rgb(_compressed("PNG", mode="L"))
    np.testing.assert_array_equal(grey, np.repeat(GREY[:, :, None], 3, axis=2))
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (16, 1, 3))
    jpeg = compressed_msg_to_rgb(_compressed("JPEG", smooth, quality=95))
    assert jpeg.shape == smooth.shape and np.abs(jpeg.astype(int) - smooth).max() <= 12


def test_compressed_png16_keeps_high_byte() -> None:
    buffer = io.BytesIO()
    PilImage.fromarray((GREY.astype(np.uint16) << 8) | 3).save(buffer, format="PNG")
    out = compressed_msg_to_rgb(SimpleNamespace(format="png", data=buffer.getvalue()))
    np.testing.assert_array_equal(out[:, :, 2], GREY)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"data": b""}, "empty"),
        ({"data": b"not an image at all"}, "decode"),
        ({"format": "16UC1; compressedDepth"}, "encoding"),
    ],
)
def test_bad_compressed_images(change: dict, code: str) -> None:
    msg = _compressed("PNG")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(FrameError) as info:
        compressed_msg_to_rgb(msg)
    assert info.value.code == code


def test_truncated_jpeg_and_huge_images_are_rejected() -> None:
    msg = _compressed("JPEG", np.zeros((64, 64, 3), np.uint8))
    msg.data = msg.data[: len(msg.data) // 2]
    with pytest.raises(FrameError, match="compressed image"):
        compressed_msg_to_rgb(msg)
    with pytest.raises(FrameError, match="larger"):
        compressed_msg_to_rgb(_compressed("PNG"), max_pixels=10)


def _camera_info(**change) -> SimpleNamespace:
    info = SimpleNamespace(
        height=480, width=640, distortion_model="plumb_bob", d=[0.1, -0.2, 0.0, 0.0, 0.0],
        k=[500.0, 0.0, 319.5, 0.0, 510.0, 239.5, 0.0, 0.0, 1.0], r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
        p=[480.0, 0.0, 322.0, 0.0, 0.0, 490.0, 241.0, 0.0, 0.0, 0.0, 1.0, 0.0], binning_x=0, binning_y=0,
        roi=SimpleNamespace(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )
    for key, value in change.items():
        setattr(info, key, value)
    return info


def test_camera_info_to_K_from_P_or_K() -> None:
    np.testing.assert_allclose(camera_info_to_K(_camera_info()), [[480, 0, 322], [0, 490, 241], [0, 0, 1]])
    np.testing.assert_allclose(camera_info_to_K(_camera_info(), source="k"), [[500, 0, 319.5], [0, 510, 239.5],
                                                                              [0, 0, 1]])
    empty_p = camera_info_to_K(_camera_info(p=[0.0] * 12), (480, 640))
    np.testing.assert_allclose(empty_p, [[500, 0, 319.5], [0, 510, 239.5], [0, 0, 1]])


def test_camera_info_scaled_to_a_resized_image() -> None:
    K = camera_info_to_K(_camera_info(), (240, 320), source="k")
    np.testing.assert_allclose(K, [[250, 0, 159.5], [0, 255, 119.5], [0, 0, 1]])  # (319.5 + 0.5) / 2 - 0.5
    np.testing.assert_allclose(camera_info_to_K(_camera_info(width=0, height=0), (100, 100), "k")[0, 0], 500)
    with pytest.raises(FrameError, match="aspect ratio") as info:
        camera_info_to_K(_camera_info(), (480, 480))
    assert info.value.code == "camera_info"


def test_camera_info_binning_and_roi() -> None:
    binned = camera_geometry(_camera_info(binning_x=2, binning_y=2))
    assert binned.size == (240, 320) and binned.K[0, 0] == pytest.approx(250) and binned.K[0, 2] == 159.5
    roi = SimpleNamespace(x_offset=100, y_offset=50, height=200, width=300, do_rectify=False)
    cropped = camera_geometry(_camera_info(roi=roi))
    assert cropped.size == (200, 300) and cropped.K[0, 2] == 219.5 and cropped.P[1, 2] == 191.0


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"k": [0.0] * 9}, "fx=0"),
        ({"k": [500.0, 0, float("nan"), 0, 510.0, 239.5, 0, 0, 1.0]}, "NaN"),
        ({"p": [float("inf")] + [0.0] * 11}, "NaN or Inf"),
        ({"k": [-500.0, 0, 319.5, 0, 510.0, 239.5, 0, 0, 1.0]}, "fx=-500"),
        ({"k": [500.0, 0, 319.5, 0, 1e-300, 239.5, 0, 0, 1.0]}, "fy=1e-300"),  # denormal: rays would overflow
        ({"k": [1.0, 2.0]}, "9 numbers"),
        ({"p": [-1.0] + [0.0] * 11}, "camera_info.p"),
        ({"width": -3.5}, "width"),
        ({"roi": None}, "unreadable"),
    ],
)
def test_bad_camera_info_raises_frame_error(change: dict, words: str) -> None:
    with pytest.raises(FrameError, match=words) as info:
        camera_info_to_K(_camera_info(**change), (480, 640))
    assert info.value.code == "camera_info"


# ------------------------------------------------------------------------------------------------ fuzzing
_ENCODING_NAMES = [*ENCODINGS, "RGB8", "yuv422", "16UC1", "32FC1", "bayer_rggb8", "", "rgb16"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    encoding=st.sampled_from(_ENCODING_NAMES),
    height=st.integers(-2, 12),
    width=st.integers(-2, 12),
    step=st.integers(-4, 60),
    extra=st.integers(-40, 8),
    big_endian=st.integers(0, 1),
    fill=st.binary(min_size=0, max_size=8),
    container=st.sampled_from(["bytes", "array", "list", "numpy"]),
)
def test_fuzz_image_conversion_only_raises_frame_error(encoding, height, width, step, extra, big_endian, fill,
                                                       container) -> None:
    size = max(0, max(step, 0) * max(height, 0) + extra)
    data = (fill * (size // max(1, len(fill)) + 1))[:size] if fill else bytes(size)
    data = {"bytes": data, "array": array.array("B", data), "list": list(data),
            "numpy": np.frombuffer(data, np.uint8)}[container]
    msg = SimpleNamespace(height=height, width=width, encoding=encoding, is_bigendian=big_endian, step=step,
                          data=data)
    try:
        out = image_msg_to_rgb(msg)
    except FrameError as error:
        assert str(error) and error.code
        return
    assert out.shape == (height, width, 3) and out.dtype == np.uint8


@settings(max_examples=300, deadline=None)
@given(
    k=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=0, max_size=10),
    p=st.lists(st.one_of(st.just(0.0), st.floats(-1e6, 1e6)), min_size=12, max_size=12),
    info_size=st.tuples(st.integers(-1, 50), st.integers(-1, 50)),
    image_size=st.tuples(st.integers(1, 50), st.integers(1, 50)),
    binning=st.integers(-1, 4),
    source=st.sampled_from(["k", "p"]),
)
def test_fuzz_camera_info_only_raises_frame_error(k, p, info_size, image_size, binning, source) -> None:
    msg = _camera_info(k=k, p=p, height=info_size[0], width=info_size[1], binning_x=binning, binning_y=binning)
    try:
        K = camera_info_to_K(msg, image_size, source)
    except FrameError as error:
        assert str(error) and error.code == "camera_info"
        return
    assert K.shape == (3, 3) and np.all(np.isfinite(K)) and K[0, 0] > 0 and K[1, 1] > 0


@settings(max_examples=150, deadline=None)
@given(cut=st.integers(0, 400), noise=st.binary(max_size=32), fmt=st.sampled_from(["PNG", "JPEG"]))
def test_fuzz_compressed_only_raises_frame_error(cut, noise, fmt) -> None:
    msg = _compressed(fmt)
    msg.data = msg.data[:cut] + noise
    try:
        out = compressed_msg_to_rgb(msg)
    except FrameError:
        return
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8
