"""The node's offline twin: run a rosbag2's camera topic through the node's FramePipeline and write its outputs.

Same parameters (params.py), same model loading (loading.py), same per-frame code and message builders
(frame_pipeline.py, messages.py) as the live node (panopticdepth_ros/node.py), with rosbags reading and writing the CDR bytes instead of
rclpy. Every output message carries the input image's header and is written at the image's log time, on the
topics the node would publish (``<namespace>/panoptic``, ...), with the ROS message definitions in the bag so
rviz (via ``ros2 bag play``) and Foxglove decode them. camera_info: the latest one logged at or before the image.

The output is written into a temporary folder next to it and renamed at the end, so an interrupted or failed
run never leaves a bag that looks complete; an existing output is never overwritten.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import messages as m
from ..frame_pipeline import OUTPUT_TYPES, OUTPUTS, FramePipeline
from ..params import NodeParams
from .errors import BagError
from .io import (
    TF_MESSAGE,
    TF_STATIC_TOPIC,
    check_writer_options,
    connections_by_topic,
    describe_topics,
    offered_qos,
    open_reader,
    open_writer,
    read_messages,
    types_line,
)

DEFAULT_NAMESPACE = "/panopticdepth_node"
IMAGE_TYPES = (m.IMAGE, m.COMPRESSED_IMAGE)
#: Encodings that make an Image topic a camera image for auto-detection (labels are mono8/16UC1, depth 32FC1).
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8")
DIAGNOSTICS_PERIOD_NS = 1_000_000_000
NO_CAMERA_INFO = ("no camera_info topic in the bag: ~/points, ~/instances, ~/detections_3d and ~/depth/camera_info are "
                  "not written "
                  "(the 2D outputs are) and ~/depth assumes the model's canonical camera; give the intrinsics with "
                  "--focal PX (a pinhole camera, fx = fy = PX, principal point at the image centre) or with "
                  "--camera-info-topic TOPIC")


@dataclass
class BagSummary:
    """What a run did."""

    input: Path
    output: Path
    image_topic: str
    camera_info_topic: str | None
    frames_in: int = 0
    processed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # code -> frames
    last_reasons: dict[str, str] = field(default_factory=dict)  # code -> last reason
    warnings: Counter[str] = field(default_factory=Counter)  # non-fatal warning -> frames
    written: Counter[str] = field(default_factory=Counter)  # output topic -> messages
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # how the input was read: types assumed, files missing, ...
    focal: float | None = None  # --focal: pinhole camera_info made for a bag without one

    def lines(self) -> list[str]:
        """Human-readable report."""
        rate = self.processed / self.seconds if self.seconds > 0 else 0.0
        camera = self.camera_info_topic or (f"(none: pinhole fx = fy = {self.focal:g} px from --focal)"
                                            if self.focal else "(none)")
        out = [f"{self.input} -> {self.output}",
               f"image topic {self.image_topic}, camera_info topic {camera}",
               *self.notes,
               f"frames in {self.frames_in}, processed {self.processed}, skipped {sum(self.skipped.values())} "
               f"({self.seconds:.1f} s, {rate:.2f} frames/s)"]
        for code, count in sorted(self.skipped.items()):
            out.append(f"  skipped ({code}): {count}, e.g. {self.last_reasons.get(code, '')}")
        for text, count in sorted(self.warnings.items()):
            out.append(f"  warning on {count} frames: {text}")
        for topic, count in sorted(self.written.items()):
            out.append(f"  wrote {count:5d} x {topic}")
        return out


def _image_size(data: bytes, compressed: bool, store) -> tuple[int, int] | None:
    """(height, width) of an image message without decoding its pixels; None when unreadable (the per-frame
    path then reports the frame)."""
    try:
        if compressed:
            from PIL import Image

            msg = m.deserialize(data, m.COMPRESSED_IMAGE, store)
            with Image.open(io.BytesIO(np.asarray(msg.data, dtype=np.uint8).tobytes())) as image:
                return image.height, image.width
        msg = m.deserialize(data, m.IMAGE, store)
        return int(msg.height), int(msg.width)
    except Exception:  # noqa: BLE001 - undecodable: the pipeline skips the frame and says why
        return None


def _first_encoding(reader, connection) -> str | None:
    """Lower-case encoding of the topic's first Image (None if it has none or it does not decode)."""
    store = m.get_store("humble")
    for _, _, data in read_messages(reader, [connection]):
        try:
            return str(m.deserialize(data, m.IMAGE, store).encoding).lower()
        except Exception:  # an undecodable message: not a usable camera topic
            return None
    return None


