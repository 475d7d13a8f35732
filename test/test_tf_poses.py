"""The live node's camera poses from /tf and /tf_static (panopticdepth_ros.tf_poses), without ROS.

TFMessages are built and serialized with the rosbags type stores of Humble and Jazzy and fed as CDR bytes, as
node.py's raw subscriptions hand them over. The end-to-end test runs FramePipeline (the node's per-frame path)
past a parked car while the camera drives: the car keeps its id only when the poses are fed.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from panopticdepth_core.modeling.types import Segment
from panopticdepth_ros import messages as m
from panopticdepth_ros.bags.tf_buffer import TfBuffer, euler_to_matrix, make_transform, matrix_to_quaternion
from panopticdepth_ros.frame_pipeline import FramePipeline, PipelineSettings
from panopticdepth_ros.tf_poses import TF_MESSAGE, TfPoseSource

SECOND = 1_000_000_000
OPTICAL = "cam_optical"
#: base_link -> camera_link -> cam_optical: mounted 0.5 m ahead and 1.2 m up, optical axes (z ahead, x right).
MOUNT = make_transform(np.eye(3), (0.5, 0.0, 1.2))
OPTICAL_ROTATION = make_transform(euler_to_matrix(-math.pi / 2, 0.0, -math.pi / 2), (0.0, 0.0, 0.0))


def transform_stamped(store, parent: str, child: str, matrix: np.ndarray, stamp_ns: int, quaternion=None):
    types = store.types
    q = matrix_to_quaternion(matrix[:3, :3]) if quaternion is None else quaternion
    t = matrix[:3, 3]
    return types["geometry_msgs/msg/TransformStamped"](
        header=m.make_header(store, *m.split_stamp(stamp_ns), parent),
        child_frame_id=child,
        transform=types["geometry_msgs/msg/Transform"](
            translation=types["geometry_msgs/msg/Vector3"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
            rotation=types["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                                             w=float(q[3]))))


def tf_bytes(store, items) -> bytes:
    """CDR of a tf2_msgs/TFMessage of ``items`` (TransformStamped objects)."""
    return m.serialize(store.types[TF_MESSAGE](transforms=list(items)), TF_MESSAGE, store)


def static_tf(store) -> bytes:
    return tf_bytes(store, [transform_stamped(store, "base_link", "camera_link", MOUNT, 0),
                            transform_stamped(store, "/camera_link", OPTICAL, OPTICAL_ROTATION, 0)])


def odom_to_base(x: float, y: float, yaw: float) -> np.ndarray:
    return make_transform(euler_to_matrix(0.0, 0.0, yaw), (x, y, 0.0))


def header(store, stamp_ns: int, frame: str = OPTICAL):
    return m.make_header(store, *m.split_stamp(stamp_ns), frame)


@pytest.fixture(params=["humble", "jazzy"])
def distro(request) -> str:
    return request.param


def test_chained_static_and_dynamic_edges_give_the_interpolated_pose(distro):
    store = m.get_store(distro)
    source = TfPoseSource(distro=distro)
    assert source.add(static_tf(store), static=True) == 2
    samples = {10 * SECOND: odom_to_base(1.0, 2.0, 0.1), 11 * SECOND: odom_to_base(3.0, 2.0, 0.3)}
    for stamp, matrix in samples.items():
        assert source.add(tf_bytes(store, [transform_stamped(store, "odom", "base_link", matrix, stamp)])) == 1

    pose = source(header(store, 10 * SECOND + SECOND // 2))  # halfway: x 2.0, yaw 0.2
    np.testing.assert_allclose(pose, odom_to_base(2.0, 2.0, 0.2) @ MOUNT @ OPTICAL_ROTATION, atol=1e-9)
    assert source.world_frame == "odom"  # the root of the optical frame's tree
    # the optical axes: z (ahead) is the robot's heading, x (right) its -y
    np.testing.assert_allclose(pose[:3, 2], [math.cos(0.2), math.sin(0.2), 0.0], atol=1e-9)
    np.testing.assert_allclose(pose[:3, 0], [math.sin(0.2), -math.cos(0.2), 0.0], atol=1e-9)
    # at a sample's stamp exactly; and a named fixed frame inside the chain
    np.testing.assert_allclose(source(header(store, 11 * SECOND)),
                               samples[11 * SECOND] @ MOUNT @ OPTICAL_ROTATION, atol=1e-9)
    named = TfPoseSource(fixed_frame="base_link", distro=distro)
    named.add(static_tf(store), static=True)
    np.testing.assert_allclose(named(header(store, 0)), MOUNT @ OPTICAL_ROTATION, atol=1e-12)
    assert source.diagnostics()["frames with a /tf pose"] == 2


def test_the_root_found_first_stays_the_world_when_map_appears_above_odom(distro):
    store = m.get_store(distro)
    source = TfPoseSource(distro=distro)
    source.add(static_tf(store), static=True)
    source.add(tf_bytes(store, [transform_stamped(store, "odom", "base_link", odom_to_base(1, 0, 0), SECOND)]))
    first = source(header(store, SECOND))
    source.add(tf_bytes(store, [transform_stamped(store, "map", "odom", odom_to_base(50, 50, 1.0), SECOND)]))
    np.testing.assert_allclose(source(header(store, SECOND)), first)  # still in odom, not in map
    assert source.world_frame == "odom"


def test_a_live_buffer_keeps_only_the_cache_window_of_each_edge(distro):
    """100 Hz for 40 s: 4000 samples in, the edge holds only the last 10 s; static edges stay; a recording
    (no cache) keeps everything, as the bag tool needs."""
    store = m.get_store(distro)
    source = TfPoseSource(distro=distro, tolerance_s=0.05)
    source.add(static_tf(store), static=True)
    recording = TfBuffer()
    count, step = 4000, SECOND // 100
    for i in range(count):
        matrix = odom_to_base(0.01 * i, 0.0, 0.0)  # 1 m/s
        source.add(tf_bytes(store, [transform_stamped(store, "odom", "base_link", matrix, i * step)]))
        recording.set_transform("odom", "base_link", matrix[:3, 3], (0, 0, 0, 1), i * step)
    held = source.buffer.samples("base_link")
    assert 1000 <= held <= 1001, held  # 10 s at 100 Hz (both ends of the window)
    assert source.buffer.samples("camera_link") == source.buffer.samples(OPTICAL) == 1
    assert recording.samples("base_link") == count
    latest = (count - 1) * step
    pose = source(header(store, latest - 5 * SECOND))
    np.testing.assert_allclose(pose[:3, 3], [0.01 * (count - 1) - 5.0 + 0.5, 0.0, 1.2], atol=1e-9)
    assert source(header(store, latest - 20 * SECOND)) is None  # pruned: no pose, no exception
    assert "not at" in source.last_problem
    # samples arriving late but inside the window are kept and pruned like the others
    source.add(tf_bytes(store, [transform_stamped(store, "odom", "base_link", odom_to_base(0, 0, 0),
                                                  latest - 3 * SECOND + 1)]))
    assert source.buffer.samples("base_link") <= 1002


def test_time_going_back_past_the_window_restarts_the_edge(distro):
    """A bag played again (or a clock reset): its /tf must be usable at once, not refused as old data."""
    store = m.get_store(distro)
    source = TfPoseSource(distro=distro)
    source.add(static_tf(store), static=True)
    for i in range(30):
        source.add(tf_bytes(store, [transform_stamped(store, "odom", "base_link", odom_to_base(i, 0, 0),
                                                      100 * SECOND + i * SECOND // 10)]))
    source.add(tf_bytes(store, [transform_stamped(store, "odom", "base_link", odom_to_base(-7, 0, 0), 5 * SECOND)]))
    assert source.buffer.samples("base_link") == 1
    np.testing.assert_allclose(source(header(store, 5 * SECOND))[:3, 3], [-6.5, 0.0, 1.2], atol=1e-9)


def test_missing_transforms_give_none_and_say_why_once(distro):
    store = m.get_store(distro)
    warnings: list[str] = []
    notes: list[str] = []
    clock = [0.0]
    source = TfPoseSource(distro=distro, warn=warnings.append, info=notes.append, clock=lambda: clock[0])
    for _ in range(3):
        clock[0] += 10.0  # past the throttle period each time
        assert source(header(store, SECOND)) is None  # nothing received yet
    assert "not in /tf" in source.last_problem and "none yet" in source.last_problem
    # a camera without any tf tree is a normal setup: one note, no warning every few seconds
    assert warnings == [] and len(notes) == 1 and "camera frame" in notes[0]
    clock[0] = 0.0
    source.add(static_tf(store), static=True)
    assert source(header(store, SECOND)) is None  # only /tf_static yet: its root base_link moves with the robot
    assert "only static transforms" in source.last_problem
    source.add(tf_bytes(store, [transform_stamped(store, "odom", "base_link", odom_to_base(0, 0, 0), 10 * SECOND)]))
    assert source(header(store, 10 * SECOND + 200_000_000)) is None  # 0.2 s past the newest: beyond tolerance
    assert source(header(store, 10 * SECOND + 50_000_000)) is not None  # 0.05 s: within the 0.1 s tolerance
    assert source(header(store, SECOND, frame="")) is None
    assert source(header(store, SECOND, frame="other_camera")) is None
    unconnected = TfPoseSource(fixed_frame="map", distro=distro)
    unconnected.add(static_tf(store), static=True)
    unconnected.add(tf_bytes(store, [transform_stamped(store, "map", "odom", np.eye(4), 0)]))
    assert unconnected(header(store, 0)) is None and "different trees" in unconnected.last_problem
    assert source(SimpleNamespace(frame_id=OPTICAL, stamp=None)) is None  # a broken header: None, no exception
    # six failed lookups within the throttle period: one warning; after it, the next one with a count
    assert len(warnings) == 1 and "3D position cue out" in warnings[0]
    clock[0] = 10.0
    source(header(store, 0, frame="other_camera"))
    assert len(warnings) == 2 and "more like this" in warnings[1]
    assert source.diagnostics()["frames without a /tf pose"] == 9
    asked = TfPoseSource(fixed_frame="odom", distro=distro, warn=warnings.append, clock=lambda: clock[0])
    clock[0] = 100.0
    assert asked(header(store, SECOND)) is None and "3D position cue out" in warnings[-1]  # a frame was asked for


def test_transforms_tf2_ignores_are_ignored_and_the_rest_of_the_message_is_kept(distro):
    store = m.get_store(distro)
    warnings: list[str] = []
    source = TfPoseSource(distro=distro, warn=warnings.append, warn_period=0.0)
    good = transform_stamped(store, "odom", "base_link", odom_to_base(1, 0, 0), SECOND)
    bad = [
        transform_stamped(store, "odom", "odom", odom_to_base(1, 0, 0), SECOND),  # to itself
        transform_stamped(store, "odom", "", odom_to_base(1, 0, 0), SECOND),  # no child
        transform_stamped(store, "", "x", odom_to_base(1, 0, 0), SECOND),  # no parent
        transform_stamped(store, "odom", "y", make_transform(np.eye(3), (math.nan, 0, 0)), SECOND),  # NaN
        transform_stamped(store, "odom", "z", np.eye(4), SECOND, quaternion=(0.0, 0.0, 0.0, 0.9)),  # not unit
    ]
    assert source.add(tf_bytes(store, [bad[0], good, *bad[1:]])) == 1
    assert source.ignored == 5 and len(warnings) == 5
    assert source.buffer.frames == {"odom", "base_link"}
    assert any("squared norm" in w for w in warnings) and any("itself" in w for w in warnings)
    # nearly unit (within tf2's 0.01) is accepted and normalised
    near = transform_stamped(store, "base_link", "w", np.eye(4), 0, quaternion=(0.0, 0.0, 0.0, 1.004))
    assert source.add(tf_bytes(store, [near]), static=True) == 1
    # bytes that are no TFMessage: ignored, no exception
    assert source.add(b"\x00\x01\x00\x00\xff\xff\xff\x7f") == 0
    assert source.ignored == 6 and "deserialize" in warnings[-1]


# ------------------------------------------------------------------------------------------------ end to end
H, W, FX = 48, 96, 60.0
CAR = 13
CAR_DEPTH = 10.0
STEP_M = 3.0  # the robot drives 3 m between frames: the parked car jumps 18 px in the image (no overlap), and
#               3 m is the tracker's whole 3D gate at 10 m (2 m + 10 %)


class ParkedCar:
    """A parked car 10 m ahead (5.5 m right at first) while the robot drives straight on: frame t (read from the first pixel) shows
    it STEP_M * t metres further left, numbered at random as the per-frame post-processing would."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(3)

    def __call__(self, rgb: np.ndarray, focal: float | None = None):
        t = int(rgb[0, 0, 0])
        x_cam = 5.5 - STEP_M * t  # metres right of the optical axis
        u = int(round((W - 1) / 2 + FX * x_cam / CAR_DEPTH))
        number = int(self.rng.integers(1, 9))
        panoptic = np.zeros((H, W), np.int32)
        semantic = np.zeros((H, W), np.int32)
        depth = np.full((H, W), 40.0, np.float32)
        panoptic[20:30, u - 4:u + 4] = CAR * 1000 + number
        semantic[20:30, u - 4:u + 4] = CAR
        depth[20:30, u - 4:u + 4] = CAR_DEPTH
        self.panoptic = panoptic
        instance = np.where(panoptic % 1000 > 0, panoptic % 1000, 0).astype(np.int32)
        segments = [Segment(CAR * 1000 + number, CAR, True, 0.9, 80, number)]
        return SimpleNamespace(panoptic=panoptic, semantic=semantic, instance=instance, depth=depth,
                               segments=segments)


