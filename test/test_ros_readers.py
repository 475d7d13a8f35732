"""Our outputs as ROS 2's Python readers take them: ~/points through sensor_msgs_py.point_cloud2 (Humble's 4.2
and Jazzy's 5.3) and the label, depth and overlay images through cv_bridge's ``imgmsg_to_cv2``.

In CI (no ROS) the first tests check the messages against what those functions require, restated here from
reading their sources (ros2/common_interfaces humble/jazzy ``sensor_msgs_py/point_cloud2.py``,
ros-perception/vision_opencv ``cv_bridge/core.py``). Where sensor_msgs_py or cv_bridge import (a sourced ROS 2)
the last tests run the real functions on the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from numpy.lib.recfunctions import structured_to_unstructured

from panopticdepth_ros import messages as m
from panopticdepth_ros.frame_pipeline import FramePipeline, PipelineSettings

HEIGHT, WIDTH = 24, 40
ROOT = Path(__file__).resolve().parents[1]
#: PointField datatype -> numpy type, the table both point_cloud2.py versions read fields with
POINT_FIELD_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
#: encoding -> (numpy type, channels): what cv_bridge's getCvType gives for the encodings we publish
CV_BRIDGE_TYPES = {"rgb8": ("u1", 3), "mono8": ("u1", 1), "16UC1": ("u2", 1), "32SC1": ("i4", 1), "32FC1": ("f4", 1)}
IMAGE_OUTPUTS = ("panoptic", "semantic", "instance", "depth", "overlay")


class _Predictor:
    """A car in front of road and sky, depth growing with the row; one void pixel."""

    def __call__(self, rgb: np.ndarray, focal: float | None = None):
        height, width = rgb.shape[:2]
        semantic = np.zeros((height, width), np.int32)
        semantic[: height // 3] = 10
        instance = np.zeros((height, width), np.int32)
        semantic[height // 2:, width // 4: width // 2], instance[height // 2:, width // 4: width // 2] = 13, 1
        semantic[-1, -1] = 255
        panoptic = np.where(semantic == 255, -1, semantic * 1000 + instance).astype(np.int32)
        depth = np.broadcast_to(2.0 + np.arange(height, dtype=np.float32)[:, None], (height, width)).copy()
        depth[0, 0] = 0.0  # no estimate: a NaN point
        return SimpleNamespace(panoptic=panoptic, semantic=semantic, instance=instance, depth=depth)


def _outputs(distro: str, organized: bool = True, id_type: str = "uint32") -> dict[str, bytes]:
    """CDR bytes of every output of one frame, through the node's per-frame path."""
    store = m.get_store(distro)
    header = m.make_header(store, 1_700_000_000, 5, "camera_optical_frame")
    rgb = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    image = m.serialize(m.image_message(store, header, rgb, "rgb8"), m.IMAGE, store)
    info = m.pinhole_camera_info(store, header, (HEIGHT, WIDTH), 30.0)
    pipeline = FramePipeline(_Predictor(), PipelineSettings(distro=distro, cloud_organized=organized,
                                                            cloud_id_type=id_type))
    result = pipeline.process(image, info)
    assert not result.skipped, result.reason
    return {suffix: payload for suffix, (_, payload) in result.outputs.items()}


# ------------------------------------------------------------------------------------------------ rules (CI)
def _point_cloud2_dtype(cloud) -> np.dtype:
    """The structured dtype both point_cloud2.py versions build from ``fields`` and ``point_step``; AssertionError
    where they refuse (unknown datatype, count 0, repeated names)."""
    names, formats, offsets = [], [], []
    for index, field in enumerate(cloud.fields):
        assert field.datatype in POINT_FIELD_TYPES, f"{field.name}: datatype {field.datatype} unknown"
        assert field.count > 0, f"{field.name}: count 0"
        base = field.name or f"unnamed_field_{index}"
        size = np.dtype(POINT_FIELD_TYPES[field.datatype]).itemsize
        for k in range(field.count):
            name = base if field.count == 1 else f"{base}_{k}"
            assert name not in names, f"repeated field {name}"
            names.append(name)
            formats.append("<" + POINT_FIELD_TYPES[field.datatype])
            offsets.append(field.offset + k * size)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": cloud.point_step})


