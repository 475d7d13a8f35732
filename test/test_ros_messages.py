"""Output messages with the real Humble and Jazzy definitions: CDR round trips, encodings, clouds, markers."""

from __future__ import annotations

import numpy as np
import pytest

from panopticdepth_core.data.classes import CITYSCAPES_CLASSES, CLASS_NAMES
from panopticdepth_core.inference.pointcloud import ID_TYPES, depth_to_cloud, fill_cloud, instance_boxes, unpack_rgb
from panopticdepth_core.inference.visualize import colorize_panoptic, overlay
from panopticdepth_ros import messages as m

DISTROS = ["humble", "jazzy"]
K = np.array([[40.0, 0.0, 11.5], [0.0, 42.0, 7.5], [0.0, 0.0, 1.0]])
COLORS = [c.color for c in CITYSCAPES_CLASSES]


def _maps(height: int = 16, width: int = 24):
    semantic = np.zeros((height, width), np.int32)  # road
    instance = np.zeros((height, width), np.int32)
    semantic[:4] = 10  # sky
    semantic[6:14, 3:11], instance[6:14, 3:11] = 13, 1  # car
    semantic[5:12, 15:20], instance[5:12, 15:20] = 11, 2  # person
    semantic[14:, 20:] = 255  # void
    panoptic = np.where(semantic == 255, -1, semantic * 1000 + instance).astype(np.int32)
    v, u = np.mgrid[0:height, 0:width]
    depth = (5.0 + 0.5 * v + 0.1 * u).astype(np.float32)
    depth[6:14, 3:11], depth[5:12, 15:20] = 6.0, 9.0
    depth[0, 0], depth[1, 1] = 0.0, np.nan
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return panoptic, semantic, instance, depth, image


def _round_trip(msg, typename: str, store):
    data = m.serialize(msg, typename, store)
    assert isinstance(data, bytes)  # rclpy's publish() takes exactly bytes
    assert data == bytes(store.serialize_cdr(msg, typename))  # the splice equals rosbags' own serializer
    return m.deserialize(data, typename, store)


def _fields_equal(a, b) -> None:
    """Recursive equality of rosbags messages (arrays bitwise, floats at float32 precision, NaN-safe)."""
    if hasattr(a, "__dataclass_fields__"):
        for name in a.__dataclass_fields__:
            _fields_equal(getattr(a, name), getattr(b, name))
    elif isinstance(a, np.ndarray):
        assert a.dtype == np.asarray(b).dtype and a.tobytes() == np.asarray(b).tobytes()
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _fields_equal(x, y)
    elif isinstance(a, float):  # float32 fields come back rounded to float32
        assert a == b or np.float32(a) == np.float32(b) or (a != a and b != b)
    else:
        assert a == b


def _image_array(msg, dtype, channels: int = 1) -> np.ndarray:
    array = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, : msg.width * channels *
                                                                              np.dtype(dtype).itemsize]
    return np.ascontiguousarray(array).view(dtype).reshape(msg.height, msg.width, channels).squeeze(-1) \
        if channels == 1 else np.ascontiguousarray(array).view(dtype).reshape(msg.height, msg.width, channels)


@pytest.mark.parametrize("distro", DISTROS)
def test_label_info_is_registered_and_round_trips(distro: str) -> None:
    store = m.get_store(distro)
    assert m.LABEL_INFO in store.types and "vision_msgs/msg/VisionClass" in store.types
    msg = m.label_info_message(store, m.make_header(store, 3, 4, "cam"), CLASS_NAMES, 0.4)
    back = _round_trip(msg, m.LABEL_INFO, store)
    _fields_equal(msg, back)
    assert [(c.class_id, c.class_name) for c in back.class_map][-3:] == [(17, "motorcycle"), (18, "bicycle"),
                                                                       (255, "unlabeled")]
    assert back.threshold == pytest.approx(0.4)


