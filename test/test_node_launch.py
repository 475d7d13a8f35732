"""launch_testing test of the real node (needs ROS 2 Humble or Jazzy and the built package; skipped elsewhere).

Starts panopticdepth_node through launch/panopticdepth.launch.py with a tiny random model, publishes images and
camera_info, and checks every output topic's type, encoding, header and rate, ~/label_info's latching, the
lifecycle state and /diagnostics. Run after `colcon build`:

    colcon test --packages-select panopticdepth_ros --pytest-args -k test_node_launch
    # or: source install/setup.bash && launch_test test/test_node_launch.py
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
import unittest
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("launch_testing")
pytest.importorskip("launch_ros")

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import TransformStamped  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from lifecycle_msgs.srv import GetState  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

HEIGHT, WIDTH = 48, 64
FRAME_ID = "camera_optical_frame"
PUBLISH_HZ = 5.0
MESSAGES_PER_TOPIC = 6
TIMEOUT_S = 120.0  # model load on a loaded CI machine
EXPECTED = {  # suffix -> (type, encoding or None)
    "panoptic": (Image, "32SC1"),
    "semantic": (Image, "mono8"),
    "instance": (Image, "16UC1"),
    "depth": (Image, "32FC1"),
    "depth/camera_info": (CameraInfo, None),
    "points": (PointCloud2, None),
    "overlay": (Image, "rgb8"),
    "instances": (MarkerArray, None),
    "detections": (Detection2DArray, None),
    "detections_3d": (Detection3DArray, None),
}


def _launch_file() -> str:
    try:
        from ament_index_python.packages import get_package_share_directory

        return os.path.join(get_package_share_directory("panopticdepth_ros"), "launch", "panopticdepth.launch.py")
    except Exception:
        return str(Path(__file__).resolve().parents[1] / "launch" / "panopticdepth.launch.py")


def _tiny_model(folder: str) -> str:
    """A random tiny model (config embedded in the weights), biased so that every pixel gets a label and depth."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # launch_test imports this file outside pytest
    from tiny_model import TINY_NODE_MODEL, tiny_cfg, write_random_model

    _, weights = write_random_model(Path(folder), tiny_cfg(base=TINY_NODE_MODEL), label_everything=True)
    return str(weights)


@pytest.mark.launch_test
def generate_test_description():
    folder = tempfile.mkdtemp(prefix="panopticdepth_launch_test_")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # the model and params, once the run is over
    params = Path(folder) / "params.yaml"
    params.write_text(f"/**:\n  ros__parameters:\n    weights: \"{_tiny_model(folder)}\"\n    device: cpu\n"
                      "    diagnostics_period: 0.5\n")
    node = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(_launch_file()),
        launch_arguments={"params_file": str(params), "image": "/test/image", "camera_info": "/test/camera_info",
                          "namespace": "", "use_rviz": "false", "autostart": "true", "log_level": "info"}.items(),
    )
    return launch.LaunchDescription([node, launch_testing.actions.ReadyToTest()]), {}


def _header(sec: int, nanosec: int) -> Header:
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=FRAME_ID)


def _image(header: Header) -> Image:
    pixels = bytes((i * 7) % 256 for i in range(HEIGHT * WIDTH * 3))
    return Image(header=header, height=HEIGHT, width=WIDTH, encoding="rgb8", is_bigendian=0, step=WIDTH * 3,
                 data=pixels)