def _read_points(cloud, field_names=None) -> np.ndarray:
    """What read_points returns: the data buffer taken as width * height packed points (row_step is not used,
    so rows must not be padded), the asked-for fields selected."""
    points = np.ndarray((cloud.width * cloud.height,), _point_cloud2_dtype(cloud), buffer=np.asarray(cloud.data))
    return points if field_names is None else points[list(field_names)]


def _read_points_numpy_allowed(cloud, field_names, distro: str) -> bool:
    """Humble's read_points_numpy asserts that *every* field of the cloud has the first field's datatype; Jazzy's
    only looks at the selected fields."""
    fields = [f for f in cloud.fields if distro == "humble" or field_names is None or f.name in field_names]
    return all(f.datatype == fields[0].datatype for f in fields)


@pytest.mark.parametrize("organized", [True, False])
@pytest.mark.parametrize("distro", ["humble", "jazzy"])
def test_cloud_layout_meets_the_point_cloud2_readers(distro: str, organized: bool) -> None:
    store = m.get_store(distro)
    cloud = m.deserialize(_outputs(distro, organized)["points"], m.POINT_CLOUD2, store)
    assert not cloud.is_bigendian  # read_points byte-swaps big-endian data on little-endian machines
    assert cloud.row_step == cloud.width * cloud.point_step  # read_points ignores row_step: no row padding
    assert len(cloud.data) == cloud.height * cloud.row_step
    expected = m.pointcloud2_to_array(cloud).reshape(-1)

    everything = _read_points(cloud)
    assert everything.dtype.names == ("x", "y", "z", "rgb", "label", "instance")
    for name in everything.dtype.names:
        np.testing.assert_array_equal(everything[name], expected[name])
    xyz = structured_to_unstructured(_read_points(cloud, ["x", "y", "z"]))  # = read_points_numpy's result
    np.testing.assert_array_equal(xyz, np.stack([expected["x"], expected["y"], expected["z"]], axis=1))
    assert organized or not np.isnan(xyz).any()

    # Jazzy reads x, y, z with read_points_numpy; Humble refuses any cloud with mixed field types (ours: uint32
    # label/instance next to float32 x, y, z, as pcl::PointXYZRGBL) -- docs/ros_node.md says what to use there
    assert _read_points_numpy_allowed(cloud, ["x", "y", "z"], "jazzy")
    assert not _read_points_numpy_allowed(cloud, ["x", "y", "z"], "humble")
    docs = (ROOT / "docs" / "ros_node.md").read_text(encoding="utf-8")
    assert "structured_to_unstructured(read_points(cloud, field_names=" in docs and "cloud_id_type" in docs


@pytest.mark.parametrize("distro", ["humble", "jazzy"])
def test_float32_ids_meet_humbles_read_points_numpy(distro: str) -> None:
    """cloud_id_type float32: every field float32, so Humble's read_points_numpy takes the cloud too; the ids are
    the same numbers as in the uint32 layout."""
    store = m.get_store(distro)
    cloud = m.deserialize(_outputs(distro, id_type="float32")["points"], m.POINT_CLOUD2, store)
    reference = m.deserialize(_outputs(distro)["points"], m.POINT_CLOUD2, store)
    assert {f.datatype for f in cloud.fields} == {7} and cloud.point_step == reference.point_step == 24
    for reader in ("humble", "jazzy"):
        assert _read_points_numpy_allowed(cloud, ["x", "y", "z"], reader)
        assert _read_points_numpy_allowed(cloud, None if reader == "jazzy" else ["x"], reader)
    points, expected = _read_points(cloud), _read_points(reference)
    for name in ("label", "instance"):
        assert points[name].dtype == np.float32
        np.testing.assert_array_equal(points[name].astype(np.uint32), expected[name])
    assert expected["label"].max() > 0 and expected["instance"].max() > 0  # the comparison is not of zeros
    for name in ("x", "y", "z", "rgb"):
        np.testing.assert_array_equal(points[name].view(np.uint32), expected[name].view(np.uint32))