@pytest.mark.parametrize("distro", DISTROS)
def test_image_outputs_round_trip_with_documented_encodings(distro: str) -> None:
    store = m.get_store(distro)
    header = m.make_header(store, 1700000000, 123456789, "camera_color_optical_frame")
    panoptic, semantic, instance, depth, image = _maps()
    semantic_with_odd = semantic.copy()
    semantic_with_odd[0, 5] = 300  # out of the mono8 range -> void
    built = {
        "32SC1": (m.panoptic_image(store, header, panoptic), "<i4", panoptic),
        "mono8": (m.semantic_image(store, header, semantic_with_odd), np.uint8, np.where(semantic_with_odd > 254,
                                                                                        255, semantic_with_odd)),
        "16UC1": (m.instance_image(store, header, instance), "<u2", instance),
        "32FC1": (m.depth_image(store, header, depth), "<f4", np.where(depth > 0, depth, np.nan)),
    }
    for encoding, (msg, dtype, expected) in built.items():
        back = _round_trip(msg, m.IMAGE, store)
        _fields_equal(msg, back)
        assert back.encoding == encoding and back.is_bigendian == 0 and back.step == 24 * np.dtype(dtype).itemsize
        assert (back.header.stamp.sec, back.header.stamp.nanosec, back.header.frame_id) == (
            1700000000, 123456789, "camera_color_optical_frame")
        np.testing.assert_array_equal(_image_array(back, dtype), expected)
    depth_back = _image_array(_round_trip(built["32FC1"][0], m.IMAGE, store), "<f4")
    assert np.isnan(depth_back[0, 0]) and np.isnan(depth_back[1, 1])  # REP 118/117: no estimate is NaN
    rgb = _round_trip(m.rgb_image(store, header, image), m.IMAGE, store)
    assert rgb.encoding == "rgb8" and rgb.step == 72
    np.testing.assert_array_equal(_image_array(rgb, np.uint8, 3), image)


@pytest.mark.parametrize("distro", DISTROS)
@pytest.mark.parametrize("size", [(1, 1), (3, 5), (40, 64), (33, 77)])
def test_splice_serializer_matches_rosbags_for_all_sizes(distro: str, size: tuple[int, int]) -> None:
    store = m.get_store(distro)
    header = m.make_header(store, 9, 8, "odd_frame_name_")
    depth = np.random.default_rng(1).uniform(1, 5, size).astype(np.float32)
    for msg, typename in ((m.depth_image(store, header, depth), m.IMAGE),
                          (m.pointcloud2_message(store, header, depth_to_cloud(depth, K)), m.POINT_CLOUD2)):
        _fields_equal(msg, _round_trip(msg, typename, store))


@pytest.mark.parametrize("distro", DISTROS)
@pytest.mark.parametrize("frame_id", ["", "c", "cam_optical", "front_camera_color_optical_frame"])
def test_cloud_built_into_its_message_equals_rosbags_serialization(distro: str, frame_id: str) -> None:
    """The node writes the cloud straight into the PointCloud2's CDR bytes; they must be rosbags' bytes exactly,
    for every header length (alignment), organized or not, strides that leave odd sizes, both id types, and
    clouds with and without invalid points (is_dense)."""
    store = m.get_store(distro)
    header = m.make_header(store, 12, 34, frame_id)
    panoptic, semantic, instance, depth, image = _maps(17, 23)
    all_valid = np.where(np.isfinite(depth) & (depth > 0), depth, 1.0).astype(np.float32)
    for depth_map in (depth, all_valid):
        for organized in (True, False):
            for stride in (1, 2, 5):
                for id_type in ("uint32", "float32"):
                    args = (depth_map, K, image, semantic, instance, stride)
                    cloud = depth_to_cloud(*args, organized=organized, id_type=id_type)
                    expected = bytes(store.serialize_cdr(
                        m.pointcloud2_message(store, header, cloud, is_dense=None if organized else True),
                        m.POINT_CLOUD2))
                    built = []

                    def allocate(count: int, cloud=cloud, organized=organized, id_type=id_type,
                                 built=built) -> np.ndarray:
                        height, width = cloud.shape if organized else (1, count)
                        built.append(m.SerializedPointCloud2(store, header, ID_TYPES[id_type], height, width))
                        return built[0].points

                    _, dense = fill_cloud(*args, organized=organized, id_type=id_type, out=allocate)
                    data = built[0].finish(dense)
                    assert type(data) is bytes and data == expected, (organized, stride, id_type)


