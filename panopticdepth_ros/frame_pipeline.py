"""Everything the node does per frame except the rclpy calls: CDR bytes in, CDR bytes of the asked-for outputs out.

The live node (raw subscriptions, ``publish(bytes)``) and the offline bag tool (bag reader/writer) both call
:meth:`FramePipeline.process`, so CI exercises the node's whole per-frame path without ROS. Bad input never
raises: the frame is skipped with a reason that names the problem, and the counters feed ``/diagnostics``.
"""

from __future__ import annotations

import math
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from panopticdepth_core.data.classes import CITYSCAPES_CLASSES, ClassInfo
from panopticdepth_core.inference.boxes2d import instance_boxes_2d, thing_extents
from panopticdepth_core.inference.pointcloud import ID_TYPES, fill_cloud, instance_boxes, scale_intrinsics
from panopticdepth_core.inference.visualize import colorize_panoptic, overlay
from panopticdepth_core.tracking.tracker import InstanceTracker, TrackerSettings

from . import messages as m
from .conversions import (
    FrameError,
    camera_geometry,
    camera_info_to_K,
    check_image_size,
    compressed_msg_to_rgb,
    image_msg_to_rgb,
    resize_nearest,
    stamp_seconds,
)
from .diagnostics import PipelineStats
from .memory import LargeFrameRelease
from .rectification import Rectifier, is_distorted

#: Output topic suffixes (published as ``~/<suffix>``) and their message types.
OUTPUT_TYPES: dict[str, str] = {
    "panoptic": m.IMAGE,
    "semantic": m.IMAGE,
    "instance": m.IMAGE,
    "depth": m.IMAGE,
    "depth/camera_info": m.CAMERA_INFO,
    "points": m.POINT_CLOUD2,
    "overlay": m.IMAGE,
    "instances": m.MARKER_ARRAY,
    "detections": m.DETECTION_2D_ARRAY,
    "detections_3d": m.DETECTION_3D_ARRAY,
}
OUTPUTS: tuple[str, ...] = tuple(OUTPUT_TYPES)
#: Outputs that need camera intrinsics (off without a usable camera_info).
OUTPUTS_NEEDING_INTRINSICS = frozenset({"depth/camera_info", "points", "instances", "detections_3d"})
#: Outputs that need a depth head.
OUTPUTS_NEEDING_DEPTH = frozenset({"depth", "depth/camera_info", "points", "instances", "detections_3d"})
#: Diagnostics codes of frames published without intrinsics (counted as partial, not dropped).
NO_CAMERA_INFO, BAD_CAMERA_INFO = "no_camera_info", "camera_info"
CLOUD_COLORS = ("overlay", "image", "panoptic")
CLOUD_ID_TYPES = tuple(ID_TYPES)  # datatypes of the cloud's label and instance fields: uint32, float32


class PredictionLike(Protocol):
    """What the predictor returns (panopticdepth_core.inference.predictor.Prediction fits; torch tensors too)."""

    panoptic: Any  # (H, W) int32 class*1000 + instance, -1 void
    semantic: Any  # (H, W) int32 class id, 255 void
    instance: Any  # (H, W) int32 1..N for things, 0 elsewhere
    depth: Any  # (H, W) float32 metres (0 = none) or None


class PredictorLike(Protocol):
    """``predictor(rgb, focal=fx)`` with an (H, W, 3) uint8 RGB image and its focal length fx in pixels (None when
    the camera is unknown: the model's canonical camera is then assumed for depth); an optional ``timings`` dict
    on the result (preprocess / model / postprocess / to_numpy seconds) splits the model stage, an optional
    ``depth_scaling`` (Predictor's DepthScaling) says how depth was scaled. The maps of a core ``Prediction``
    (fresh arrays on every call) are relabelled in place by tracking; any other result's maps are left as they
    are (a predictor may keep them)."""

    def __call__(self, image: np.ndarray, focal: float | None = None) -> PredictionLike: ...


