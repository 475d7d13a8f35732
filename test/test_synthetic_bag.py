"""The synthetic sample bag: readable by rosbags in both storages, the documented topics and types, correct
/tf_static, exact depth and labels, a LiDAR cloud that really sits in an offset frame, and the synth --bag hook."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from panopticdepth_ros.bags.errors import BagError
from panopticdepth_ros.bags.synthetic import (
    BASE_FRAME,
    CAMERA_FRAME,
    CAMERA_LINK_FRAME,
    DEFAULT_LIDAR_OFFSET,
    LIDAR_DELAY_NS,
    LIDAR_FRAME,
    START_STAMP_NS,
    lidar_from_camera,
    synthetic_frame,
    write_synthetic_bag,
)
from panopticdepth_ros.bags.tf_buffer import TfBuffer, invert_transform, transform_points
from panopticdepth_ros.cli import main as cli_main
from panopticdepth_ros.messages import deserialize, get_store, pointcloud2_to_array

SIZE = (64, 128)
FOCAL = 80.0
STORE = get_store("humble")


def _read(path) -> tuple[dict[str, str], dict[str, list]]:
    """({topic: type}, {topic: [(log_time, message)]})."""
    with Reader(path) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        messages: dict[str, list] = {t: [] for t in types}
        for conn, log_time, data in reader.messages():
            messages[conn.topic].append((log_time, deserialize(data, conn.msgtype, STORE)))
    return types, messages


@pytest.mark.parametrize(("storage", "distro"), [("mcap", "humble"), ("sqlite3", "jazzy")])
def test_bag_has_the_documented_topics_types_and_stamps(tmp_path, storage: str, distro: str) -> None:
    path = write_synthetic_bag(tmp_path / "bag", 2, size=SIZE, storage=storage, distro=distro, focal=FOCAL,
                               rate_hz=5.0)
    suffix = ".mcap" if storage == "mcap" else ".db3"
    assert (path / "metadata.yaml").is_file() and len(list(path.glob(f"*{suffix}"))) == 1
    types, messages = _read(path)
    assert types == {
        "/camera/image_raw": "sensor_msgs/msg/Image", "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
        "/camera/depth/image_raw": "sensor_msgs/msg/Image", "/lidar/points": "sensor_msgs/msg/PointCloud2",
        "/tf_static": "tf2_msgs/msg/TFMessage", "/camera/semantic": "sensor_msgs/msg/Image",
        "/camera/instance": "sensor_msgs/msg/Image",
    }
    assert {t: len(m) for t, m in messages.items()} == {t: 1 if t == "/tf_static" else 2 for t in types}
    image = messages["/camera/image_raw"][1][1]
    assert (image.encoding, image.height, image.width, image.header.frame_id) == ("rgb8", 64, 128, CAMERA_FRAME)
    stamp = image.header.stamp.sec * 10**9 + image.header.stamp.nanosec
    assert stamp == START_STAMP_NS + 200_000_000  # frame 1 at 5 Hz
    cloud = messages["/lidar/points"][1][1]
    assert cloud.header.frame_id == LIDAR_FRAME
    assert cloud.header.stamp.sec * 10**9 + cloud.header.stamp.nanosec == stamp + LIDAR_DELAY_NS
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "intensity", "ring"]
    encodings = {t: messages[t][0][1].encoding for t in ("/camera/depth/image_raw", "/camera/semantic",
                                                          "/camera/instance")}
    assert encodings == {"/camera/depth/image_raw": "32FC1", "/camera/semantic": "mono8", "/camera/instance": "16UC1"}
    info = messages["/camera/camera_info"][0][1]
    assert info.k[0] == FOCAL and info.k[4] == FOCAL and (info.width, info.height) == (128, 64)


def test_tf_static_chains_camera_and_lidar_with_unit_quaternions(tmp_path) -> None:
    path = write_synthetic_bag(tmp_path / "bag", 1, size=SIZE, focal=FOCAL)
    _, messages = _read(path)
    (_, tf_msg), = messages["/tf_static"]
    edges = {(t.header.frame_id, t.child_frame_id): t.transform for t in tf_msg.transforms}
    assert set(edges) == {(BASE_FRAME, CAMERA_LINK_FRAME), (CAMERA_LINK_FRAME, CAMERA_FRAME), (BASE_FRAME, LIDAR_FRAME)}
    for transform in edges.values():
        q = transform.rotation
        assert np.linalg.norm([q.x, q.y, q.z, q.w]) == pytest.approx(1.0, abs=1e-9)
    q = edges[(CAMERA_LINK_FRAME, CAMERA_FRAME)].rotation  # the REP 103 optical rotation
    assert np.allclose([q.x, q.y, q.z, q.w], [-0.5, 0.5, -0.5, 0.5])
    buffer = TfBuffer()
    buffer.add_tf_message(tf_msg, static=True)
    lidar_in_camera = buffer.lookup(CAMERA_FRAME, LIDAR_FRAME)
    assert np.allclose(lidar_in_camera, invert_transform(lidar_from_camera()), atol=1e-9)
    # the LiDAR really is elsewhere: 0.3 m above (optical -y), 0.1 m behind (optical -z), and rotated
    origin = lidar_in_camera[:3, 3]
    assert origin == pytest.approx([0.0, -0.3, -0.1], abs=1e-9)
    assert not np.allclose(lidar_in_camera[:3, :3], np.eye(3), atol=0.01)


def test_depth_labels_and_cloud_are_the_exact_scene(tmp_path) -> None:
    path = write_synthetic_bag(tmp_path / "bag", 1, size=SIZE, focal=FOCAL, seed=3)
    _, messages = _read(path)
    truth = synthetic_frame(0, SIZE, seed=3, focal=FOCAL)
    depth_msg = messages["/camera/depth/image_raw"][0][1]
    depth = np.frombuffer(depth_msg.data.tobytes(), "<f4").reshape(SIZE)
    sky = truth.sample.depth == 0
    assert sky.any() and np.isnan(depth[sky]).all()  # REP 118: NaN where there is no depth
    assert np.array_equal(depth[~sky], truth.sample.depth[~sky])
    semantic = messages["/camera/semantic"][0][1].data.reshape(SIZE)
    instance = np.frombuffer(messages["/camera/instance"][0][1].data.tobytes(), "<u2").reshape(SIZE)
    assert np.array_equal(semantic, truth.sample.semantic) and np.array_equal(instance, truth.sample.instance)
    assert instance.max() > 0

    cloud = pointcloud2_to_array(messages["/lidar/points"][0][1]).reshape(-1)
    assert np.array_equal(cloud, truth.cloud)
    xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1).astype(np.float64)
    k = truth.sample.intrinsics

    def project(points):
        in_view = points[:, 2] > 0
        uv = points[in_view] @ k.T
        return in_view, np.rint(uv[:, :2] / uv[:, 2:]).astype(np.int64)

    in_view, uv = project(transform_points(invert_transform(lidar_from_camera()), xyz))
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < SIZE[1]) & (uv[:, 1] >= 0) & (uv[:, 1] < SIZE[0])
    hit = {(int(r), int(c)) for c, r in uv[inside]}
    assert hit == set(map(tuple, truth.lidar_pixels.tolist()))  # twins share pixels, out-of-view points miss
    assert (~in_view).sum() > 0 and inside.sum() > len(hit)
    # without the extrinsic (LiDAR points read as camera points) the cloud lands elsewhere
    _, wrong = project(xyz[:, [1, 2, 0]] * [-1, -1, 1])  # even with the axis swap to optical axes
    wrong_hits = {(int(r), int(c)) for c, r in wrong}
    assert len(wrong_hits & hit) < 0.2 * len(hit)


def test_options_sixteen_bit_depth_panoptic_and_dynamic_tf(tmp_path) -> None:
    path = write_synthetic_bag(tmp_path / "bag", 2, size=SIZE, focal=FOCAL, depth_encoding="16UC1",
                               with_panoptic=True, lidar_tf="dynamic", with_labels=False)
    types, messages = _read(path)
    assert "/camera/semantic" not in types and types["/camera/panoptic"] == "sensor_msgs/msg/Image"
    truth = synthetic_frame(0, SIZE, focal=FOCAL)
    depth_msg = messages["/camera/depth/image_raw"][0][1]
    assert depth_msg.encoding == "16UC1"
    mm = np.frombuffer(depth_msg.data.tobytes(), "<u2").reshape(SIZE)
    exact = truth.sample.depth
    near = (exact > 0) & (exact < 65.0)
    assert np.abs(mm[near] / 1000.0 - exact[near]).max() <= 0.0005 + 1e-6
    assert (mm[exact == 0] == 0).all()
    panoptic = np.frombuffer(messages["/camera/panoptic"][0][1].data.tobytes(), "<i4").reshape(SIZE)
    assert np.array_equal(panoptic, truth.sample.semantic * 1000 + truth.sample.instance)
    (_, static), = messages["/tf_static"]
    assert LIDAR_FRAME not in {t.child_frame_id for t in static.transforms}
    dynamic = [m for _, m in messages["/tf"]]
    assert len(dynamic) == 2 and dynamic[0].transforms[0].child_frame_id == LIDAR_FRAME


def test_same_arguments_same_messages_and_seed_changes_scenes(tmp_path) -> None:
    a = _read(write_synthetic_bag(tmp_path / "a", 2, size=SIZE, focal=FOCAL))[1]
    b = _read(write_synthetic_bag(tmp_path / "b", 2, size=SIZE, focal=FOCAL, storage="sqlite3"))[1]
    c = _read(write_synthetic_bag(tmp_path / "c", 2, size=SIZE, focal=FOCAL, seed=1))[1]
    for topic in ("/camera/image_raw", "/lidar/points"):
        for (ta, ma), (tb, mb) in zip(a[topic], b[topic]):
            assert ta == tb and np.array_equal(ma.data, mb.data)
    assert not np.array_equal(a["/camera/image_raw"][0][1].data, c["/camera/image_raw"][0][1].data)
    assert DEFAULT_LIDAR_OFFSET[2] == 0.3


def test_bad_arguments_are_refused(tmp_path) -> None:
    with pytest.raises(BagError, match="storage"):
        write_synthetic_bag(tmp_path / "x", 1, storage="rosbag1")
    with pytest.raises(BagError, match="distro"):
        write_synthetic_bag(tmp_path / "y", 1, distro="foxy")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_synth_command_writes_a_bag(tmp_path, capsys) -> None:
    bag = tmp_path / "demo_bag"
    assert cli_main(["synth", "--bag", str(bag), "--num", "1", "--size", "32x64", "--bag-storage", "sqlite3",
                     "--distro", "jazzy", "--quiet"]) == 0
    types, messages = _read(bag)
    info = messages["/camera/camera_info"][0][1]
    assert info.k[0] == pytest.approx(40.0)  # no --focal: fx = 320 px at 512 px wide, scaled to 64 px
    assert len(messages["/camera/image_raw"]) == 1
    assert cli_main(["synth", "--bag", str(bag), "--num", "1", "--quiet"]) == 1  # never overwrites
    assert "already exists" in capsys.readouterr().err
    assert cli_main(["synth", "--num", "1"]) == 2
    assert "--out" in capsys.readouterr().err