@pytest.mark.parametrize("distro", DISTROS)
@pytest.mark.parametrize("frame_id", ["", "cam", "front_camera_color_optical_frame"])
def test_images_written_into_their_bytes_equal_the_serialized_messages(distro: str, frame_id: str) -> None:
    """The node's image path (pixels written straight into the CDR bytes) against serialize() of the message
    objects: in-range and out-of-range ids, other dtypes, NaN/inf/negative depth, odd sizes, empty images."""
    store = m.get_store(distro)
    header = m.make_header(store, 3, 4, frame_id)
    rng = np.random.default_rng(3)
    pairs = ((m.panoptic_image, m.panoptic_image_bytes), (m.semantic_image, m.semantic_image_bytes),
             (m.instance_image, m.instance_image_bytes), (m.depth_image, m.depth_image_bytes))
    for shape in ((5, 7), (16, 24), (0, 3)):
        for low, high, dtype in ((0, 19, np.int32), (-2, 300, np.int32), (-1, 70000, np.int64), (0, 255, np.uint8),
                                 (-3.0, 40.0, np.float32), (0.5, 40.0, np.float32)):
            values = rng.uniform(low, high, shape).astype(dtype)
            for as_message, as_bytes in pairs:
                if as_message is m.depth_image and dtype == np.float32 and values.size and low < 0:
                    values = values.copy()
                    values.flat[:4] = [np.nan, np.inf, -np.inf, 0.0]  # no estimate (ids stay finite)
                expected = m.serialize(as_message(store, header, values), m.IMAGE, store)
                assert as_bytes(store, header, values) == expected, (as_message.__name__, shape, dtype, low)
        rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        assert m.rgb_image_bytes(store, header, rgb) == m.serialize(m.rgb_image(store, header, rgb), m.IMAGE, store)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 0.0, -1e-30])
def test_one_missing_depth_among_valid_ones_is_nan_in_the_depth_image(bad: float) -> None:
    """The all-valid shortcut of ~/depth must not miss a single pixel without an estimate."""
    store = m.get_store("jazzy")
    header = m.make_header(store, 1, 2, "cam")
    depth = np.random.default_rng(0).uniform(0.5, 80.0, (9, 13)).astype(np.float32)
    depth[4, 7] = bad
    data = m.depth_image_bytes(store, header, depth)
    assert data == m.serialize(m.depth_image(store, header, depth), m.IMAGE, store)
    pixels = np.frombuffer(data[-depth.nbytes:], "<f4").reshape(depth.shape)
    assert np.isnan(pixels[4, 7]) and np.count_nonzero(np.isnan(pixels)) == 1


def test_writable_bytes_fallback_gives_the_same_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ctypes' C API (not CPython) the message is built in a bytearray and copied: same bytes."""
    store = m.get_store("humble")
    header = m.make_header(store, 1, 2, "cam")
    cloud = depth_to_cloud(_maps()[3], K)
    expected = m.serialize(m.pointcloud2_message(store, header, cloud), m.POINT_CLOUD2, store)
    for api in (m._PYTHONAPI, None):
        monkeypatch.setattr(m, "_PYTHONAPI", api)
        message = m.SerializedPointCloud2(store, header, cloud.dtype, *cloud.shape)
        message.points[:] = cloud.reshape(-1)
        data = message.finish(not np.isnan(cloud["z"]).any())
        assert type(data) is bytes and data == expected


def _info(store, height=16, width=24):
    types = store.types
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types[m.CAMERA_INFO](
        header=m.make_header(store, 1, 2, "cam"), height=height, width=width, distortion_model="plumb_bob",
        d=np.array([0.1, -0.05, 0.001, 0.002, 0.0]), k=np.array([40.0, 0, 11.5, 0, 42.0, 7.5, 0, 0, 1]),
        r=np.eye(3).reshape(-1), p=np.array([40.0, 0, 11.5, -2.0, 0, 42.0, 7.5, 0, 0, 0, 1, 0]), binning_x=0,
        binning_y=0, roi=roi)