@pytest.mark.parametrize("distro", ["humble", "jazzy"])
def test_images_meet_cv_bridge(distro: str) -> None:
    """imgmsg_to_cv2 takes the pixel type from the encoding, views ``data`` as height x (step / pixel bytes) and
    crops to width; byte order must be the machine's (its swap path calls an API numpy 2 removed)."""
    store = m.get_store(distro)
    outputs = _outputs(distro)
    for suffix in IMAGE_OUTPUTS:
        msg = m.deserialize(outputs[suffix], m.IMAGE, store)
        assert msg.encoding in CV_BRIDGE_TYPES, (suffix, msg.encoding)
        dtype, channels = CV_BRIDGE_TYPES[msg.encoding]
        itemsize = np.dtype(dtype).itemsize
        assert msg.is_bigendian == 0
        assert msg.step == msg.width * channels * itemsize, f"{suffix}: rows padded"
        assert len(msg.data) == msg.step * msg.height
        shape = (msg.height, msg.width) if channels == 1 else (msg.height, msg.width, channels)
        view = np.ndarray(shape, np.dtype("<" + dtype), buffer=np.asarray(msg.data))
        assert view.shape[:2] == (HEIGHT, WIDTH)


# ------------------------------------------------------------------------------------------------ real readers
def _rclpy_message(data: bytes, msg_class):
    from rclpy.serialization import deserialize_message

    return deserialize_message(data, msg_class)


def test_sensor_msgs_py_reads_our_cloud() -> None:
    point_cloud2 = pytest.importorskip("sensor_msgs_py.point_cloud2", reason="needs a sourced ROS 2")
    from sensor_msgs.msg import PointCloud2

    distro = os.environ.get("ROS_DISTRO", "jazzy")
    data = _outputs(distro if distro in m.DISTROS else "jazzy")["points"]
    cloud = _rclpy_message(data, PointCloud2)
    expected = m.pointcloud2_to_array(m.deserialize(data, m.POINT_CLOUD2, m.get_store())).reshape(-1)
    points = point_cloud2.read_points(cloud)
    for name in ("x", "y", "z", "rgb", "label", "instance"):
        np.testing.assert_array_equal(points[name], expected[name])
    xyz = structured_to_unstructured(point_cloud2.read_points(cloud, field_names=["x", "y", "z"]))
    reference = np.stack([expected["x"], expected["y"], expected["z"]], axis=1)
    np.testing.assert_array_equal(xyz, reference)
    if distro == "humble":  # documented: Humble's read_points_numpy refuses mixed field types
        with pytest.raises(AssertionError, match="same datatype"):
            point_cloud2.read_points_numpy(cloud, field_names=["x", "y", "z"])
    else:
        np.testing.assert_array_equal(point_cloud2.read_points_numpy(cloud, field_names=["x", "y", "z"]), reference)
    valid = point_cloud2.read_points(cloud, field_names=["x", "y", "z"], skip_nans=True)
    assert len(valid) == np.isfinite(expected["z"]).sum()


def test_cv_bridge_reads_our_images() -> None:
    cv_bridge = pytest.importorskip("cv_bridge", reason="needs a sourced ROS 2 with cv_bridge")
    from sensor_msgs.msg import Image

    store = m.get_store()
    outputs = _outputs("jazzy")
    bridge = cv_bridge.CvBridge()
    for suffix in IMAGE_OUTPUTS:
        ours = m.deserialize(outputs[suffix], m.IMAGE, store)
        expected = np.frombuffer(ours.data, np.dtype("<" + CV_BRIDGE_TYPES[ours.encoding][0]))
        array = bridge.imgmsg_to_cv2(_rclpy_message(outputs[suffix], Image))
        np.testing.assert_array_equal(array.reshape(-1), expected)
        assert array.shape[:2] == (HEIGHT, WIDTH)
    overlay = _rclpy_message(outputs["overlay"], Image)
    bgr = bridge.imgmsg_to_cv2(overlay, desired_encoding="bgr8")
    np.testing.assert_array_equal(bgr[:, :, ::-1], bridge.imgmsg_to_cv2(overlay))
