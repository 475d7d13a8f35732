"""A small rosbag2 recorded from synthetic street scenes (camera, depth, LiDAR, tf, labels), with known answers.

``write_synthetic_bag`` writes, with rosbags (no ROS install needed), one frame per synthetic scene
(``panopticdepth_core.data.synthetic.render_scene`` of ``scene_seed(seed, i)``; consecutive frames are different
scenes, not a moving camera), header stamps ``START_STAMP_NS + i / rate_hz``:

=========================== ======================================== ============================================
topic                       type                                     content
=========================== ======================================== ============================================
/camera/image_raw           sensor_msgs/msg/Image rgb8               the rendered image, frame camera_optical_frame
/camera/camera_info         sensor_msgs/msg/CameraInfo               pinhole K (plumb_bob, D = 0), P = [K | 0]
/camera/depth/image_raw     sensor_msgs/msg/Image 32FC1 (or 16UC1)   exact z-depth, metres, NaN where none (sky);
                                                                     16UC1: millimetres, 0 where none or > 65.535 m
/lidar/points               sensor_msgs/msg/PointCloud2              x, y, z, intensity (float32), ring (uint16) in
                                                                     frame "lidar", stamped LIDAR_DELAY_NS later
/tf_static                  tf2_msgs/msg/TFMessage                   base_link -> camera_link -> camera_optical_frame,
                                                                     base_link -> lidar (once, transient local)
/tf (lidar_tf="dynamic")    tf2_msgs/msg/TFMessage                   base_link -> lidar at every LiDAR stamp instead
/camera/semantic            sensor_msgs/msg/Image mono8              Cityscapes train ids, 255 void
/camera/instance            sensor_msgs/msg/Image 16UC1              1..K per visible thing, 0 elsewhere
/camera/panoptic (optional) sensor_msgs/msg/Image 32SC1              train_id * 1000 + instance, -1 void
=========================== ======================================== ============================================

The LiDAR is simulated from the exact depth: ``LIDAR_BEAMS`` image rows (a 32-beam scanner's rings), every
second column, sky skipped; each such pixel is back-projected into the camera optical frame and expressed in
the LiDAR frame, which sits ``lidar_offset`` = (x, y, z, roll, pitch, yaw) from camera_link (x forward, y left,
z up, like base_link), so a wrong extrinsic moves every point. Also in the cloud, to exercise a projection:
"occluded twins" (for about 1 in 8 points a second point 30 % farther along the same camera ray, seen by the
offset LiDAR but hidden from the camera: the nearest point per pixel must win) and points behind the camera and
far to the sides (outside the image). Points are shuffled. ``synthetic_frame`` returns every frame's exact
data and which pixels the in-view points came from, so tests can check an extraction against the truth.

With ``sequence=s`` the frames are instead drive s (``panopticdepth_core.data.synthetic_sequence``): one
continuous recording of a camera driving along a street, thing ids persistent (``/camera/instance`` = object
index + 1), and ``/tf`` carrying odom -> base_link at every camera stamp (the camera's motion; base_link pitches
and yaws with the camera).

Deterministic per arguments. Bag receive (log) times are header stamps + RECEIVE_DELAY_NS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from panopticdepth_core.data.classes import LABEL_DIVISOR, VOID_CLASS, VOID_PANOPTIC_ID
from panopticdepth_core.data.sample import Sample
from panopticdepth_core.data.synthetic import render_scene, scene_seed

from ..messages import (
    CAMERA_INFO,
    IMAGE,
    POINT_CLOUD2,
    camera_info_message,
    get_store,
    image_message,
    instance_image,
    make_header,
    panoptic_image,
    pointcloud2_message,
    semantic_image,
    serialize,
    split_stamp,
)
from .errors import BagError
from .io import TF_MESSAGE, TF_STATIC_TOPIC, TF_TOPIC, check_writer_options, offered_qos, open_writer
from .tf_buffer import euler_to_matrix, invert_transform, make_transform, matrix_to_quaternion, transform_points

IMAGE_TOPIC = "/camera/image_raw"
CAMERA_INFO_TOPIC = "/camera/camera_info"
DEPTH_TOPIC = "/camera/depth/image_raw"
LIDAR_TOPIC = "/lidar/points"
SEMANTIC_TOPIC = "/camera/semantic"
INSTANCE_TOPIC = "/camera/instance"
PANOPTIC_TOPIC = "/camera/panoptic"

ODOM_FRAME = "odom"
BASE_FRAME = "base_link"
CAMERA_LINK_FRAME = "camera_link"
CAMERA_FRAME = "camera_optical_frame"
LIDAR_FRAME = "lidar"

START_STAMP_NS = 1_700_000_000 * 1_000_000_000
LIDAR_DELAY_NS = 3_000_000  # LiDAR header stamps trail the camera's by 3 ms
RECEIVE_DELAY_NS = 2_000_000  # bag log time = header stamp + 2 ms
LIDAR_BEAMS = 32
TWIN_FRACTION = 0.125
TWIN_RANGE_FACTOR = 1.3

#: camera_link in base_link: 1.2 m forward, 1.4 m up, level.
BASE_TO_CAMERA_LINK = (1.2, 0.0, 1.4, 0.0, 0.0, 0.0)
#: Default pose of the LiDAR in camera_link (x, y, z metres; roll, pitch, yaw radians): 0.1 m behind and 0.3 m
#: above the camera, tilted and turned a few degrees.
DEFAULT_LIDAR_OFFSET = (-0.1, 0.0, 0.3, 0.02, 0.04, 0.06)
#: camera_link (x forward, y left, z up) <- camera_optical_frame (x right, y down, z forward).
LINK_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])

CLOUD_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"), ("ring", "<u2")])
DEPTH_ENCODINGS = ("32FC1", "16UC1")


@dataclass
class SyntheticFrame:
    """One frame of a synthetic bag with its exact answers."""

    index: int
    stamp_ns: int  # camera header stamp
    lidar_stamp_ns: int
    sample: Sample  # image, semantic, instance, exact z-depth (0 on sky), intrinsics
    lidar_pixels: np.ndarray  # (N, 2) int64 (row, col) of the pixels the in-view points were sampled at
    cloud: np.ndarray  # (M,) CLOUD_DTYPE points in the LiDAR frame (M > N: twins and out-of-view points)


def pose_matrix(pose: tuple[float, ...]) -> np.ndarray:
    """(x, y, z, roll, pitch, yaw) -> (4, 4) T_parent_child."""
    x, y, z, roll, pitch, yaw = (float(v) for v in pose)
    return make_transform(euler_to_matrix(roll, pitch, yaw), (x, y, z))


def static_transforms(lidar_offset: tuple[float, ...] = DEFAULT_LIDAR_OFFSET) -> dict[tuple[str, str], np.ndarray]:
    """{(parent, child): T_parent_child} of the bag's /tf_static (base_link -> lidar included)."""
    base_link = pose_matrix(BASE_TO_CAMERA_LINK)
    return {
        (BASE_FRAME, CAMERA_LINK_FRAME): base_link,
        (CAMERA_LINK_FRAME, CAMERA_FRAME): make_transform(LINK_FROM_OPTICAL, (0.0, 0.0, 0.0)),
        (BASE_FRAME, LIDAR_FRAME): base_link @ pose_matrix(lidar_offset),
    }