@dataclass
class PipelineSettings:
    """Per-frame behaviour; the node fills it from its ROS parameters."""

    distro: str = "humble"  # type store for (de)serialization; wire formats agree for humble and jazzy
    compressed_input: bool = False  # byte input is sensor_msgs/CompressedImage instead of Image
    intrinsics_source: str = "p"  # "p": camera_info P (rectified images, as depth_image_proc); "k": K
    rectify: bool = False  # undistort raw images with camera_info (D, R, P) before the network; outputs rectified
    cloud_stride: int = 1  # keep every s-th row and column of the cloud
    cloud_max_depth: float = math.inf  # metres; farther points are invalid
    cloud_organized: bool = True  # organized (H x W, NaN invalid) or unorganized (1 x N, invalid dropped)
    cloud_color: str = "overlay"  # rgb field: "overlay" (panoptic blended on the image), "image" or "panoptic"
    cloud_id_type: str = "uint32"  # label and instance fields: "uint32" (PCL PointXYZRGBL) or "float32" (all float)
    cloud_exclude_labels: tuple[int, ...] = ()  # class ids whose points are dropped/NaN (e.g. sky)
    overlay_alpha: float = 0.5
    marker_stride: int = 2  # pixel stride when measuring instance boxes
    marker_lifetime_s: float = 1.0
    label_threshold: float = 0.0  # LabelInfo.threshold: the model's score threshold
    classes: tuple[ClassInfo, ...] = CITYSCAPES_CLASSES
    diagnostics_name: str = "panopticdepth_node: pipeline"
    hardware_id: str = ""
    stats_window: int = 100  # frames in the latency / rate / stage-time windows
    track: bool = True  # persistent instance ids across frames (panopticdepth_core.tracking); False: per frame
    cpu_threads: int = 0  # threads building the labeled cloud; 0: one per core (at most pointcloud.MAX_CLOUD_THREADS)

    def __post_init__(self) -> None:
        checks = [
            (self.distro in m.DISTROS, f"distro must be one of {sorted(m.DISTROS)}, got {self.distro!r}"),
            (self.intrinsics_source in ("p", "k"), f"intrinsics_source must be 'p' or 'k', got "
                                                   f"{self.intrinsics_source!r}"),
            (int(self.cloud_stride) >= 1, f"cloud_stride must be >= 1, got {self.cloud_stride}"),
            (int(self.marker_stride) >= 1, f"marker_stride must be >= 1, got {self.marker_stride}"),
            (self.cloud_max_depth > 0, f"cloud_max_depth must be > 0 metres, got {self.cloud_max_depth}"),
            (self.cloud_color in CLOUD_COLORS, f"cloud_color must be one of {CLOUD_COLORS}, got "
                                               f"{self.cloud_color!r}"),
            (self.cloud_id_type in CLOUD_ID_TYPES, f"cloud_id_type must be one of {CLOUD_ID_TYPES}, got "
                                                   f"{self.cloud_id_type!r}"),
            (0.0 <= self.overlay_alpha <= 1.0, f"overlay_alpha must lie in [0, 1], got {self.overlay_alpha}"),
            (self.stats_window >= 2, f"stats_window must be >= 2, got {self.stats_window}"),
            (int(self.cpu_threads) >= 0, f"cpu_threads must be >= 0, got {self.cpu_threads}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class FrameCamera:
    """The camera of one frame as the pipeline uses it: intrinsics of the image given to the model, or why not."""

    K: np.ndarray | None = None  # (3, 3) for the (possibly rectified) image; None: no usable intrinsics
    info: Any = None  # the decoded CameraInfo (source of ~/depth/camera_info)
    rectified: bool = False  # the image was undistorted here: K is P's, outputs are in the rectified geometry

    @property
    def focal(self) -> float | None:
        return None if self.K is None else float(self.K[0, 0])


@dataclass
class FrameResult:
    """The outcome of one frame: serialized outputs to publish, or why the frame was skipped."""

    outputs: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # suffix -> (typename, CDR bytes)
    header: Any = None  # the input image's header (None when the image could not be decoded)
    skipped: bool = False
    reason: str | None = None  # names the problem; the node logs it (throttled)
    code: str | None = None  # short category, counted in diagnostics
    warnings: list[str] = field(default_factory=list)  # non-fatal: outputs left off and why
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


def _fresh_maps(prediction) -> bool:
    """Whether ``prediction`` is a core ``Prediction``, whose maps are new arrays on every call (so tracking may
    relabel them in place). Without importing the predictor module (and torch) where none can exist."""
    module = sys.modules.get("panopticdepth_core.inference.predictor")
    return module is not None and isinstance(prediction, module.Prediction)


def _to_numpy(value) -> np.ndarray | None:
    if value is None:
        return None
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class FramePipeline:
    """Holds the predictor, the settings and the counters; :meth:`process` turns one frame into messages.

    One frame at a time (not thread-safe): the tracker carries state from frame to frame.
    """

    def __init__(self, predictor: PredictorLike, settings: PipelineSettings | None = None,
                 clock: Callable[[], float] = time.monotonic, tracker: TrackerSettings | None = None) -> None:
        """``tracker``: tracker settings; None: the predictor's model config (TRACKER.*), else the defaults."""
        self.predictor = predictor
        self.settings = settings or PipelineSettings()
        self.store = m.get_store(self.settings.distro)
        self.stats = PipelineStats(self.settings.stats_window, clock)
        classes = self.settings.classes
        self.class_names = [c.name for c in classes]
        self.class_colors = [c.color for c in classes]
        self.rectifier = Rectifier()  # maps cached per camera_info; OpenCV imported only when one is needed
        self._said: set[str] = set()  # warnings given once per pipeline
        if tracker is None:
            cfg = getattr(predictor, "cfg", None)
            tracker = TrackerSettings.from_config(cfg) if cfg is not None and "TRACKER" in cfg else TrackerSettings()
        self.tracker = InstanceTracker(tracker)
        self._tracked_camera: tuple | None = None  # (K, image size) the tracks were made with
        self._tracking = False  # whether the previous frame was tracked (turning tracking on starts afresh)
        #: header -> (4, 4) pose of the image's optical frame in a fixed frame (odom, map), or None: lets the
        #: tracker compare positions in that frame, so the camera's own motion does not move still things. The bag
        #: tool sets it from the bag's /tf; without it positions are in the optical frame.
        self.camera_poses: Callable[[Any], np.ndarray | None] | None = None
        #: returns a large frame's freed memory to the system once frames are small again (glibc)
        self.memory = LargeFrameRelease()
        self._frame_pixels = 0

    # ----------------------------------------------------------------------------------------------- inputs
    def decode_image(self, image) -> tuple[Any, np.ndarray]:
        """(message, RGB array) from CDR bytes or a message object; FrameError when unusable."""
        compressed = self.settings.compressed_input if _is_bytes(image) else hasattr(image, "format")
        typename = m.COMPRESSED_IMAGE if compressed else m.IMAGE
        msg = self._deserialize(image, typename, "image")
        rgb = compressed_msg_to_rgb(msg) if compressed else image_msg_to_rgb(msg)
        return msg, rgb

    def decode_camera_info(self, camera_info):
        """A CameraInfo message from CDR bytes or a message object (not validated here)."""
        return self._deserialize(camera_info, m.CAMERA_INFO, "camera_info")

    def _deserialize(self, data, typename: str, what: str):
        if not _is_bytes(data):
            return data
        try:
            return m.deserialize(bytes(data) if isinstance(data, bytearray) else data, typename, self.store)
        except Exception as error:  # rosbags raises struct/index/value errors on malformed CDR
            raise FrameError(f"{what}: cannot deserialize {typename} CDR of {len(data)} bytes "
                             f"({type(error).__name__}: {error})", "deserialize") from error

    # ---------------------------------------------------------------------------------------------- outputs
    def label_info(self, stamp: tuple[int, int] = (0, 0), frame_id: str = "") -> tuple[str, bytes]:
        """~/label_info (publish once, transient local)."""
        header = m.make_header(self.store, stamp[0], stamp[1], frame_id)
        msg = m.label_info_message(self.store, header, self.class_names, self.settings.label_threshold)
        return m.LABEL_INFO, m.serialize(msg, m.LABEL_INFO, self.store)

    def diagnostics(self, stamp: tuple[int, int] = (0, 0),
                    extra_values: dict[str, object] | None = None) -> tuple[str, bytes]:
        """/diagnostics: one DiagnosticStatus with the counters, latency, rate and mean stage times (plus
        ``extra_values``), at the level of the one rule (``PipelineStats.level_and_message``)."""
        level, message = self.stats.level_and_message()
        values = self.stats.values()
        values.update(extra_values or {})
        msg = m.diagnostics_message(self.store, stamp, self.settings.diagnostics_name, self.settings.hardware_id,
                                    level, message, values)
        return m.DIAGNOSTIC_ARRAY, m.serialize(msg, m.DIAGNOSTIC_ARRAY, self.store)

    # ------------------------------------------------------------------------------------------------ frame
    def process(self, image, camera_info=None, wanted: Iterable[str] = OUTPUTS,
                receive_time: float | None = None) -> FrameResult:
        """Run one frame: ``image`` and ``camera_info`` as CDR bytes or message objects (camera_info may be None).

        Builds only the ``wanted`` outputs. Never raises for bad input or a failing predictor: the result is
        then ``skipped`` with ``reason`` and ``code``. ``receive_time`` (seconds on the header's clock, when the
        frame arrived) adds a stamp-to-output latency to the diagnostics. Unknown output names raise ValueError
        (a programming error, not bad input).
        """
        wanted_set = set(wanted)
        unknown = wanted_set - set(OUTPUT_TYPES)
        if unknown:
            raise ValueError(f"unknown outputs {sorted(unknown)}; expected some of {list(OUTPUTS)}")
        self.stats.frames_in += 1
        result = FrameResult()
        start = time.perf_counter()
        self._frame_pixels = 0
        try:
            self._run(image, camera_info, wanted_set, result)
        except FrameError as error:
            return self._skip(result, str(error), error.code)
        except Exception as error:  # a failing predictor or a bug must not kill the node either
            detail = traceback.format_exception_only(type(error), error)[-1].strip()
            return self._skip(result, f"frame failed: {detail}", "internal")
        finally:
            self.memory.after_frame(self._frame_pixels)
        latency = time.perf_counter() - start
        stamp_latency = None
        if receive_time is not None and result.header is not None:
            stamp_latency = receive_time + latency - stamp_seconds(result.header)
        self.stats.note_processed(latency, result.timings, stamp_latency)
        return result

    def _skip(self, result: FrameResult, reason: str, code: str) -> FrameResult:
        result.outputs = {}
        result.skipped, result.reason, result.code = True, reason, code
        self.stats.note_dropped(code, reason)
        return result

    def _run(self, image, camera_info, wanted: set[str], result: FrameResult) -> None:
        settings, timings = self.settings, result.timings
        tick = time.perf_counter()
        msg, rgb = self.decode_image(image)
        result.header = msg.header
        self._frame_pixels = rgb.shape[0] * rgb.shape[1]
        if not getattr(self.predictor, "depth_on", True):
            wanted = _without_depth_outputs(wanted, result)
        camera = FrameCamera()
        if wanted & OUTPUTS_NEEDING_DEPTH or settings.rectify:
            rgb, camera = self._camera(camera_info, rgb, wanted, result)
            if camera.K is None:
                wanted -= OUTPUTS_NEEDING_INTRINSICS
        now = time.perf_counter()
        timings["decode"], tick = now - tick, now

        prediction = self.predictor(rgb, focal=camera.focal)
        now = time.perf_counter()
        reported = dict(getattr(prediction, "timings", None) or {})
        if "model" in reported:
            for stage in ("preprocess", "model"):
                timings[stage] = float(reported.get(stage, 0.0))
            timings["postprocess"] = float(reported.get("postprocess", 0.0)) + float(reported.get("to_numpy", 0.0))
        else:
            timings["preprocess"], timings["model"], timings["postprocess"] = 0.0, now - tick, 0.0
        tick = now

        panoptic = _to_numpy(prediction.panoptic).astype(np.int32, copy=False)
        semantic = _to_numpy(prediction.semantic).astype(np.int32, copy=False)
        instance = _to_numpy(prediction.instance).astype(np.int32, copy=False)
        depth = _to_numpy(getattr(prediction, "depth", None))
        out_size = panoptic.shape
        if semantic.shape != out_size or instance.shape != out_size or (depth is not None and depth.shape != out_size):
            raise FrameError(f"predictor returned maps of different shapes: panoptic {panoptic.shape}, semantic "
                             f"{semantic.shape}, instance {instance.shape}, depth {getattr(depth, 'shape', None)}",
                             "internal")
        if depth is None:  # a predictor without a ``depth_on`` flag
            wanted = _without_depth_outputs(wanted, result)
        if depth is not None:
            depth = depth.astype(np.float32, copy=False)
        K = None
        if camera.K is not None:
            K = camera.K if out_size == rgb.shape[:2] else scale_intrinsics(camera.K, rgb.shape[:2], out_size)
        segments = list(getattr(prediction, "segments", None) or ())
        if settings.track:
            panoptic, instance, segments = self._track(panoptic, instance, segments, depth, K, msg.header, result,
                                                       in_place=_fresh_maps(prediction))
        elif self._tracking:
            self._tracking = False
        now = time.perf_counter()
        timings["track"], tick = now - tick, now
        scaling = getattr(prediction, "depth_scaling", None)
        if depth is not None and scaling is not None:
            self.stats.depth_scale = describe_depth_scaling(scaling)
        image_rgb = rgb if out_size == rgb.shape[:2] else resize_nearest(rgb, out_size)
        colors = None
        needs_cloud_colors = "points" in wanted and settings.cloud_color != "image"
        if "overlay" in wanted or needs_cloud_colors:
            colors = colorize_panoptic(semantic, instance, settings.classes)
        overlay_rgb = None
        if "overlay" in wanted or (needs_cloud_colors and settings.cloud_color == "overlay"):
            overlay_rgb = overlay(image_rgb, colors, settings.overlay_alpha, boundaries=True, labels=panoptic)
        now = time.perf_counter()
        timings["postprocess"] += now - tick
        tick = now

        cloud = boxes = None
        scores = {int(s.id): float(s.score) for s in segments}
        if "points" in wanted:
            cloud_rgb = {"overlay": overlay_rgb, "image": image_rgb, "panoptic": colors}[settings.cloud_color]
            cloud = self.cloud_bytes(depth, K, cloud_rgb, semantic, instance, msg.header)
        # one search of the map for the things' extents, shared by the 3D boxes and the 2D ones
        things = thing_extents(panoptic) if wanted & {"instances", "detections_3d", "detections"} else None
        if wanted & {"instances", "detections_3d"}:
            boxes = instance_boxes(depth, K, panoptic, settings.marker_stride, settings.cloud_max_depth,
                                   things=things)
        now = time.perf_counter()
        timings["cloud"], tick = now - tick, now

        # Images are written straight into their CDR bytes (one pass each, no intermediate array); the other
        # messages are rosbags objects, serialized below. Outputs keep the order of OUTPUTS.
        store, header, ready, built = self.store, msg.header, {}, {}
        if cloud is not None:
            ready["points"] = cloud
        if "panoptic" in wanted:
            ready["panoptic"] = m.panoptic_image_bytes(store, header, panoptic)
        if "semantic" in wanted:
            ready["semantic"] = m.semantic_image_bytes(store, header, semantic)
        if "instance" in wanted:
            ready["instance"] = m.instance_image_bytes(store, header, instance)
        if "depth" in wanted:
            ready["depth"] = m.depth_image_bytes(store, header, depth)
        if "depth/camera_info" in wanted:
            built["depth/camera_info"] = m.depth_camera_info(store, header, camera.info, out_size,
                                                             rectified=camera.rectified)
        if "overlay" in wanted:
            ready["overlay"] = m.rgb_image_bytes(store, header, overlay_rgb)
        if "instances" in wanted:
            built["instances"] = m.instance_markers(store, header, boxes, self.class_names, self.class_colors,
                                                    settings.marker_lifetime_s)
        if "detections" in wanted:
            built["detections"] = m.detection2d_array(store, header, instance_boxes_2d(panoptic, things=things),
                                                   scores)
        if "detections_3d" in wanted:
            built["detections_3d"] = m.detection3d_array(store, header, boxes, scores)
        for suffix in OUTPUTS:
            typename = OUTPUT_TYPES[suffix]
            if suffix in ready:
                result.outputs[suffix] = (typename, ready[suffix])
            elif suffix in built:
                result.outputs[suffix] = (typename, m.serialize(built[suffix], typename, store))
        timings["messages"] = time.perf_counter() - tick

    def cloud_bytes(self, depth: np.ndarray, K: np.ndarray, colors: np.ndarray | None, semantic: np.ndarray,
                     instance: np.ndarray, header) -> bytes:
        """The ~/points message's CDR bytes, the cloud written straight into them (no cloud buffer is kept
        between frames, so a large frame leaves no memory behind)."""
        settings = self.settings
        out_size = depth.shape
        shape = (-(-out_size[0] // settings.cloud_stride), -(-out_size[1] // settings.cloud_stride))
        message = None

        def allocate(count: int) -> np.ndarray:  # the point count is known once the valid pixels are
            nonlocal message
            height, width = shape if settings.cloud_organized else (1, count)
            message = m.SerializedPointCloud2(self.store, header, ID_TYPES[settings.cloud_id_type], height, width)
            return message.points

        _, dense = fill_cloud(depth, K, colors, semantic, instance, settings.cloud_stride, settings.cloud_max_depth,
                              settings.cloud_organized, settings.cloud_exclude_labels, out=allocate,
                              id_type=settings.cloud_id_type, threads=settings.cpu_threads or None)
        return message.finish(dense)

    # --------------------------------------------------------------------------------------------- tracking
    def _track(self, panoptic: np.ndarray, instance: np.ndarray, segments: list, depth, K, header,
               result: FrameResult, in_place: bool = False):
        """(panoptic, instance, segments) with tracked ids. Starts afresh (saying why) when tracking was just
        turned on, the camera changed (another K or image size) or time went back (a bag played again)."""
        camera = (None if K is None else tuple(np.round(np.asarray(K, dtype=np.float64).reshape(-1), 6)),
                  panoptic.shape)
        why = None
        if not self._tracking:
            self.tracker.reset()
        elif self._tracked_camera is not None and camera != self._tracked_camera and (
                camera[0] is not None and self._tracked_camera[0] is not None or camera[1] != self._tracked_camera[1]):
            self.tracker.reset()
            why = "the camera changed (camera_info or image size)"
        self._tracking, self._tracked_camera = True, camera
        stamp = stamp_seconds(header) if header is not None else None
        pose = self.camera_poses(header) if self.camera_poses is not None and header is not None else None
        tracked = self.tracker.update(panoptic, segments, depth, K, pose, time=stamp, instance=instance,
                                      in_place=in_place)
        if tracked.reset and why is None:
            why = "time went back (a bag played again, or a clock reset)"
        if why is not None:
            result.warnings.append(f"tracking restarted: {why}; instance ids start over")
            self.stats.tracking_resets += 1
        return tracked.panoptic, tracked.instance, tracked.segments

    # ----------------------------------------------------------------------------------------------- camera
    def _camera(self, camera_info, rgb: np.ndarray, wanted: set[str], result: FrameResult
                ) -> tuple[np.ndarray, FrameCamera]:
        """(the image the model gets, its camera). Never raises for a bad camera_info: a missing or unusable one
        leaves ``K`` None, with one warning naming the field, counted as a partial frame in the diagnostics; the
        outputs that need no intrinsics go on (depth then assumes the model's canonical camera)."""
        settings = self.settings
        if camera_info is None:
            self._partial(result, NO_CAMERA_INFO, "no camera_info received", wanted)
            return rgb, FrameCamera()
        try:
            info = self.decode_camera_info(camera_info)
            geometry = camera_geometry(info)
            check_image_size(geometry, rgb.shape[:2])
            if settings.rectify:
                rectified = self.rectifier.rectify(rgb, info, geometry)
                return rectified.image, FrameCamera(rectified.K, info, rectified=rectified.remapped)
            K = camera_info_to_K(info, rgb.shape[:2], settings.intrinsics_source)
        except FrameError as error:
            self._partial(result, error.code if error.code == "rectify" else BAD_CAMERA_INFO, str(error), wanted)
            return rgb, FrameCamera()
        if is_distorted(info):
            self._say_once(result, "distorted", (
                f"camera_info.d is non-zero ({info.distortion_model} distortion) and parameter 'rectify' is false: "
                "the images are used as they are, i.e. taken as rectified. If they are raw (image_raw), set "
                "'rectify' to true (or feed image_proc's image_rect); the 3D outputs of raw wide-angle images bend"))
        return rgb, FrameCamera(K, info)

    def _partial(self, result: FrameResult, code: str, problem: str, wanted: set[str]) -> None:
        """Publish what needs no intrinsics: say which outputs are off and what depth means, count it."""
        effects = []
        off = sorted(wanted & OUTPUTS_NEEDING_INTRINSICS)
        if off:
            effects.append(", ".join("~/" + name for name in off) + " off")
        if "depth" in wanted:
            effects.append("~/depth assumes the model's canonical camera (its scale is a guess)")
        if self.settings.rectify:
            effects.append("images not rectified")
        until = " until a usable one arrives on the camera_info topic"
        text = f"{problem}: {'; '.join(effects) or 'no output affected'}{until if effects else ''}"
        if effects:
            result.warnings.append(text)
        self.stats.note_partial(code, text)

    def _say_once(self, result: FrameResult, key: str, text: str) -> None:
        if key not in self._said:
            self._said.add(key)
            result.warnings.append(text)


def describe_depth_scaling(scaling) -> str:
    """One line for the diagnostics: where the metric scale of ~/depth came from."""
    rule = getattr(scaling, "rule", "")
    if rule == "camera":
        return (f"camera: fx {scaling.focal_effective:.1f} px at the network input / canonical "
                f"{scaling.focal_canonical:.1f} px = x{scaling.factor:.3f}")
    if rule == "assumed-canonical":
        return (f"ASSUMED canonical camera (fx {scaling.focal_canonical:.1f} px at the network input): no usable "
                "camera_info")
    if rule == "legacy":
        return (f"model without a canonical focal length: resize factor x{scaling.factor:.3f} (training camera "
                "assumed)")
    return str(rule)


def _without_depth_outputs(wanted: set[str], result: FrameResult) -> set[str]:
    """Drop the outputs a model without depth cannot give, saying so once per frame."""
    if wanted & OUTPUTS_NEEDING_DEPTH:
        result.warnings.append("the model has no depth head: ~/depth, ~/depth/camera_info, ~/points and "
                               "~/instances are off")
    return wanted - OUTPUTS_NEEDING_DEPTH


def _is_bytes(value) -> bool:
    return isinstance(value, (bytes, bytearray, memoryview))