def _drive(distro: str, feed_poses: bool, tf_from_frame: int = 0) -> tuple[list[int], TfPoseSource]:
    """Run five frames through FramePipeline; /tf (robot moving along odom's -y, i.e. the optical +x) is fed
    just before each frame from ``tf_from_frame`` on. Returns the car's id in ~/panoptic per frame."""
    store = m.get_store(distro)
    predictor = ParkedCar()
    pipeline = FramePipeline(predictor, PipelineSettings(distro=distro))
    source = TfPoseSource(distro=distro)
    if feed_poses:
        pipeline.camera_poses = source
        source.add(static_tf(store), static=True)
    ids = []
    k = np.array([[FX, 0, (W - 1) / 2], [0, FX, (H - 1) / 2], [0, 0, 1]])
    for t in range(5):
        stamp = 50 * SECOND + t * SECOND // 10
        if t >= tf_from_frame:
            source.add(tf_bytes(store, [transform_stamped(store, "odom", "base_link",
                                                          odom_to_base(0.0, -STEP_M * t, 0.0), stamp)]))
        rgb = np.zeros((H, W, 3), np.uint8)
        rgb[0, 0, 0] = t
        image = m.image_message(store, header(store, stamp), rgb, "rgb8")
        info = m.camera_info_message(store, header(store, stamp), k, (H, W))
        # the 3D cue needs the intrinsics, which the pipeline reads when a 3D output is wanted (here the cloud)
        result = pipeline.process(m.serialize(image, m.IMAGE, store), m.serialize(info, m.CAMERA_INFO, store),
                                  ["panoptic", "points"])
        assert not result.skipped, result.reason
        panoptic = np.frombuffer(m.deserialize(result.outputs["panoptic"][1], m.IMAGE, store).data, "<i4")
        values = set(np.unique(panoptic.reshape(H, W)[predictor.panoptic > 0]).tolist())
        assert len(values) == 1
        ids.append(values.pop())
    return ids, source