def lidar_from_camera(lidar_offset: tuple[float, ...] = DEFAULT_LIDAR_OFFSET) -> np.ndarray:
    """(4, 4) T_lidar_optical: camera optical-frame points -> LiDAR-frame points."""
    return invert_transform(pose_matrix(lidar_offset)) @ make_transform(LINK_FROM_OPTICAL, (0.0, 0.0, 0.0))


def _sample_lidar(sample: Sample, rng: np.random.Generator, lidar_offset: tuple[float, ...]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (N, 2), cloud (M,)) of a simulated scan of ``sample``'s exact depth."""
    depth, k = sample.depth, np.asarray(sample.intrinsics, dtype=np.float64)
    height, width = depth.shape
    beams = max(1, min(LIDAR_BEAMS, height // 2))
    rows = np.unique(np.round(np.linspace(0.02 * (height - 1), 0.98 * (height - 1), beams)).astype(np.int64))
    starts = rng.integers(0, 2, size=rows.size)
    pix_rows = np.concatenate([np.full(len(range(s, width, 2)), r) for r, s in zip(rows, starts)])
    pix_cols = np.concatenate([np.arange(s, width, 2) for s in starts])
    rings = np.concatenate([np.full(len(range(s, width, 2)), i) for i, s in enumerate(starts)])
    keep = depth[pix_rows, pix_cols] > 0  # sky: no return
    pix_rows, pix_cols, rings = pix_rows[keep], pix_cols[keep], rings[keep]
    z = depth[pix_rows, pix_cols].astype(np.float64)
    rays = np.stack([(pix_cols - k[0, 2]) / k[0, 0], (pix_rows - k[1, 2]) / k[1, 1], np.ones_like(z)], axis=1)
    in_view = rays * z[:, None]  # (N, 3) optical frame
    twins = rng.random(z.size) < TWIN_FRACTION
    hidden = in_view[twins] * TWIN_RANGE_FACTOR  # same ray, farther: projects onto the same pixel, behind the surface
    to_lidar = lidar_from_camera(lidar_offset)
    grey = sample.image[pix_rows, pix_cols].mean(axis=1) / 255.0

    # out of view: behind the camera, and far to the sides of its field of view (checked against the image)
    n_out = 24
    behind = np.stack([rng.uniform(-15, -3, n_out), rng.uniform(-3, 3, n_out), rng.uniform(-1, 1, n_out)], axis=1)
    side = np.stack([rng.uniform(0.5, 3, n_out), rng.choice([-1.0, 1.0], n_out) * rng.uniform(10, 20, n_out),
                     rng.uniform(-1, 1, n_out)], axis=1)
    outside = np.concatenate([behind, side])  # (2 n_out, 3) LiDAR frame
    cam = transform_points(invert_transform(to_lidar), outside)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = k[0, 0] * cam[:, 0] / cam[:, 2] + k[0, 2]
        v = k[1, 1] * cam[:, 1] / cam[:, 2] + k[1, 2]
    visible = (cam[:, 2] > 0) & (u > -0.5) & (u < width - 0.5) & (v > -0.5) & (v < height - 0.5)
    outside = outside[~visible]

    xyz = np.concatenate([transform_points(to_lidar, in_view), transform_points(to_lidar, hidden), outside])
    cloud = np.zeros(xyz.shape[0], dtype=CLOUD_DTYPE)
    cloud["x"], cloud["y"], cloud["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    cloud["intensity"] = np.concatenate([grey, grey[twins], np.full(outside.shape[0], 0.1)])
    cloud["ring"] = np.concatenate([rings, rings[twins], np.zeros(outside.shape[0], np.int64)])
    cloud = cloud[rng.permutation(cloud.size)]
    return np.stack([pix_rows, pix_cols], axis=1), cloud


def synthetic_frame(index: int, size: tuple[int, int] = (256, 512), seed: int = 0, rate_hz: float = 10.0,
                    focal: float = 320.0, lidar_offset: tuple[float, ...] = DEFAULT_LIDAR_OFFSET,
                    profile: str = "streets", sequence: int | None = None) -> SyntheticFrame:
    """Frame ``index`` of ``write_synthetic_bag`` with the same arguments, with its exact answers."""
    if sequence is None:
        sample = render_scene(scene_seed(seed, index), (int(size[0]), int(size[1])), focal, profile=profile)
    else:
        sample = _drive(seed, sequence, (int(size[0]), int(size[1])), focal, profile).frame(index, rate_hz)
    stamp = START_STAMP_NS + int(round(index * 1e9 / rate_hz))
    rng = np.random.default_rng([seed, index, 0x11DA2])
    pixels, cloud = _sample_lidar(sample, rng, lidar_offset)
    return SyntheticFrame(index, stamp, stamp + LIDAR_DELAY_NS, sample, pixels, cloud)


class _DriveCache:
    """A drive's scene and motion, drawn once per (seed, sequence, size, focal, profile)."""

    def __init__(self, seed: int, sequence: int, size: tuple[int, int], focal: float, profile: str) -> None:
        from panopticdepth_core.data.synthetic_layout import sample_scene
        from panopticdepth_core.data.synthetic_sequence import sample_motion

        self.scene = sample_scene(scene_seed(seed, sequence), size, focal, profile)
        self.motion = sample_motion(self.scene)

    def frame(self, index: int, rate_hz: float) -> Sample:
        from panopticdepth_core.data.synthetic_sequence import render_drive_frame

        return render_drive_frame(self.scene, self.motion, index, rate_hz)


_DRIVES: dict[tuple, _DriveCache] = {}


def _drive(seed: int, sequence: int, size: tuple[int, int], focal: float, profile: str) -> _DriveCache:
    key = (seed, sequence, size, focal, profile)
    if key not in _DRIVES:
        _DRIVES.clear()
        _DRIVES[key] = _DriveCache(seed, sequence, size, focal, profile)
    return _DRIVES[key]


def odom_to_base(sample: Sample) -> np.ndarray:
    """(4, 4) T_odom_base_link of a drive frame: the camera's pose (its ``extrinsic``) through the static
    base_link -> camera_optical_frame chain; odom is the street frame of the drive (x forward, y left, z up)."""
    from panopticdepth_core.data.synthetic_sequence import camera_to_world

    statics = static_transforms()
    base_to_optical = statics[(BASE_FRAME, CAMERA_LINK_FRAME)] @ statics[(CAMERA_LINK_FRAME, CAMERA_FRAME)]
    return camera_to_world(sample.meta["extrinsic"]) @ invert_transform(base_to_optical)


def tf_message(store, transforms: dict[tuple[str, str], np.ndarray], stamp_ns: int):
    """tf2_msgs/TFMessage of {(parent, child): T_parent_child}."""
    types = store.types
    items = []
    for (parent, child), matrix in transforms.items():
        q = matrix_to_quaternion(matrix[:3, :3])
        t = matrix[:3, 3]
        transform = types["geometry_msgs/msg/Transform"](
            translation=types["geometry_msgs/msg/Vector3"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
            rotation=types["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]),
                                                             w=float(q[3])),
        )
        items.append(types["geometry_msgs/msg/TransformStamped"](
            header=make_header(store, *split_stamp(stamp_ns), parent), child_frame_id=child, transform=transform))
    return types[TF_MESSAGE](transforms=items)


def _depth_array(depth: np.ndarray, encoding: str) -> np.ndarray:
    if encoding == "32FC1":
        return np.where(depth > 0, depth, np.float32(np.nan)).astype("<f4")
    millimetres = np.rint(depth.astype(np.float64) * 1000.0)
    return np.where((depth > 0) & (millimetres <= 65535), millimetres, 0).astype("<u2")


def write_synthetic_bag(
    path: str | Path,
    num_frames: int,
    size: tuple[int, int] = (256, 512),
    seed: int = 0,
    storage: str = "mcap",
    distro: str = "humble",
    rate_hz: float = 10.0,
    focal: float = 320.0,
    with_lidar: bool = True,
    with_labels: bool = True,
    lidar_offset: tuple[float, ...] = DEFAULT_LIDAR_OFFSET,
    depth_encoding: str = "32FC1",
    with_panoptic: bool = False,
    lidar_tf: str = "static",
    profile: str = "streets",
    sequence: int | None = None,
) -> Path:
    """Write a rosbag2 folder at ``path`` (must not exist) and return its path. See the module docstring.

    ``depth_encoding``: "32FC1" (metres, NaN none) or "16UC1" (millimetres, 0 none). ``lidar_tf``: "static"
    (base_link -> lidar on /tf_static) or "dynamic" (on /tf, one message per LiDAR scan). ``sequence``: write
    drive ``sequence`` (one continuous recording, odom -> base_link on /tf) instead of independent scenes.
    """
    check_writer_options(storage, distro)
    if depth_encoding not in DEPTH_ENCODINGS:
        raise BagError(f"depth_encoding must be one of {DEPTH_ENCODINGS}, got {depth_encoding!r}")
    if lidar_tf not in ("static", "dynamic"):
        raise BagError(f"lidar_tf must be 'static' or 'dynamic', got {lidar_tf!r}")
    if num_frames < 0 or not rate_hz > 0 or len(lidar_offset) != 6:
        raise BagError(f"need num_frames >= 0, rate_hz > 0 and a 6-value lidar_offset, got {num_frames}, "
                         f"{rate_hz}, {lidar_offset}")
    path = Path(path)
    store = get_store(distro)
    statics = static_transforms(lidar_offset)
    lidar_edge = statics.pop((BASE_FRAME, LIDAR_FRAME))
    if not (with_lidar and lidar_tf == "dynamic"):
        statics[(BASE_FRAME, LIDAR_FRAME)] = lidar_edge

    with open_writer(path, storage, distro) as writer:
        def connect(topic: str, msgtype: str, qos: tuple = ()):
            return writer.add_connection(topic, msgtype, typestore=store, offered_qos_profiles=list(qos))

        conns = {
            "image": connect(IMAGE_TOPIC, IMAGE),
            "info": connect(CAMERA_INFO_TOPIC, CAMERA_INFO),
            "depth": connect(DEPTH_TOPIC, IMAGE),
            "tf_static": connect(TF_STATIC_TOPIC, TF_MESSAGE, (offered_qos(transient_local=True),)),
        }
        if with_lidar:
            conns["lidar"] = connect(LIDAR_TOPIC, POINT_CLOUD2)
        if (with_lidar and lidar_tf == "dynamic") or sequence is not None:
            conns["tf"] = connect(TF_TOPIC, TF_MESSAGE)
        if with_labels:
            conns["semantic"] = connect(SEMANTIC_TOPIC, IMAGE)
            conns["instance"] = connect(INSTANCE_TOPIC, IMAGE)
        if with_panoptic:
            conns["panoptic"] = connect(PANOPTIC_TOPIC, IMAGE)

        def write(key: str, msg, typename: str, stamp_ns: int) -> None:
            writer.write(conns[key], stamp_ns + RECEIVE_DELAY_NS, serialize(msg, typename, store))

        write("tf_static", tf_message(store, statics, START_STAMP_NS), TF_MESSAGE, START_STAMP_NS - 2 * RECEIVE_DELAY_NS)
        for index in range(num_frames):
            frame = synthetic_frame(index, size, seed, rate_hz, focal, lidar_offset, profile, sequence)
            sample = frame.sample
            if sequence is not None:
                write("tf", tf_message(store, {(ODOM_FRAME, BASE_FRAME): odom_to_base(sample)}, frame.stamp_ns),
                      TF_MESSAGE, frame.stamp_ns - 1)
            header = make_header(store, *split_stamp(frame.stamp_ns), CAMERA_FRAME)
            write("image", image_message(store, header, sample.image, "rgb8"), IMAGE, frame.stamp_ns)
            write("info", camera_info_message(store, header, sample.intrinsics, sample.image.shape[:2]), CAMERA_INFO,
                  frame.stamp_ns)
            write("depth", image_message(store, header, _depth_array(sample.depth, depth_encoding), depth_encoding),
                  IMAGE, frame.stamp_ns)
            if with_labels:
                write("semantic", semantic_image(store, header, sample.semantic), IMAGE, frame.stamp_ns)
                write("instance", instance_image(store, header, sample.instance), IMAGE, frame.stamp_ns)
            if with_panoptic:
                panoptic = np.where(sample.semantic == VOID_CLASS, VOID_PANOPTIC_ID,
                                    sample.semantic * LABEL_DIVISOR + sample.instance)
                write("panoptic", panoptic_image(store, header, panoptic), IMAGE, frame.stamp_ns)
            if with_lidar:
                if lidar_tf == "dynamic":
                    write("tf", tf_message(store, {(BASE_FRAME, LIDAR_FRAME): lidar_edge}, frame.lidar_stamp_ns),
                          TF_MESSAGE, frame.lidar_stamp_ns)
                lidar_header = make_header(store, *split_stamp(frame.lidar_stamp_ns), LIDAR_FRAME)
                write("lidar", pointcloud2_message(store, lidar_header, frame.cloud, is_dense=True), POINT_CLOUD2,
                      frame.lidar_stamp_ns)
    return path
