"""Camera poses from live /tf and /tf_static for the tracker, without tf2_ros and without rclpy.

Why not tf2_ros: it is not part of every ROS install we run on (our source-built Jazzy has tf2_msgs but no
tf2_ros), and `panopticdepth bag` already answers the same question from recorded /tf with
:class:`~panopticdepth_ros.bags.tf_buffer.TfBuffer`; feeding the live messages into that buffer gives the node
and the bag tool one semantics, tested in CI without ROS. node.py only subscribes (QoS below, as tf2_ros's
listener) and hands the raw CDR bytes to :meth:`TfPoseSource.add`; the pipeline calls the source as its
``camera_poses`` hook.

Rules taken from tf2 (tf2/src/buffer_core.cpp, cache.cpp; tf2_ros/qos.hpp):

- a transform with an empty ``frame_id`` or ``child_frame_id``, from a frame to itself, with a NaN, or with a
  quaternion whose squared norm is off 1 by 0.01 or more is ignored (counted, the reason logged, throttled);
  leading slashes are dropped;
- /tf edges keep 10 s of samples behind their newest (tf2's default cache time); /tf_static edges are kept;
- lookups interpolate between samples and never extrapolate beyond ``tolerance_s`` past either end.

Thread safety: /tf callbacks run on the executor thread, lookups on the worker thread, so one lock guards the
buffer (a lookup costs tens of microseconds).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from . import messages as m
from .bags.tf_buffer import TfBuffer, TransformError
from .worker import WarningThrottle

TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
#: History depth of both subscriptions, as tf2_ros's DynamicListenerQoS and StaticListenerQoS.
TF_QOS_DEPTH = 100
#: Seconds of /tf kept per edge (tf2's BufferCore default cache time).
TF_CACHE_S = 10.0
#: tf2's QUATERNION_NORMALIZATION_TOLERANCE on |x² + y² + z² + w² - 1|.
QUATERNION_TOLERANCE = 0.01


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def check_transform(item) -> str | None:
    """Why tf2 would ignore this geometry_msgs/TransformStamped, or None when it is usable."""
    parent, child = str(item.header.frame_id).lstrip("/"), str(item.child_frame_id).lstrip("/")
    if not child:
        return f"transform from {parent!r} has no child_frame_id"
    if not parent:
        return f"transform to {child!r} has no frame_id"
    if parent == child:
        return f"transform from {child!r} to itself"
    tr, rot = item.transform.translation, item.transform.rotation
    values = [tr.x, tr.y, tr.z, rot.x, rot.y, rot.z, rot.w]
    if not all(math.isfinite(float(v)) for v in values):
        return f"transform {parent} -> {child} has a NaN or infinite value"
    norm2 = float(rot.x) ** 2 + float(rot.y) ** 2 + float(rot.z) ** 2 + float(rot.w) ** 2
    if abs(norm2 - 1.0) >= QUATERNION_TOLERANCE:
        return (f"transform {parent} -> {child} has a quaternion of squared norm {norm2:.4f} (tf2 needs 1 within "
                f"{QUATERNION_TOLERANCE})")
    return None


class TfPoseSource:
    """/tf and /tf_static in; ``source(header)`` -> (4, 4) pose of ``header.frame_id`` in the fixed frame, or None.

    ``fixed_frame``: the frame positions are compared in ("odom", "map"); "" = the root of the image frame's tf
    tree as found at the first successful lookup, kept from then on (so a ``map`` that appears later above
    ``odom`` does not move the world under the tracks). ``tolerance_s``: how far past the newest (or before the
    oldest) /tf sample a stamp may be and still use that sample: /tf for an image's stamp often arrives a little
    after the image. ``warn(text)``: called (throttled per kind, every ``warn_period`` s) when poses cannot be
    used or transforms are ignored; ``info(text)`` once, at the first pose used (which frame). Neither :meth:`add`
    nor a lookup ever raises.
    """

    def __init__(self, fixed_frame: str = "", tolerance_s: float = 0.1, cache_s: float = TF_CACHE_S,
                 distro: str = "humble", warn: Callable[[str], None] | None = None,
                 info: Callable[[str], None] | None = None, warn_period: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not (math.isfinite(tolerance_s) and tolerance_s >= 0):
            raise ValueError(f"tolerance_s must be a finite number >= 0, got {tolerance_s}")
        if not (math.isfinite(cache_s) and cache_s > tolerance_s):
            raise ValueError(f"cache_s must be finite and above tolerance_s ({tolerance_s}), got {cache_s}")
        self.fixed_frame = str(fixed_frame).strip().lstrip("/")
        self.buffer = TfBuffer(tolerance_ns=round(tolerance_s * 1e9), cache_ns=round(cache_s * 1e9))
        self.store = m.get_store(distro)
        self.warn, self.info = warn, info
        self.throttle = WarningThrottle(warn_period, clock)
        self._lock = threading.Lock()
        self._root: str | None = None  # the fixed frame found for fixed_frame "" (the tree's root), once found
        self.messages = 0  # TFMessages received (both topics)
        self.ignored = 0  # transforms ignored (tf2's rules) or messages that could not be deserialized
        self.posed_frames = 0  # lookups that gave a pose
        self.unposed_frames = 0  # lookups that gave None
        self.last_problem: str | None = None  # why the last lookup gave None
        self._said_no_tf = False  # the one note for a camera without any tf

    # ------------------------------------------------------------------------------------------------ feeding
    def add(self, data: Any, static: bool = False) -> int:
        """Feed one tf2_msgs/TFMessage (CDR bytes or a message object); returns the transforms added."""
        topic = TF_STATIC_TOPIC if static else TF_TOPIC
        if isinstance(data, (bytes, bytearray, memoryview)):
            try:
                data = m.deserialize(bytes(data), TF_MESSAGE, self.store)
            except Exception as error:  # noqa: BLE001 - a malformed message costs itself, nothing else
                self.ignored += 1
                self._say("cdr", f"{topic}: cannot deserialize a {TF_MESSAGE} of {len(data)} bytes "
                                 f"({type(error).__name__}: {error}); ignored")
                return 0
        added = 0
        with self._lock:
            self.messages += 1
            for item in getattr(data, "transforms", ()):
                problem = check_transform(item)
                if problem is None:
                    tr, rot = item.transform.translation, item.transform.rotation
                    try:
                        self.buffer.set_transform(item.header.frame_id, item.child_frame_id, (tr.x, tr.y, tr.z),
                                                  (rot.x, rot.y, rot.z, rot.w), _stamp_ns(item.header.stamp),
                                                  static)
                        added += 1
                        continue
                    except (ValueError, TypeError) as error:
                        problem = str(error)
                self.ignored += 1
                self._say("ignored", f"{topic}: ignoring a transform, as tf2 does: {problem}")
        return added

    # ------------------------------------------------------------------------------------------------ lookups
    def __call__(self, header) -> np.ndarray | None:
        """The pose of the image's frame at its stamp in the fixed frame (T_fixed_camera), or None (said, throttled):
        the tracker then leaves this frame's 3D cue out. Never raises."""
        try:
            pose, problem = self._lookup(header)
        except Exception as error:  # noqa: BLE001 - a pose is optional; the frame goes on without it
            pose, problem = None, f"{type(error).__name__}: {error}"
        if pose is not None:
            self.posed_frames += 1
            if self.posed_frames == 1 and self.info is not None:
                self.info(f"tracking compares positions in frame {self.world_frame!r} (camera poses from /tf): the "
                          f"camera's own motion does not move still things")
            return pose
        self.unposed_frames += 1
        self.last_problem = problem
        if self.messages == 0 and not self.fixed_frame:
            # No tf at all and no frame asked for: a camera without a tf tree is a normal setup, not a fault to
            # repeat every few seconds. Said once; warnings start if tf arrives and still gives no pose.
            if not self._said_no_tf and self.info is not None:
                self.info("no /tf or /tf_static received: tracking compares positions in the camera frame (set "
                          "track_fixed_frame, or publish tf, to remove the camera's own motion)")
            self._said_no_tf = True
            return None
        self._say("lookup", f"no camera pose from /tf for this frame ({problem}): tracking leaves its 3D position "
                            "cue out (ids still follow mask and appearance)")
        return None

    def _lookup(self, header) -> tuple[np.ndarray | None, str]:
        frame = str(header.frame_id).lstrip("/")
        if not frame:
            return None, "the image header has no frame_id"
        stamp = _stamp_ns(header.stamp)
        with self._lock:
            fixed = self.fixed_frame or self._root
            if not fixed:
                if frame not in self.buffer.frames:
                    known = ", ".join(sorted(self.buffer.frames)) or "none yet"
                    return None, f"frame {frame!r} is not in /tf or /tf_static (known frames: {known})"
                root = self.buffer.root(frame)
                if root == frame:
                    return None, f"frame {frame!r} has no parent in /tf or /tf_static"
                if not self.buffer.has_dynamic_edge(frame):
                    # only /tf_static so far (it is latched, /tf comes later): the root moves with the camera, and
                    # taking it as the world would pin the world to the robot once odom appears above it
                    return None, (f"only static transforms lead from {frame!r} to the root of its tree ({root!r}) so "
                                  "far: no /tf yet that moves the camera")
                fixed = root
            try:
                pose = self.buffer.lookup(fixed, frame, stamp)
            except TransformError as error:
                return None, str(error)
            if not self.fixed_frame and self._root is None:
                self._root = fixed
        return pose, ""

    # ------------------------------------------------------------------------------------------------ status
    @property
    def world_frame(self) -> str:
        """The frame positions are compared in ('' until the tree's root has been found)."""
        return self.fixed_frame or self._root or ""

    def diagnostics(self) -> dict[str, object]:
        """Key/values for /diagnostics: which frame, and how many frames had a pose."""
        values: dict[str, object] = {
            "tracking frame": self.world_frame or ("root of the image frame's tf tree (none found yet)"),
            "frames with a /tf pose": self.posed_frames,
            "frames without a /tf pose": self.unposed_frames,
            "tf messages": self.messages,
            "tf transforms ignored": self.ignored,
        }
        if self.last_problem and self.unposed_frames:
            values["last /tf lookup problem"] = self.last_problem
        return values

    def _say(self, key: str, text: str) -> None:
        if self.warn is None:
            return
        message = self.throttle(key, text)
        if message is not None:
            self.warn(message)