def test_a_parked_car_keeps_its_id_from_a_moving_camera_only_with_poses(distro):
    with_poses, source = _drive(distro, feed_poses=True)
    assert len(set(with_poses)) == 1, with_poses
    assert source.posed_frames == 5 and source.unposed_frames == 0
    without, _ = _drive(distro, feed_poses=False)
    assert len(set(without)) > 1, without  # in the camera frame the car "moves" 3.5 m a frame: new ids


def test_poses_that_start_after_the_first_frames_are_used_from_then_on(distro):
    """The live case: the first images arrive before the first /tf. Those frames go without a pose; from the first
    pose on the tracker compares positions in odom, so the car keeps one id from then on."""
    ids, source = _drive(distro, feed_poses=True, tf_from_frame=2)
    assert source.unposed_frames == 2 and source.posed_frames == 3
    assert len(set(ids[2:])) == 1, ids


def test_edge_samples_stay_sorted_through_late_arrivals_growth_and_pruning():
    """The edge's in-place storage against a plain reference: every sample kept, sorted by stamp (ties in arrival
    order), late ones inserted at their place, and pruning drops exactly those older than the window."""
    from panopticdepth_ros.bags.tf_buffer import _Edge

    rng = np.random.default_rng(3)
    edge, reference = _Edge("odom", static=False), []
    cache = 400
    for step in range(3000):
        stamp = step * 10 - (int(rng.integers(0, 200)) if rng.random() < 0.1 else 0)  # 10 % arrive late
        if rng.random() < 0.02:
            stamp = reference[-1][0] if reference else stamp  # a repeated stamp
        value = rng.random(7)
        edge.add(stamp, value[:3], value[3:])
        reference.append((stamp, step, value))
        if step % 7 == 0:
            edge.prune(cache)
            newest = max(s for s, _, _ in reference)
            kept = [r for r in reference if r[0] >= newest - cache]
            reference = kept or reference[-1:]
        ordered = sorted(reference, key=lambda r: (r[0], r[1]))
        stamps, translations, quaternions = edge.arrays()
        assert stamps.tolist() == [r[0] for r in ordered]
        np.testing.assert_array_equal(np.hstack([translations, quaternions]), np.stack([r[2] for r in ordered]))
    assert len(edge) <= 60  # bounded by the window (400 / 10 + the late ones)
