"""The node's parameters without ROS: names, defaults, types, ranges and validation, shared with the bag tool.

Why here and not in node.py: CI has no rclpy, yet every invalid value must be rejected with the parameter named.
The node declares exactly :data:`PARAMETERS` (dynamically typed, so a YAML ``80`` for a float is accepted and
converted here instead of failing inside rclpy), passes the values to :func:`validate` and stops with the
:class:`ParameterError` message. ``panopticdepth bag --params-file`` reads the same YAML with
:func:`load_params_file`, so offline runs use the node's settings.
"""

from __future__ import annotations

import array
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .frame_pipeline import CLOUD_COLORS, CLOUD_ID_TYPES, OUTPUTS, PipelineSettings
from .rectification import OPENCV_PACKAGE, opencv_available

#: Output suffix -> the boolean parameter that switches it.
OUTPUT_TOGGLES: dict[str, str] = {suffix: "publish_" + suffix.replace("/", "_") for suffix in OUTPUTS}
PRECISIONS = ("fp32", "fp16", "bf16")
RELIABILITIES = ("best_effort", "reliable")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


class ParameterError(ValueError):
    """An invalid parameter value; ``name`` is the parameter, the message says what was expected."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"parameter {name!r}: {message}")
        self.name = name


@dataclass(frozen=True)
class Spec:
    """One parameter: default, type ("bool", "int", "float", "str", "int[]"), description and a value check."""

    default: Any
    kind: str
    description: str
    check: Callable[[Any], str | None] | None = None  # returns what is wrong, or None
    restart: bool = True  # True: takes effect on the next configure; False: applied to the running pipeline


def _choice(options: Sequence[str]) -> Callable[[Any], str | None]:
    return lambda v: None if v in options else f"expected one of {list(options)}, got {v!r}"


def _int_range(low: int, high: int) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"expected an integer in [{low}, {high}], got {v}"


def _threshold(v: float) -> str | None:
    return None if v == -1.0 or 0.0 <= v <= 1.0 else f"expected -1 (the model config's value) or a value in [0, 1], got {v}"


def _size(v: int) -> str | None:
    return None if v == -1 or 0 <= v <= 8192 else f"expected -1 (the model config's value), 0 or 1..8192 pixels, got {v}"


def _positive_finite(v: float) -> str | None:
    return None if math.isfinite(v) and v > 0 else f"expected a finite number > 0, got {v}"


def _device(v: str) -> str | None:
    return None if _DEVICE_RE.match(v) else f"expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {v!r}"


def _labels(v: list[int]) -> str | None:
    bad = [x for x in v if not 0 <= x <= 254]
    return None if not bad else f"expected class ids in [0, 254], got {bad}"


def _path(v: str) -> str | None:
    return None if v == v.strip() else f"expected a path without leading or trailing spaces, got {v!r}"


def _frame_id(v: str) -> str | None:
    return None if not re.search(r"\s", v) else f"expected a tf frame id without spaces (or ''), got {v!r}"


def _threads(v: int) -> str | None:
    return None if 0 <= v <= 1024 else f"expected 0 (the default: one per core) or 1..1024 threads, got {v}"


def _tf_tolerance(v: float) -> str | None:
    return None if 0.0 <= v <= 5.0 else f"expected 0..5 seconds, got {v}"


PARAMETERS: dict[str, Spec] = {
    # model
    "model_config": Spec("", "str", "model config YAML; '' = the config stored in `weights`, else the shipped "
                         "small model's config", _path),
    "weights": Spec("", "str", "model weights (.safetensors, a .pth of ours, or an .onnx of `panopticdepth export`); "
                    "'' = the shipped small model", _path),
    "device": Spec("auto", "str", "'auto' (cuda if available, else cpu), 'cpu', 'cuda', 'cuda:N' or 'mps'", _device),
    "precision": Spec("fp32", "str", "network precision: fp32, fp16 (CUDA only) or bf16", _choice(PRECISIONS)),
    "cpu_threads": Spec(0, "int", "threads the network, post-processing and labeled cloud use on the CPU (torch "
                        "intra-op, onnxruntime intra-op, process-wide; the cloud's own threads); 0 = the libraries' "
                        "default, one per core (the cloud: at most 4). On a small CPU shared with the ROS graph, "
                        "fewer than the cores can be faster", _threads),
    "onnx_providers": Spec("auto", "str", "onnxruntime execution providers for an .onnx `weights`: 'auto' "
                           "(TensorRT, CUDA, CPU, whichever this onnxruntime has) or a comma-separated list of "
                           "cpu, cuda, tensorrt"),
    "input_min_size": Spec(-1, "int", "resize the shortest image edge to this many pixels before the network; "
                           "-1 = the model config's INPUT.MIN_SIZE_TEST, 0 = native resolution", _size),
    "input_max_size": Spec(-1, "int", "cap on the longest edge after resizing; -1 = the model config's "
                           "INPUT.MAX_SIZE_TEST, 0 = no cap", _size),
    "thing_threshold": Spec(-1.0, "float", "score threshold of thing centres (MODEL.POSITION_HEAD.THING.THRES); "
                            "-1 = the model config's", _threshold),
    "stuff_threshold": Spec(-1.0, "float", "score threshold of stuff regions (MODEL.POSITION_HEAD.STUFF.THRES); "
                            "-1 = the model config's", _threshold),
    "instance_threshold": Spec(-1.0, "float", "score a thing needs to be kept (MODEL.INFERENCE.INST_THRES); "
                               "-1 = the model config's", _threshold),
    "warmup": Spec(True, "bool", "run the network once on a blank image at configure so the first frame is not slow"),
    # input
    "compressed_input": Spec(False, "bool", "subscribe to sensor_msgs/CompressedImage (JPEG/PNG) instead of Image"),
    "input_qos_reliability": Spec("best_effort", "str", "QoS reliability of the image and camera_info "
                                  "subscriptions (best_effort also receives from reliable publishers)",
                                  _choice(RELIABILITIES)),
    "input_qos_depth": Spec(1, "int", "QoS history depth of the input subscriptions", _int_range(1, 100)),
    "intrinsics_source": Spec("p", "str", "camera_info matrix for fx, fy, cx, cy: 'p' (rectified images, as "
                              "depth_image_proc) or 'k' (raw images)", _choice(("p", "k")), restart=False),
    "track": Spec(True, "bool", "persistent instance ids across frames (mask, mask kernel and 3D position; "
                  "settings: the model config's TRACKER.*): ~/panoptic, ~/instance, ~/points, ~/overlay, ~/instances "
                  "and the detections keep an object's id and colour; false: ids renumbered 1..N per frame. Restarts "
                  "when time goes back or camera_info changes", restart=False),
    "track_fixed_frame": Spec("", "str", "tf frame the tracker compares 3D positions in, with camera poses from /tf "
                              "and /tf_static (e.g. 'odom' or 'map'), so the robot's own motion does not move still "
                              "things; '' = the root of the image frame's tf tree (as `panopticdepth bag`). Frames "
                              "without a transform go without the 3D cue", _frame_id),
    "track_tf_tolerance": Spec(0.1, "float", "seconds an image stamp may lie past the newest (or before the oldest) "
                               "/tf sample and still use that sample (tf2 never extrapolates; /tf for a stamp often "
                               "arrives a little after the image)", _tf_tolerance),
    "rectify": Spec(False, "bool", "undistort raw images with camera_info's D, R and P before the network "
                    "(plumb_bob, rational_polynomial, equidistant; needs opencv-python-headless); outputs are then "
                    "in the rectified geometry, ~/depth/camera_info with P and zero D", restart=False),
    # outputs
    **{toggle: Spec(True, "bool", f"publish ~/{suffix}", restart=False) for suffix, toggle in OUTPUT_TOGGLES.items()},
    "output_qos_reliability": Spec("reliable", "str", "QoS reliability of the outputs", _choice(RELIABILITIES)),
    "output_qos_depth": Spec(1, "int", "QoS history depth of the outputs", _int_range(1, 100)),
    "cloud_stride": Spec(1, "int", "keep every n-th row and column in ~/points", _int_range(1, 64), restart=False),
    "max_depth": Spec(80.0, "float", "metres; farther cloud points are invalid and markers ignore them",
                      _positive_finite, restart=False),
    "cloud_organized": Spec(True, "bool", "organized cloud (H x W, NaN invalid) or unorganized (valid points only)",
                            restart=False),
    "cloud_color": Spec("overlay", "str", "rgb field of ~/points: overlay, image or panoptic", _choice(CLOUD_COLORS),
                        restart=False),
    "cloud_id_type": Spec("uint32", "str", "datatype of the label and instance fields of ~/points: uint32 (PCL "
                          "PointXYZRGBL) or float32 (every field float32, for Humble's read_points_numpy)",
                          _choice(CLOUD_ID_TYPES), restart=False),
    "cloud_exclude_labels": Spec([], "int[]", "class ids whose points are dropped from ~/points (e.g. [10] = sky)",
                                 _labels, restart=False),
    "overlay_alpha": Spec(0.5, "float", "opacity of the panoptic colours in ~/overlay",
                          lambda v: None if 0.0 <= v <= 1.0 else f"expected a value in [0, 1], got {v}",
                          restart=False),
    "marker_stride": Spec(2, "int", "pixel stride when measuring instance boxes for ~/instances", _int_range(1, 64),
                          restart=False),
    "marker_lifetime": Spec(1.0, "float", "seconds a box in ~/instances stays without an update (0 = forever)",
                            lambda v: None if math.isfinite(v) and v >= 0 else f"expected a number >= 0, got {v}",
                            restart=False),
    # node
    "autostart": Spec(True, "bool", "configure and activate at start (otherwise wait for lifecycle transitions)"),
    "diagnostics_period": Spec(1.0, "float", "seconds between /diagnostics messages",
                               lambda v: None if 0.05 <= v <= 60 else f"expected 0.05..60 seconds, got {v}"),
    "hardware_id": Spec("", "str", "DiagnosticStatus.hardware_id; '' = the device"),
}


@dataclass(frozen=True)
class NodeParams:
    """Validated values of :data:`PARAMETERS` (field names = parameter names)."""

    model_config: str = ""
    weights: str = ""
    device: str = "auto"
    precision: str = "fp32"
    cpu_threads: int = 0
    onnx_providers: str = "auto"
    input_min_size: int = -1
    input_max_size: int = -1
    thing_threshold: float = -1.0
    stuff_threshold: float = -1.0
    instance_threshold: float = -1.0
    warmup: bool = True
    compressed_input: bool = False
    input_qos_reliability: str = "best_effort"
    input_qos_depth: int = 1
    intrinsics_source: str = "p"
    rectify: bool = False
    publish_panoptic: bool = True
    publish_semantic: bool = True
    publish_instance: bool = True
    publish_depth: bool = True
    publish_depth_camera_info: bool = True
    publish_points: bool = True
    publish_overlay: bool = True
    publish_instances: bool = True
    publish_detections: bool = True
    publish_detections_3d: bool = True
    track: bool = True
    track_fixed_frame: str = ""
    track_tf_tolerance: float = 0.1
    output_qos_reliability: str = "reliable"
    output_qos_depth: int = 1
    cloud_stride: int = 1
    max_depth: float = 80.0
    cloud_organized: bool = True
    cloud_color: str = "overlay"
    cloud_id_type: str = "uint32"
    cloud_exclude_labels: tuple[int, ...] = ()
    overlay_alpha: float = 0.5
    marker_stride: int = 2
    marker_lifetime: float = 1.0
    autostart: bool = True
    diagnostics_period: float = 1.0
    hardware_id: str = ""

    def enabled_outputs(self) -> list[str]:
        """Output suffixes whose ``publish_*`` toggle is on, in :data:`OUTPUTS` order."""
        return [suffix for suffix, toggle in OUTPUT_TOGGLES.items() if getattr(self, toggle)]

    def config_overrides(self) -> list[str]:
        """``KEY VALUE`` config overrides for the thresholds that are not -1."""
        pairs = []
        for name, key in (("thing_threshold", "MODEL.POSITION_HEAD.THING.THRES"),
                          ("stuff_threshold", "MODEL.POSITION_HEAD.STUFF.THRES"),
                          ("instance_threshold", "MODEL.INFERENCE.INST_THRES")):
            value = getattr(self, name)
            if value != -1.0:
                pairs += [key, repr(float(value))]
        return pairs

    def pipeline_settings(self, distro: str = "humble", label_threshold: float = 0.0,
                          hardware_id: str = "") -> PipelineSettings:
        """The per-frame settings these parameters ask for."""
        return PipelineSettings(
            distro=distro,
            compressed_input=self.compressed_input,
            intrinsics_source=self.intrinsics_source,
            rectify=self.rectify,
            cloud_stride=self.cloud_stride,
            cloud_max_depth=self.max_depth,
            cloud_organized=self.cloud_organized,
            cloud_color=self.cloud_color,
            cloud_id_type=self.cloud_id_type,
            cloud_exclude_labels=tuple(self.cloud_exclude_labels),
            overlay_alpha=self.overlay_alpha,
            marker_stride=self.marker_stride,
            marker_lifetime_s=self.marker_lifetime,
            label_threshold=label_threshold,
            hardware_id=self.hardware_id or hardware_id,
            track=self.track,
            cpu_threads=self.cpu_threads,
        )

    def as_dict(self) -> dict[str, Any]:
        """Parameter name -> value as ROS would hold it (lists for arrays)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["cloud_exclude_labels"] = list(self.cloud_exclude_labels)
        return values

    def changed_restart_parameters(self, other: NodeParams) -> list[str]:
        """Parameters that differ from ``other`` and only take effect on the next configure."""
        return [name for name, spec in PARAMETERS.items()
                if spec.restart and getattr(self, name) != getattr(other, name)]