def _detect_image_topic(reader, by_topic: dict[str, list], table: str) -> str:
    """The one CompressedImage or colour Image topic; else the bag's only Image topic (a mono or Bayer camera's
    ``/camera/image_raw``: the per-frame path says if its encoding is unsupported); else BagError."""
    candidates = [t for t, c in by_topic.items() if c[0].msgtype == m.COMPRESSED_IMAGE]
    candidates += [t for t, c in by_topic.items()
                   if c[0].msgtype == m.IMAGE and _first_encoding(reader, c[0]) in COLOR_ENCODINGS]
    if not candidates:
        candidates = [t for t, c in by_topic.items() if c[0].msgtype == m.IMAGE]
        if len(candidates) > 1:
            raise BagError(f"no colour image topic in the bag, and several Image topics {sorted(candidates)}; "
                           f"choose one with --image-topic. Its topics:\n{table}")
    if len(candidates) != 1:
        what = "no image topic" if not candidates else f"several image topics {sorted(candidates)}"
        raise BagError(f"{what} in the bag; choose one with --image-topic. Its topics:\n{table}")
    return candidates[0]


def select_topics(reader, image_topic: str | None = None,
                  camera_info_topic: str | None = None) -> tuple[list, list, bool]:
    """(image connections, camera_info connections, compressed) for the given or auto-detected topics.

    Auto-detection: the one CompressedImage topic or Image topic with a colour encoding, else the only Image
    topic (legacy type names such as ``sensor_msgs/Image`` count as their ROS 2 types); camera_info: the
    ``camera_info`` next to the image (``/cam/image_raw`` -> ``/cam/camera_info``), else the only CameraInfo
    topic, else none (3D outputs off). Ambiguous or missing topics raise BagError listing the bag's topics.
    """
    by_topic = connections_by_topic(reader)
    table = describe_topics(reader)

    if image_topic:
        if image_topic not in by_topic:
            raise BagError(f"image topic {image_topic} is not in the bag; its topics:\n{table}")
        msgtype = by_topic[image_topic][0].msgtype
        if msgtype not in IMAGE_TYPES:
            raise BagError(f"image topic {image_topic} has type {msgtype}; expected sensor_msgs/msg/Image or "
                           "CompressedImage")
    else:
        image_topic = _detect_image_topic(reader, by_topic, table)
    compressed = by_topic[image_topic][0].msgtype == m.COMPRESSED_IMAGE

    info_topics = [t for t, c in by_topic.items() if c[0].msgtype == m.CAMERA_INFO]
    if camera_info_topic:
        if camera_info_topic not in by_topic:
            raise BagError(f"camera_info topic {camera_info_topic} is not in the bag; its topics:\n{table}")
        if camera_info_topic not in info_topics:
            raise BagError(f"camera_info topic {camera_info_topic} has type "
                           f"{by_topic[camera_info_topic][0].msgtype}; expected sensor_msgs/msg/CameraInfo")
    else:
        base = image_topic[: -len("/compressed")] if image_topic.endswith("/compressed") else image_topic
        sibling = base.rsplit("/", 1)[0] + "/camera_info"
        if sibling in info_topics:
            camera_info_topic = sibling
        elif len(info_topics) == 1:
            camera_info_topic = info_topics[0]
        elif len(info_topics) > 1:
            raise BagError(f"several camera_info topics {sorted(info_topics)} and none next to {image_topic}; "
                           f"choose one with --camera-info-topic. The bag's topics:\n{table}")
    infos = by_topic[camera_info_topic] if camera_info_topic else []
    return by_topic[image_topic], infos, compressed