@pytest.mark.parametrize("distro", DISTROS)
def test_depth_camera_info_scaled_to_output_size(distro: str) -> None:
    store = m.get_store(distro)
    header = m.make_header(store, 5, 6, "cam_optical")
    same = _round_trip(m.depth_camera_info(store, header, _info(store), (16, 24)), m.CAMERA_INFO, store)
    np.testing.assert_allclose(same.k, _info(store).k)
    np.testing.assert_allclose(same.p, _info(store).p)
    half = m.depth_camera_info(store, header, _info(store), (8, 12))
    back = _round_trip(half, m.CAMERA_INFO, store)
    _fields_equal(half, back)
    assert (back.height, back.width, back.header.frame_id, back.binning_x) == (8, 12, "cam_optical", 0)
    np.testing.assert_allclose(back.k, [20.0, 0, 5.5, 0, 21.0, 3.5, 0, 0, 1])
    np.testing.assert_allclose(back.p, [20.0, 0, 5.5, -1.0, 0, 21.0, 3.5, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(back.d, _info(store).d)
    assert back.distortion_model == "plumb_bob"


@pytest.mark.parametrize("distro", DISTROS)
@pytest.mark.parametrize("organized", [True, False])
@pytest.mark.parametrize("stride", [1, 3])
def test_pointcloud2_layout_rays_and_invalid_points(distro: str, organized: bool, stride: int) -> None:
    store = m.get_store(distro)
    panoptic, semantic, instance, depth, image = _maps()
    header = m.make_header(store, 7, 8, "cam_optical")
    cloud = depth_to_cloud(depth, K, image, semantic, instance, stride=stride, organized=organized)
    back = _round_trip(m.pointcloud2_message(store, header, cloud), m.POINT_CLOUD2, store)
    layout = [(f.name, f.offset, f.datatype, f.count) for f in back.fields]
    assert layout == [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("rgb", 12, 7, 1), ("label", 16, 6, 1),
                      ("instance", 20, 6, 1)]
    assert back.point_step == 24 and back.row_step == 24 * back.width and not back.is_bigendian
    points = m.pointcloud2_to_array(back)
    v, u = np.mgrid[0:16:stride, 0:24:stride]
    z = depth[::stride, ::stride]
    valid = np.isfinite(z) & (z > 0)
    if organized:
        assert (back.height, back.width) == z.shape and back.is_dense is False
        assert np.isnan(points["x"][~valid]).all() and np.isnan(points["z"][~valid]).all()
        points, u, v, z = points[valid], u[valid], v[valid], z[valid]
    else:
        assert (back.height, back.width) == (1, int(valid.sum())) and back.is_dense is True
        points, u, v, z = points.reshape(-1), u[valid], v[valid], z[valid]
    np.testing.assert_allclose(points["z"], z)
    np.testing.assert_allclose(points["x"] / points["z"], (u - K[0, 2]) / K[0, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(points["y"] / points["z"], (v - K[1, 2]) / K[1, 1], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(points["label"], semantic[v, u])
    np.testing.assert_array_equal(points["instance"], instance[v, u])
    np.testing.assert_array_equal(unpack_rgb(points["rgb"]), image[v, u])


def test_cloud_rgb_matches_the_overlay_colour() -> None:
    store = m.get_store("humble")
    panoptic, semantic, instance, depth, image = _maps()
    blended = overlay(image, colorize_panoptic(semantic, instance), 0.5, boundaries=True, labels=panoptic)
    cloud = depth_to_cloud(depth, K, blended, semantic, instance)
    back = m.pointcloud2_to_array(_round_trip(m.pointcloud2_message(store, m.make_header(store), cloud),
                                              m.POINT_CLOUD2, store))
    packed = back["rgb"].view("<u4")
    expected = (blended[..., 0].astype(np.uint32) << 16) | (blended[..., 1].astype(np.uint32) << 8) | blended[..., 2]
    np.testing.assert_array_equal(packed, expected)


@pytest.mark.parametrize("distro", DISTROS)
def test_marker_array_boxes_contain_their_instance_points(distro: str) -> None:
    store = m.get_store(distro)
    panoptic, semantic, instance, depth, image = _maps()
    header = m.make_header(store, 11, 12, "cam_optical")
    boxes = instance_boxes(depth, K, panoptic, min_points=5)
    msg = m.instance_markers(store, header, boxes, CLASS_NAMES, COLORS, lifetime_s=0.75)
    back = _round_trip(msg, m.MARKER_ARRAY, store)
    _fields_equal(msg, back)
    marker = store.types["visualization_msgs/msg/Marker"]
    first, rest = back.markers[0], back.markers[1:]
    assert first.action == marker.DELETEALL and first.ns == ""
    cubes = [x for x in rest if x.type == marker.CUBE]
    texts = [x for x in rest if x.type == marker.TEXT_VIEW_FACING]
    assert [c.id for c in cubes] == [t.id for t in texts] == [11002, 13001]
    assert [t.text for t in texts] == ["person 9.0 m", "car 6.0 m"]
    cloud = depth_to_cloud(depth, K, instances=instance)
    for cube in cubes:
        assert cube.header.frame_id == "cam_optical" and cube.header.stamp.sec == 11
        assert (cube.lifetime.sec, cube.lifetime.nanosec) == (0, 750_000_000)
        assert cube.pose.orientation.w == 1.0 and cube.color.a > 0
        center = np.array([cube.pose.position.x, cube.pose.position.y, cube.pose.position.z])
        size = np.array([cube.scale.x, cube.scale.y, cube.scale.z])
        mask = panoptic == cube.id
        points = np.stack([cloud[a][mask] for a in "xyz"], axis=1)
        inside = np.all(np.abs(points - center) <= size / 2 + 1e-6, axis=1)
        assert inside.mean() >= 0.75  # the 5-95 percentile box holds the bulk of the instance
        others = np.stack([cloud[a][(panoptic != cube.id) & np.isfinite(cloud["z"])] for a in "xyz"], axis=1)
        assert np.all(np.abs(others - center) <= size / 2 + 1e-6, axis=1).mean() < 0.05
    for text, cube in zip(texts, cubes):
        assert text.pose.position.y < cube.pose.position.y - cube.scale.y / 2  # above the box (y points down)
        assert text.scale.z > 0
    empty = _round_trip(m.instance_markers(store, header, [], CLASS_NAMES, COLORS), m.MARKER_ARRAY, store)
    assert len(empty.markers) == 1 and empty.markers[0].action == marker.DELETEALL


@pytest.mark.parametrize("distro", DISTROS)
def test_diagnostics_round_trip(distro: str) -> None:
    store = m.get_store(distro)
    values = {"frames in": 10, "rate (Hz)": 4.25, "latency mean (ms)": float("nan")}
    msg = m.diagnostics_message(store, (12, 34), "node: pipeline", "cam0", 1, "2 dropped", values)
    back = _round_trip(msg, m.DIAGNOSTIC_ARRAY, store)
    status = back.status[0]
    assert (status.level, status.name, status.hardware_id, status.message) == (1, "node: pipeline", "cam0",
                                                                              "2 dropped")
    assert {kv.key: kv.value for kv in status.values} == {"frames in": "10", "rate (Hz)": "4.250",
                                                          "latency mean (ms)": "nan"}
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (12, 34)


def test_get_store_rejects_unknown_distro_and_image_builder_rejects_unknown_dtype() -> None:
    with pytest.raises(ValueError, match="humble"):
        m.get_store("rolling-2099")
    store = m.get_store("humble")
    with pytest.raises(ValueError, match="encoding"):
        m.image_message(store, m.make_header(store), np.zeros((2, 2), np.float64))