def _camera_info(header: Header) -> CameraInfo:
    info = CameraInfo(header=header, height=HEIGHT, width=WIDTH, distortion_model="plumb_bob")
    info.d = [0.0] * 5
    info.k = [40.0, 0.0, WIDTH / 2 - 0.5, 0.0, 40.0, HEIGHT / 2 - 0.5, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [40.0, 0.0, WIDTH / 2 - 0.5, 0.0, 0.0, 40.0, HEIGHT / 2 - 0.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def _transform(parent: str, child: str, header: Header, x: float) -> TransformStamped:
    """parent -> child, translated x metres along the parent's x axis, at the header's stamp."""
    transform = TransformStamped()
    transform.header = Header(stamp=header.stamp, frame_id=parent)
    transform.child_frame_id = child
    transform.transform.translation.x = x
    transform.transform.rotation.w = 1.0
    return transform


class TestNodeOutputs(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        rclpy.init()

    @classmethod
    def tearDownClass(cls) -> None:
        rclpy.shutdown()

    def setUp(self) -> None:
        self.node = rclpy.create_node("panopticdepth_launch_test")

    def tearDown(self) -> None:
        self.node.destroy_node()

    def test_every_output_topic(self) -> None:
        node = self.node
        received: dict[str, list] = {suffix: [] for suffix in EXPECTED}
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for suffix, (msg_type, _) in EXPECTED.items():
            node.create_subscription(msg_type, f"/panopticdepth_node/{suffix}",
                                     lambda msg, s=suffix: received[s].append((time.monotonic(), msg)), reliable)
        labels: list = []
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(LabelInfo, "/panopticdepth_node/label_info", labels.append, latched)
        diagnostics: list = []
        node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
        image_pub = node.create_publisher(Image, "/test/image", 1)
        info_pub = node.create_publisher(CameraInfo, "/test/camera_info", 1)
        # camera poses for tracking: a latched mount base_link -> optical frame, and odom -> base_link per image
        tf_static_pub = node.create_publisher(TFMessage, "/tf_static", latched)
        tf_static_pub.publish(TFMessage(transforms=[_transform("base_link", FRAME_ID, _header(0, 0), 0.3)]))
        tf_pub = node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))

        sent: set[tuple[int, int]] = set()
        deadline = time.monotonic() + TIMEOUT_S
        next_publish, index = 0.0, 0
        while time.monotonic() < deadline and min(len(v) for v in received.values()) < MESSAGES_PER_TOPIC:
            if time.monotonic() >= next_publish:
                header = _header(1_700_000_000 + index, 1000 * index)
                tf_pub.publish(TFMessage(transforms=[_transform("odom", "base_link", header, 0.5 * index)]))
                info_pub.publish(_camera_info(header))
                image_pub.publish(_image(header))
                sent.add((header.stamp.sec, header.stamp.nanosec))
                index += 1
                next_publish = time.monotonic() + 1.0 / PUBLISH_HZ
            rclpy.spin_once(node, timeout_sec=0.02)

        for suffix, (msg_type, encoding) in EXPECTED.items():
            messages = received[suffix]
            self.assertGreaterEqual(len(messages), MESSAGES_PER_TOPIC, f"~/{suffix}: too few messages")
            for _, msg in messages:
                self.assertIsInstance(msg, msg_type)
                headers = [mk.header for mk in msg.markers] if suffix == "instances" else [msg.header]
                for header in headers:
                    self.assertEqual(header.frame_id, FRAME_ID, suffix)
                    self.assertIn((header.stamp.sec, header.stamp.nanosec), sent, f"~/{suffix}: unknown stamp")
                if encoding is not None:
                    self.assertEqual(msg.encoding, encoding, suffix)
                if suffix in ("panoptic", "semantic", "instance", "depth", "overlay"):
                    self.assertEqual((msg.height, msg.width), (HEIGHT, WIDTH), suffix)
            times = [t for t, _ in messages[-MESSAGES_PER_TOPIC:]]
            rate = (len(times) - 1) / (times[-1] - times[0])
            self.assertGreater(rate, 0.5, f"~/{suffix}: {rate:.2f} Hz")
            self.assertLess(rate, PUBLISH_HZ * 2, f"~/{suffix}: {rate:.2f} Hz, more than the input rate")
        cloud = received["points"][-1][1]
        self.assertEqual((cloud.height, cloud.width, cloud.point_step), (HEIGHT, WIDTH, 24))
        self.assertEqual([f.name for f in cloud.fields], ["x", "y", "z", "rgb", "label", "instance"])
        self._check_cloud_against_images(received)

        self.assertEqual(len(labels), 1, "~/label_info is published once, transient local")
        self.assertEqual(labels[0].class_map[0].class_name, "road")
        self.assertTrue(any(s.name == "panopticdepth_node: pipeline" for d in diagnostics for s in d.status))
        # the node listens to /tf and /tf_static and its tracker used the poses, in the tree's root frame
        for topic in ("/tf", "/tf_static"):
            subscribers = [i.node_name for i in node.get_subscriptions_info_by_topic(topic)]
            self.assertIn("panopticdepth_node", subscribers, topic)
        values = [{kv.key: kv.value for kv in s.values} for d in diagnostics for s in d.status
                  if s.name == "panopticdepth_node: pipeline"]
        posed = [v for v in values if int(v.get("frames with a /tf pose", 0)) > 0]
        self.assertTrue(posed, f"no frame got a camera pose from /tf: {values[-1] if values else 'no diagnostics'}")
        self.assertEqual(posed[-1]["tracking frame"], "odom")

        client = node.create_client(GetState, "/panopticdepth_node/get_state")
        self.assertTrue(client.wait_for_service(timeout_sec=10.0))
        future = client.call_async(GetState.Request())
        rclpy.spin_until_future_complete(node, future, timeout_sec=10.0)
        self.assertEqual(future.result().current_state.label, "active")


    def _check_cloud_against_images(self, received) -> None:
        """The cloud read with sensor_msgs_py (the real API) holds the depth image's pixels on their rays and the
        semantic image's labels: a frame whose cloud, depth, semantic and camera_info all arrived."""
        import numpy as np
        from sensor_msgs_py import point_cloud2

        def stamp(msg) -> tuple[int, int]:
            return msg.header.stamp.sec, msg.header.stamp.nanosec

        others = {suffix: {stamp(msg): msg for _, msg in received[suffix]}
                  for suffix in ("depth", "semantic", "depth/camera_info")}
        frames = [msg for _, msg in reversed(received["points"]) if all(stamp(msg) in o for o in others.values())]
        self.assertTrue(frames, "no frame with its cloud, depth, semantic and camera_info all received")
        cloud = frames[0]
        depth_msg, semantic_msg, info = (others[suffix][stamp(cloud)] for suffix in others)

        def pixels(msg, dtype: str, size: int):
            rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
            return rows[:, : msg.width * size].copy().view(dtype)

        depth, semantic = pixels(depth_msg, "<f4", 4), pixels(semantic_msg, "u1", 1)
        points = point_cloud2.read_points(cloud, field_names=("x", "y", "z", "label"), skip_nans=False)
        points = np.asarray(points).reshape(HEIGHT, WIDTH)
        valid = np.isfinite(depth) & (depth > 0)
        self.assertTrue(valid.any(), "the depth image has no valid pixel")
        np.testing.assert_array_equal(points["z"][valid], depth[valid])
        self.assertTrue(np.isnan(points["z"][~valid]).all())
        fx, cx, fy, cy = info.k[0], info.k[2], info.k[4], info.k[5]
        v, u = np.mgrid[0:HEIGHT, 0:WIDTH]
        np.testing.assert_allclose(points["x"][valid], ((u - cx) / fx * depth)[valid], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(points["y"][valid], ((v - cy) / fy * depth)[valid], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(points["label"], semantic)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_exit_code(self, proc_info) -> None:
        """launch stops the node with SIGINT (SIGTERM if that is not enough): it must exit cleanly, with 0."""
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0])