def run_bag(
    input_path: str | Path,
    output_path: str | Path,
    params: NodeParams | None = None,
    image_topic: str | None = None,
    camera_info_topic: str | None = None,
    outputs: Iterable[str] | None = None,
    storage: str = "mcap",
    distro: str = "humble",
    namespace: str = DEFAULT_NAMESPACE,
    pipeline: FramePipeline | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    focal: float | None = None,
) -> BagSummary:
    """Process every image of ``input_path`` and write the node's outputs to the new bag ``output_path``.

    ``outputs``: output suffixes to write (default: those the parameters switch on); ``~/label_info`` and
    ``/diagnostics`` are always written. ``pipeline``: an already built pipeline (tests); otherwise one is
    built from ``params`` like the node does. ``focal``: for a bag without camera_info, the intrinsics of a
    pinhole camera (fx = fy = focal px, principal point at the image centre) for the 3D outputs. Raises
    BagError (or loading.ModelLoadError) with a clear message; on any failure the partial output is removed.
    """
    params = params or NodeParams()
    input_path, output_path = Path(input_path), Path(output_path)
    check_writer_options(storage, distro)
    if focal is not None and not (math.isfinite(focal) and focal > 0):
        raise BagError(f"--focal must be a positive number of pixels, got {focal}")
    wanted = list(params.enabled_outputs() if outputs is None else outputs)
    unknown = sorted(set(wanted) - set(OUTPUTS))
    if unknown:
        raise BagError(f"unknown outputs {unknown}; expected some of {list(OUTPUTS)}")
    wanted = [s for s in OUTPUTS if s in wanted]
    namespace = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if output_path.exists() or output_path.is_symlink():
        raise BagError(f"output {output_path} already exists; choose a new path (outputs are never overwritten)")
    if not output_path.parent.is_dir():
        raise BagError(f"output folder {output_path.parent} does not exist")

    reader = open_reader(input_path)
    try:
        image_conns, info_conns, compressed = select_topics(reader, image_topic, camera_info_topic)
        if focal is not None and info_conns:
            raise BagError(f"--focal gives the intrinsics of a bag without camera_info, but camera_info topic "
                           f"{info_conns[0].topic} is used; leave out --focal")
        summary = BagSummary(input_path, output_path, image_conns[0].topic,
                             info_conns[0].topic if info_conns else None, focal=focal)
        summary.notes = [*reader.notes, types_line(reader, [*image_conns, *info_conns], distro)]
        if not info_conns and focal is None:
            summary.notes.append(NO_CAMERA_INFO)
        for note in summary.notes:
            log(note)
        if pipeline is None:
            from ..loading import build_pipeline

            pipeline, model = build_pipeline(params, distro)
            log(model.describe())
        pipeline.settings.compressed_input = compressed
        if pipeline.settings.track and pipeline.camera_poses is None:
            pipeline.camera_poses, note = camera_pose_lookup(reader, pipeline.store, params.track_fixed_frame,
                                                             params.track_tf_tolerance)
            if note:
                summary.notes.append(note)
                log(note)
        staging = output_path.parent / f".{output_path.name}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir()
        except OSError as error:
            raise BagError(f"cannot write next to {output_path}: {error}") from error
        try:
            with open_writer(staging / output_path.name, storage, distro) as writer:
                try:
                    _convert(reader, writer, pipeline, image_conns, info_conns, wanted, namespace, summary, progress,
                             focal)
                except BagError as error:  # the input broke mid-way: say that the partial output is gone
                    raise BagError(f"{error}; no output was written") from error
            os.replace(staging / output_path.name, output_path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        reader.close()
    return summary


def camera_pose_lookup(reader, store, fixed_frame: str = "", tolerance_s: float = 0.1
                       ) -> tuple[Callable | None, str | None]:
    """(header -> pose of its frame in ``fixed_frame``, '' = the root of its tf tree, or None; a note for the
    summary) from the bag's /tf and /tf_static, for tracking in a fixed frame while the camera moves (the node's
    ``track_fixed_frame`` and ``track_tf_tolerance``). (None, None) without tf."""
    from .tf_buffer import TfBuffer, TransformError

    conns = [c for c in reader.connections if c.msgtype == TF_MESSAGE]
    if not conns:
        return None, None
    fixed_frame = fixed_frame.strip().lstrip("/")
    # 0.1 s by default: a pose a little past the last /tf sample still counts
    tf = TfBuffer(tolerance_ns=round(tolerance_s * 1e9))
    try:
        for connection, _, data in read_messages(reader, conns):
            tf.add_tf_message(m.deserialize(data, TF_MESSAGE, store), static=connection.topic == TF_STATIC_TOPIC)
    except Exception as error:  # noqa: BLE001 - a broken tf costs only the 3D tracking cue's world frame
        return None, f"tracking in the camera frame: the bag's /tf cannot be read ({type(error).__name__}: {error})"

    def lookup(header):
        """The pose, or None (the frame is not in the tree, or its stamp is outside the recorded /tf): the tracker
        then leaves that frame's 3D cue out."""
        frame = str(header.frame_id)
        try:
            root = fixed_frame or tf.root(frame)
            if root == frame.lstrip("/"):
                return None
            stamp = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
            return tf.lookup(root, frame, stamp)
        except TransformError:
            return None

    where = f"frame {fixed_frame!r}" if fixed_frame else "the root frame of the image's /tf tree"
    return lookup, f"tracking compares positions in {where} (camera motion removed)"


def _convert(reader, writer, pipeline: FramePipeline, image_conns, info_conns, wanted: list[str], namespace: str,
             summary: BagSummary, progress: bool, focal: float | None = None) -> None:
    from tqdm import tqdm

    store = pipeline.store
    pinholes: dict[tuple[int, int], object] = {}  # --focal: image size -> camera_info
    connections = {
        suffix: writer.add_connection(f"{namespace}/{suffix}", OUTPUT_TYPES[suffix], typestore=store,
                                      offered_qos_profiles=[offered_qos()])
        for suffix in wanted
    }
    label_conn = writer.add_connection(f"{namespace}/label_info", m.LABEL_INFO, typestore=store,
                                       offered_qos_profiles=[offered_qos(transient_local=True)])
    diag_conn = writer.add_connection("/diagnostics", m.DIAGNOSTIC_ARRAY, typestore=store,
                                      offered_qos_profiles=[offered_qos()])
    image_ids = {c.id for c in image_conns}
    total = sum(c.msgcount for c in image_conns)
    start = time.perf_counter()
    state = {"info": None, "label_written": False, "next_diag": None, "last_image": None, "last_diag": None}

    def write_diagnostics(log_time: int) -> None:
        writer.write(diag_conn, log_time, pipeline.diagnostics(m.split_stamp(log_time))[1])
        summary.written["/diagnostics"] += 1
        state["next_diag"], state["last_diag"] = log_time + DIAGNOSTICS_PERIOD_NS, log_time

    def process(log_time: int, data) -> None:
        info = state["info"]
        if focal is not None:
            size = _image_size(data, pipeline.settings.compressed_input, store)
            if size is not None and size not in pinholes:
                pinholes[size] = m.pinhole_camera_info(store, m.make_header(store), size, focal)
            info = pinholes.get(size) if size is not None else None
        result = pipeline.process(data, info, wanted)
        summary.frames_in += 1
        if not state["label_written"]:
            header = result.header
            stamp = (header.stamp.sec, header.stamp.nanosec) if header is not None else m.split_stamp(log_time)
            frame_id = header.frame_id if header is not None else ""
            writer.write(label_conn, log_time, pipeline.label_info(stamp, frame_id)[1])
            summary.written[label_conn.topic] += 1
            state["label_written"] = True
        if result.skipped:
            summary.skipped[result.code or "skipped"] += 1
            summary.last_reasons[result.code or "skipped"] = result.reason or ""
        else:
            summary.processed += 1
        for text in result.warnings:
            summary.warnings[text] += 1
        for suffix, (_typename, payload) in result.outputs.items():
            writer.write(connections[suffix], log_time, payload)
            summary.written[connections[suffix].topic] += 1
        if state["next_diag"] is None or log_time >= state["next_diag"]:
            write_diagnostics(log_time)
        state["last_image"] = log_time
        bar.update(1)

    pending: list[tuple[int, bytes]] = []  # images at the newest log time, waiting for same-time camera_info
    with tqdm(total=total, unit="frame", desc="panopticdepth bag", disable=not progress) as bar:
        for connection, log_time, data in read_messages(reader, [*image_conns, *info_conns]):
            if pending and log_time > pending[0][0]:
                for item in pending:
                    process(*item)
                pending.clear()
            if connection.id in image_ids:
                pending.append((log_time, bytes(data)))
            else:
                state["info"] = bytes(data)
        for item in pending:
            process(*item)
    if state["last_image"] is not None and state["last_diag"] != state["last_image"]:
        write_diagnostics(state["last_image"])  # the final counts
    summary.seconds = time.perf_counter() - start