def _convert(name: str, kind: str, value: Any) -> Any:
    """``value`` as ``kind``, or ParameterError naming the parameter and the expected type."""
    def fail() -> ParameterError:
        return ParameterError(name, f"expected {_KIND_NAMES[kind]}, got {type(value).__name__} {value!r}")

    if kind == "bool":
        if not isinstance(value, bool):
            raise fail()
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail()
        return int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail()
        if math.isnan(float(value)):
            raise ParameterError(name, "expected a number, got NaN")
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise fail()
        return value
    if kind == "int[]":
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, array.array)):
            raise fail()
        items = list(value)
        if any(isinstance(x, bool) or not isinstance(x, int) for x in items):
            raise fail()
        return [int(x) for x in items]
    raise AssertionError(f"unknown parameter kind {kind!r}")


#: Parameters every rclpy node has; a parameter file may set them, the bag tool ignores them.
ROS_STANDARD_PARAMETERS = ("use_sim_time", "start_type_description_service")

_KIND_NAMES = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string",
               "int[]": "a list of integers"}


def validate(values: Mapping[str, Any], base: NodeParams | None = None) -> NodeParams:
    """NodeParams from ``values`` (parameter name -> value; missing names keep ``base``'s or the defaults).

    Raises ParameterError naming the first bad parameter: unknown name, wrong type, out of range, or an
    inconsistent combination (fp16 on the CPU). ``None`` values (ROS "not set") keep the default.
    """
    unknown = sorted(set(values) - set(PARAMETERS))
    if unknown:
        raise ParameterError(unknown[0], f"unknown parameter; known: {sorted(PARAMETERS)}")
    base = base or NodeParams()
    updates: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        spec = PARAMETERS[name]
        converted = _convert(name, spec.kind, value)
        problem = spec.check(converted) if spec.check else None
        if problem:
            raise ParameterError(name, problem)
        updates[name] = tuple(converted) if spec.kind == "int[]" else converted
    params = replace(base, **updates)
    if params.precision == "fp16" and params.device in ("cpu", "mps"):
        raise ParameterError("precision", f"fp16 needs a CUDA device, but device is {params.device!r}; use fp32 "
                             "or bf16")
    if params.rectify and not opencv_available():
        raise ParameterError("rectify", f"true needs OpenCV, which is not installed: pip install {OPENCV_PACKAGE}")
    if 0 < params.input_max_size < params.input_min_size:
        raise ParameterError("input_max_size", f"{params.input_max_size} is smaller than input_min_size "
                             f"{params.input_min_size}")
    return params


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def load_params_file(path: str | Path, node_name: str = "panopticdepth_node") -> dict[str, Any]:
    """The ``ros__parameters`` of a ROS 2 parameter YAML that apply to ``node_name`` (``/**``, ``node_name`` or
    ``/ns/node_name`` sections, later ones winning), flattened with dots; ParameterError-free (validate after).
    """
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise FileNotFoundError(f"parameter file {path}: cannot be read ({error.strerror or error})") from error
    except yaml.YAMLError as error:
        raise ValueError(f"parameter file {path}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"parameter file {path}: expected a mapping of node names to ros__parameters")
    values: dict[str, Any] = {}
    for key, section in data.items():
        key = str(key)
        matches = key in ("/**", "**", node_name) or key.endswith("/" + node_name)
        if not matches:
            continue
        if not isinstance(section, dict) or "ros__parameters" not in section:
            raise ValueError(f"parameter file {path}: section {key!r} has no 'ros__parameters' mapping")
        values.update(_flatten(section["ros__parameters"] or {}))
    return {name: value for name, value in values.items()
            if name not in ROS_STANDARD_PARAMETERS and not name.startswith("qos_overrides.")}
