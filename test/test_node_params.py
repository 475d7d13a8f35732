"""The node without ROS: parameter validation (every bad value named), the shipped YAML, model-file lookup,
the newest-frame worker, and node.py's lifecycle driven through a minimal stand-in for rclpy."""

from __future__ import annotations

import array
import importlib
import itertools
import math
import os
import signal
import sys
import threading
import time
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_tf_poses import tf_bytes, transform_stamped
from tiny_model import TINY_NODE_MODEL, tiny_cfg, write_random_model

from panopticdepth_core.inference import model_files
from panopticdepth_ros import messages as m
from panopticdepth_ros.frame_pipeline import OUTPUTS, FramePipeline
from panopticdepth_ros.loading import ModelLoadError, load_model, model_source
from panopticdepth_ros.params import (
    OUTPUT_TOGGLES,
    PARAMETERS,
    NodeParams,
    ParameterError,
    load_params_file,
    validate,
)
from panopticdepth_ros.tf_poses import TF_MESSAGE
from panopticdepth_ros.worker import Frame, FrameMailbox, FrameWorker, WarningThrottle

REPO = Path(__file__).resolve().parents[1]
STAMP = (1_700_000_123, 456_000_000)
FRAME_ID = "camera_optical_frame"


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------ parameters
def test_defaults_agree_everywhere() -> None:
    defaults = NodeParams()
    assert set(PARAMETERS) == set(defaults.as_dict()), "PARAMETERS and NodeParams must list the same names"
    for name, spec in PARAMETERS.items():
        assert defaults.as_dict()[name] == spec.default, name
    assert validate({}) == defaults
    assert validate(defaults.as_dict()) == defaults
    assert set(OUTPUT_TOGGLES) == set(OUTPUTS)
    assert defaults.enabled_outputs() == list(OUTPUTS)


def test_shipped_yaml_is_valid_and_equals_the_defaults() -> None:
    values = load_params_file(REPO / "config" / "panopticdepth_node.yaml")
    assert set(values) <= set(PARAMETERS)
    assert set(PARAMETERS) == set(values)  # every parameter, the empty label list included
    assert validate(values) == NodeParams()


WRONG_TYPE = {"bool": "yes", "int": 1.5, "float": "fast", "str": 3, "int[]": "10"}


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_every_parameter_rejects_a_wrong_type_by_name(name: str) -> None:
    with pytest.raises(ParameterError) as info:
        validate({name: WRONG_TYPE[PARAMETERS[name].kind]})
    assert info.value.name == name
    assert repr(name) in str(info.value)


BAD_VALUES = [
    ("device", "gpu"), ("device", "cuda:x"), ("precision", "fp8"), ("input_min_size", -2), ("input_min_size", 9000),
    ("input_max_size", -5), ("thing_threshold", 1.5), ("stuff_threshold", -0.5), ("instance_threshold", 2),
    ("input_qos_reliability", "fast"), ("input_qos_depth", 0), ("output_qos_reliability", "BEST_EFFORT"),
    ("output_qos_depth", 101), ("intrinsics_source", "x"), ("cloud_stride", 0), ("max_depth", 0.0),
    ("max_depth", -3.0), ("max_depth", math.inf), ("max_depth", math.nan), ("cloud_color", "red"),
    ("cloud_exclude_labels", [255]), ("cloud_exclude_labels", [3, -1]), ("cloud_exclude_labels", [True]),
    ("overlay_alpha", 1.5), ("marker_stride", 0), ("marker_lifetime", -1.0), ("diagnostics_period", 0.0),
    ("weights", " model.safetensors"), ("publish_points", 1), ("autostart", "true"), ("cloud_stride", True),
    ("track_fixed_frame", "base link"), ("track_tf_tolerance", -0.1), ("track_tf_tolerance", 10.0),
    ("cpu_threads", -1), ("cpu_threads", 5000),
]


@pytest.mark.parametrize("name,value", BAD_VALUES)
def test_bad_values_are_rejected_naming_the_parameter(name: str, value) -> None:
    with pytest.raises(ParameterError) as info:
        validate({name: value})
    assert info.value.name == name
    assert name in str(info.value)


def test_combinations_and_unknown_names_are_rejected() -> None:
    with pytest.raises(ParameterError, match="'precision'.*CUDA") as info:
        validate({"device": "cpu", "precision": "fp16"})
    assert info.value.name == "precision"
    with pytest.raises(ParameterError) as info:
        validate({"input_min_size": 512, "input_max_size": 256})
    assert info.value.name == "input_max_size"
    with pytest.raises(ParameterError, match="unknown parameter") as info:
        validate({"cloud_strde": 2})
    assert info.value.name == "cloud_strde"


def test_values_are_converted_like_ros_delivers_them() -> None:
    params = validate({"max_depth": 50, "cloud_exclude_labels": array.array("q", [10, 2]), "weights": None,
                       "device": "cuda:1", "precision": "fp16"})
    assert params.max_depth == 50.0 and isinstance(params.max_depth, float)
    assert params.cloud_exclude_labels == (10, 2)
    assert params.weights == ""  # None (ROS "not set") keeps the default
    assert validate({"cloud_stride": 3}, base=params).device == "cuda:1"  # base values survive


def test_params_map_to_pipeline_settings_and_config_overrides() -> None:
    params = validate({"cloud_stride": 4, "max_depth": 30, "cloud_color": "image", "cloud_exclude_labels": [10],
                       "intrinsics_source": "k", "overlay_alpha": 0.25, "instance_threshold": 0.6,
                       "publish_overlay": False, "publish_depth_camera_info": False, "cpu_threads": 3})
    settings = params.pipeline_settings("jazzy", label_threshold=0.6, hardware_id="cpu")
    assert (settings.distro, settings.cloud_stride, settings.cloud_max_depth, settings.cloud_color) == \
        ("jazzy", 4, 30.0, "image")
    assert (settings.cloud_exclude_labels, settings.intrinsics_source, settings.overlay_alpha) == ((10,), "k", 0.25)
    assert (settings.label_threshold, settings.hardware_id, settings.cpu_threads) == (0.6, "cpu", 3)
    assert params.config_overrides() == ["MODEL.INFERENCE.INST_THRES", "0.6"]
    assert "overlay" not in params.enabled_outputs() and "depth/camera_info" not in params.enabled_outputs()
    assert params.changed_restart_parameters(NodeParams()) == ["cpu_threads", "instance_threshold"]


def test_params_file_sections_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    cloud_stride: 2\n    use_sim_time: true\n    qos_overrides:\n"
        "      /parameter_events:\n        publisher:\n          depth: 5\n"
        "other_node:\n  ros__parameters:\n    cloud_stride: 9\n"
        "/robot/panopticdepth_node:\n  ros__parameters:\n    max_depth: 20.0\n    cloud_stride: 3\n")
    assert load_params_file(path) == {"cloud_stride": 3, "max_depth": 20.0}
    (tmp_path / "bad.yaml").write_text("/**:\n  cloud_stride: 2\n")
    with pytest.raises(ValueError, match="ros__parameters"):
        load_params_file(tmp_path / "bad.yaml")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_params_file(tmp_path / "missing.yaml")


# ------------------------------------------------------------------------------------------- model files
def _write_model_root(root: Path) -> tuple[Path, Path]:
    config, weights = root / model_files.DEFAULT_CONFIG, root / model_files.DEFAULT_WEIGHTS
    config.parent.mkdir(parents=True)
    weights.parent.mkdir(parents=True)
    config.write_text("MODEL: {}\n")
    weights.write_bytes(b"")
    return config, weights


def test_default_model_files_search_order_and_error(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    expected = _write_model_root(second)
    (first / "config").mkdir(parents=True)  # a root with only part of the model does not count
    assert model_files.default_model_files([first, second]) == expected
    roots = model_files.model_roots([first])
    assert roots[0] == first and len(roots) == len(set(roots))
    if Path(model_files.__file__).resolve().is_relative_to(REPO):
        assert REPO in roots  # a source checkout (editable install) searches the repository root
    if not (REPO / model_files.DEFAULT_WEIGHTS).is_file():  # until the shipped model exists
        with pytest.raises(model_files.ModelFilesError, match="first .*missing"):
            model_files.default_model_files([first])


def test_model_file_errors_name_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="'weights': file not found: .*nope.safetensors"):
        model_source(validate({"weights": str(tmp_path / "nope.safetensors")}))
    with pytest.raises(ModelLoadError, match="'model_config' is set but parameter 'weights' is not"):
        model_source(validate({"model_config": "cfg.yaml"}))
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="'model_config': file not found"):
        model_source(validate({"weights": str(weights), "model_config": str(tmp_path / "c.yaml")}))
    with pytest.raises(ModelLoadError, match="w.safetensors"):  # damaged weights: a clear error, no crash
        load_model(validate({"weights": str(weights), "device": "cpu"}))


# ---------------------------------------------------------------------------------------- tiny real model
@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    """Random tiny model whose config is embedded in the weights (so `weights` alone is enough)."""
    _, weights = write_random_model(tmp_path_factory.mktemp("model"), tiny_cfg(base=TINY_NODE_MODEL))
    return weights


def test_load_model_from_embedded_config_with_overrides(tiny_weights: Path) -> None:
    model = load_model(validate({"weights": str(tiny_weights), "device": "cpu", "instance_threshold": 0.7,
                                 "input_min_size": 0}))
    assert model.device == "cpu" and model.label_threshold == pytest.approx(0.7)
    assert "embedded config" in model.config_source and model.predictor.min_size == 0
    assert model.predictor.cfg.MODEL.INFERENCE.INST_THRES == pytest.approx(0.7)


def test_cpu_threads_sets_torch_threads_when_the_model_loads(tiny_weights: Path) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        load_model(validate({"weights": str(tiny_weights), "device": "cpu", "warmup": False}))
        assert torch.get_num_threads() == 2  # 0: left as it is
        load_model(validate({"weights": str(tiny_weights), "device": "cpu", "warmup": False, "cpu_threads": 1}))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------- worker
class FakePredictor:
    depth_on = True

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, rgb: np.ndarray, focal: float | None = None):
        self.calls += 1
        h, w = rgb.shape[:2]
        semantic = np.full((h, w), 13, np.int32)
        instance = np.ones((h, w), np.int32)
        return SimpleNamespace(panoptic=semantic * 1000 + instance, semantic=semantic, instance=instance,
                               depth=np.full((h, w), 5.0, np.float32))


def _image_bytes(store, height: int = 8, width: int = 12) -> bytes:
    header = m.make_header(store, *STAMP, FRAME_ID)
    return m.serialize(m.image_message(store, header, np.zeros((height, width, 3), np.uint8), "rgb8"), m.IMAGE, store)


def _camera_info_bytes(store, height: int = 8, width: int = 12) -> bytes:
    types = store.types
    k = np.array([10.0, 0, width / 2, 0, 10.0, height / 2, 0, 0, 1])
    p = np.zeros(12)
    p[[0, 1, 2, 4, 5, 6, 8, 9, 10]] = k
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    msg = types[m.CAMERA_INFO](header=m.make_header(store, *STAMP, FRAME_ID), height=height, width=width,
                               distortion_model="plumb_bob", d=np.zeros(5), k=k, r=np.eye(3).reshape(-1), p=p,
                               binning_x=0, binning_y=0, roi=roi)
    return m.serialize(msg, m.CAMERA_INFO, store)


def test_mailbox_keeps_only_the_newest_frame() -> None:
    box = FrameMailbox()
    assert box.take(timeout=0.01) is None
    assert box.put(Frame(b"1", None, 0.0)) is False
    assert box.put(Frame(b"2", None, 0.0)) is True
    assert box.put(Frame(b"3", None, 0.0)) is True
    assert box.take().image == b"3"
    assert box.collect_overwritten() == 2 and box.collect_overwritten() == 0
    waiter = threading.Thread(target=lambda: time.sleep(0.05) or box.put(Frame(b"4", None, 0.0)))
    waiter.start()
    assert box.take(timeout=5).image == b"4"  # a waiting take wakes up on put
    waiter.join()
    box.put(Frame(b"5", None, 0.0))
    box.close()
    assert box.take(timeout=5) is None and box.closed
    box.reopen()
    assert box.take(timeout=0) is None


def test_warning_throttle_is_per_key() -> None:
    now = [0.0]
    throttle = WarningThrottle(5.0, clock=lambda: now[0])
    assert throttle("a", "A") == "A"
    assert throttle("a", "A") is None
    assert throttle("b", "B") == "B"  # another problem is not hidden by the first
    now[0] = 6.0
    assert throttle("a", "A") == "A (1 more like this since the last report, 6 s ago)"
    now[0] = 70.0  # held-back counts say how old they may be, however long the quiet was
    assert throttle("a", "A") == "A"
    now[0] = 71.0
    assert throttle("a", "A") is None
    now[0] = 130.0
    assert throttle("a", "A") == "A (1 more like this since the last report, 60 s ago)"


class _Recorder:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.warnings: list[str] = []
        self.wanted = ["semantic", "depth"]


def _worker(clock, recorder: _Recorder, predictor=None) -> tuple[FrameWorker, FramePipeline, FrameMailbox]:
    pipeline = FramePipeline(predictor or FakePredictor())
    mailbox = FrameMailbox()
    worker = FrameWorker(pipeline, mailbox, lambda: recorder.wanted,
                         lambda topic, data: recorder.published.append((topic, data)), recorder.warnings.append,
                         stamp=lambda: STAMP, extra_values=lambda: {"lifecycle state": "active"},
                         diagnostics_period=1.0, warn_period=5.0, clock=clock)
    return worker, pipeline, mailbox


def _diagnostics(data: bytes):
    status = m.deserialize(data, m.DIAGNOSTIC_ARRAY, m.get_store()).status[0]
    return status.level, status.message, {kv.key: kv.value for kv in status.values}


def test_worker_publishes_only_wanted_outputs_and_counts_everything() -> None:
    store = m.get_store()
    now = [0.0]
    recorder = _Recorder()
    predictor = FakePredictor()
    worker, pipeline, mailbox = _worker(lambda: now[0], recorder, predictor)
    image, info = _image_bytes(store), _camera_info_bytes(store)

    for _ in range(3):  # three frames arrive while the worker is busy: the first two are stale
        mailbox.put(Frame(image, info, 0.0))
    assert worker.step() is True
    assert [topic for topic, _ in recorder.published] == ["semantic", "depth"]
    depth = m.deserialize(recorder.published[1][1], m.IMAGE, store)
    assert (depth.header.stamp.sec, depth.header.frame_id) == (STAMP[0], FRAME_ID)
    assert pipeline.stats.frames_in == 3 and pipeline.stats.processed == 1 and pipeline.stats.dropped["busy"] == 2

    recorder.wanted = []  # nobody listens: the model does not run
    mailbox.put(Frame(image, info, 0.0))
    assert worker.step() is False and predictor.calls == 1 and worker.pipeline.stats.idle_frames == 1

    recorder.wanted = ["points"]
    mailbox.put(Frame(b"\x00\x01garbage", info, 0.0))
    mailbox.put(Frame(b"\x00\x01garbage", info, 0.0))
    worker.step()
    mailbox.put(Frame(b"\x00\x01garbage", info, 0.0))
    worker.step()
    assert len(recorder.warnings) == 1 and "deserialize" in recorder.warnings[0]  # throttled per problem

    recorder.published.clear()
    now[0] = 1.5  # diagnostics are due
    worker.step(timeout=0)
    level, message, values = _diagnostics(recorder.published[-1][1])
    assert recorder.published[-1][0] == "/diagnostics"
    assert level == 1 and "skipped" in message  # a real problem: WARN
    assert values["frames in"] == "6" and values["frames processed"] == "1"
    assert values["dropped (busy)"] == "3" and values["dropped (deserialize)"] == "2"
    assert values["frames idle (no subscribers)"] == "1" and values["lifecycle state"] == "active"


def test_busy_drops_alone_keep_diagnostics_ok_and_settings_update_between_frames() -> None:
    store = m.get_store()
    recorder = _Recorder()
    recorder.wanted = ["points"]
    worker, pipeline, mailbox = _worker(lambda: 0.0, recorder)
    image, info = _image_bytes(store), _camera_info_bytes(store)
    mailbox.put(Frame(image, info, 0.0))
    mailbox.put(Frame(image, info, 0.0))
    worker.step()
    level, message, _ = _diagnostics(worker.diagnostics_bytes())
    assert level == 0 and "1 dropped as stale" in message
    worker.update_settings(validate({"cloud_stride": 2}).pipeline_settings())
    mailbox.put(Frame(image, info, 0.0))
    worker.step()
    cloud = m.deserialize(recorder.published[-1][1], m.POINT_CLOUD2, store)
    assert (cloud.height, cloud.width) == (4, 6) and pipeline.settings.cloud_stride == 2


def test_node_and_bag_tool_report_the_same_diagnostics() -> None:
    """One rule for /diagnostics: the node's worker and `panopticdepth bag` (which reports straight from its
    pipeline) give the same level and message for the same frames, busy drops included."""
    store = m.get_store()
    recorder = _Recorder()
    worker, node_pipeline, mailbox = _worker(lambda: 0.0, recorder)
    bag_pipeline = FramePipeline(FakePredictor())
    for pipeline in (node_pipeline, bag_pipeline):  # the same clock, so the same rate
        pipeline.stats.clock = itertools.count().__next__
    image, info = _image_bytes(store), _camera_info_bytes(store)
    reports = []
    for frames in ([image], [b"\x00\x01garbage"], [image, image], [image]):
        for data in frames:
            mailbox.put(Frame(data, info, 0.0))
        worker.step()
        for _ in frames[:-1]:  # the bag tool never drops a frame as stale; count it the way the worker does
            bag_pipeline.stats.frames_in += 1
            bag_pipeline.stats.note_dropped("busy")
        bag_pipeline.process(frames[-1], info, recorder.wanted)
        node_level, node_message, _ = _diagnostics(worker.diagnostics_bytes())
        bag_level, bag_message, _ = _diagnostics(bag_pipeline.diagnostics(STAMP)[1])
        assert (node_level, node_message) == (bag_level, bag_message)
        reports.append(node_level)
    assert reports == [0, 1, 0, 0]  # a bad frame warns once; stale drops alone do not


def test_worker_thread_starts_and_stops() -> None:
    store = m.get_store()
    recorder = _Recorder()
    worker, pipeline, mailbox = _worker(time.monotonic, recorder)
    worker.start()
    try:
        mailbox.put(Frame(_image_bytes(store), None, 0.0))
        deadline = time.monotonic() + 10
        while not any(topic == "semantic" for topic, _ in recorder.published) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert any(topic == "semantic" for topic, _ in recorder.published)
        # ~/depth goes out without camera_info, with a warning that its scale assumes the canonical camera
        assert any(topic == "depth" for topic, _ in recorder.published)
        assert [w for w in recorder.warnings if "no camera_info" in w and "canonical camera" in w]
    finally:
        assert worker.stop(timeout=10)
    assert not worker.running


# ---------------------------------------------------------------------------- node.py against a stand-in rclpy
def test_node_module_without_ros_names_rclpy() -> None:
    if importlib.util.find_spec("rclpy") is not None:
        pytest.skip("rclpy is installed here")
    sys.modules.pop("panopticdepth_ros.node", None)
    with pytest.raises(ImportError, match="rclpy.*source /opt/ros"):
        importlib.import_module("panopticdepth_ros.node")
    import panopticdepth_ros  # the package itself imports fine without ROS

    assert panopticdepth_ros is not None


class _Result:
    """Stand-in for rclpy's TransitionCallbackReturn."""

    SUCCESS, FAILURE, ERROR = "success", "failure", "error"


class _Parameter:
    """Stand-in for rclpy.parameter.Parameter, with rclpy's type inference for lists (its from_parameter_value:
    a list whose elements are all bytes is a BYTE_ARRAY, and so is the empty list)."""

    class Type:
        NOT_SET, BYTE_ARRAY, INTEGER_ARRAY, OTHER = "not set", "byte array", "integer array", "other"

    def __init__(self, name: str, type_=None, value=None) -> None:
        if type_ is None:
            if isinstance(value, list) and all(isinstance(v, bytes) for v in value):
                type_ = self.Type.BYTE_ARRAY
            elif isinstance(value, list) and all(isinstance(v, int) for v in value):
                type_ = self.Type.INTEGER_ARRAY
            else:
                type_ = self.Type.NOT_SET if value is None else self.Type.OTHER
        self.name, self.type_, self.value = name, type_, value


class _Publisher:
    def __init__(self, msg_type, topic: str, qos) -> None:
        self.msg_type, self.topic, self.qos = msg_type, topic, qos
        self.enabled = False
        self.subscribers = 0
        self.sent: list[bytes] = []

    def publish(self, data) -> None:
        assert type(data) is bytes, "rclpy publishes raw only for exactly bytes"
        if self.enabled:
            self.sent.append(data)

    def get_subscription_count(self) -> int:
        return self.subscribers


class _FakeLifecycleNode:
    """The rclpy.lifecycle.LifecycleNode surface node.py uses, keeping rclpy's private attribute names busy."""

    global_overrides: dict = {}
    instances: list = []

    def __init__(self, name: str, *, parameter_overrides: dict | None = None) -> None:
        self.instances.append(self)
        self.created: list[_Publisher] = []
        self._publishers: list = ["rclpy's own"]  # a node that overwrote these would break rclpy
        self._subscriptions: list = ["rclpy's own"]
        self._name = name
        self._overrides = dict(self.global_overrides if parameter_overrides is None else parameter_overrides)
        self._values: dict = {}
        self._callbacks: list = []
        self.managed: list[_Publisher] = []
        self.subscriptions_made: list = []
        self.log: list[tuple[str, str]] = []
        self.now_ns = 1_700_000_000_000_000_000

    # parameters
    def declare_parameter(self, name, value, descriptor):
        assert descriptor.dynamic_typing is True
        self._values[name] = _Parameter(name, value=self._overrides.get(name, value))
        return self._values[name]

    def get_parameter(self, name):
        return self._values[name]

    def add_on_set_parameters_callback(self, callback) -> None:
        self._callbacks.append(callback)

    def set_parameters(self, values):
        """rclpy takes a list of Parameters; the tests may pass a {name: value} dict."""
        if isinstance(values, dict):
            values = [_Parameter(k, value=v) for k, v in values.items()]
        for callback in self._callbacks:
            result = callback(values)
            if not result.successful:
                return result
        self._values.update({p.name: p for p in values})
        return SimpleNamespace(successful=True)

    # entities
    def create_lifecycle_publisher(self, msg_type, topic, qos):
        publisher = _Publisher(msg_type, topic, qos)
        self.managed.append(publisher)
        self.created.append(publisher)
        return publisher

    def destroy_lifecycle_publisher(self, publisher) -> None:
        self.managed.remove(publisher)

    def create_subscription(self, msg_type, topic, callback, qos, raw=False):
        assert raw is True
        subscription = SimpleNamespace(msg_type=msg_type, topic_name=topic if topic.startswith("/") else "/" + topic,
                                       callback=callback, qos=qos)
        self.subscriptions_made.append(subscription)
        return subscription

    def destroy_subscription(self, subscription) -> None:
        self.subscriptions_made.remove(subscription)

    # lifecycle (rclpy: a raising callback becomes ERROR; the default on_activate enables managed publishers)
    def _transition(self, callback) -> str:
        try:
            return callback(SimpleNamespace(label="x"))
        except Exception:
            return _Result.ERROR

    def trigger_configure(self):
        return self._transition(self.on_configure)

    def trigger_activate(self):
        return self._transition(self.on_activate)

    def trigger_deactivate(self):
        return self._transition(self.on_deactivate)

    def trigger_cleanup(self):
        return self._transition(self.on_cleanup)

    def on_activate(self, state):
        for publisher in self.managed:
            publisher.enabled = True
        return _Result.SUCCESS

    def on_deactivate(self, state):
        for publisher in self.managed:
            publisher.enabled = False
        return _Result.SUCCESS

    # misc
    def get_logger(self):
        node = self

        class Logger:
            def __getattr__(self, level):
                return lambda text, **kwargs: node.log.append((level, text))

        return Logger()

    def get_clock(self):
        node = self

        class Clock:
            def now(self):
                ns = node.now_ns
                return SimpleNamespace(nanoseconds=ns, seconds_nanoseconds=lambda: divmod(ns, 1_000_000_000))

        return Clock()

    def get_fully_qualified_name(self) -> str:
        return "/" + self._name

    def destroy_node(self) -> None:
        pass


@pytest.fixture
def fake_ros(monkeypatch: pytest.MonkeyPatch):
    """Install a stand-in rclpy (+ message packages) and import panopticdepth_ros.node against it."""
    def module(name: str, **attrs) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, mod)
        return mod

    class Executor:
        """Each wait is "interrupted": a real SIGINT to this process, which node.main must turn into a clean exit."""

        waits = 0

        def add_node(self, node) -> None:
            self.node = node

        def remove_node(self, node) -> None:
            pass

        def spin_once(self, timeout_sec=None) -> None:
            Executor.waits += 1
            os.kill(os.getpid(), signal.SIGINT)

    logs: list[str] = []
    state = {"ok": False}
    def init(args=None, signal_handler_options=None) -> None:
        assert signal_handler_options == "no", "rclpy's signal handlers re-raise KeyboardInterrupt anywhere"
        state.update(ok=True)

    rclpy = module("rclpy", init=init, ok=lambda: state["ok"], shutdown=lambda: state.update(ok=False))
    rclpy.signals = module("rclpy.signals", SignalHandlerOptions=SimpleNamespace(NO="no", ALL="all"))
    rclpy.parameter = module("rclpy.parameter", Parameter=_Parameter)
    rclpy.logging = module("rclpy.logging", get_logger=lambda name: SimpleNamespace(
        error=logs.append, debug=logs.append, info=logs.append, warning=logs.append))
    rclpy.executors = module("rclpy.executors", ExternalShutdownException=type("ExternalShutdownException",
                                                                                (Exception,), {}),
                             SingleThreadedExecutor=Executor)
    rclpy.lifecycle = module("rclpy.lifecycle", LifecycleNode=_FakeLifecycleNode, LifecycleState=SimpleNamespace,
                             TransitionCallbackReturn=_Result)
    rclpy.qos = module("rclpy.qos", QoSProfile=lambda **kw: SimpleNamespace(**kw),
                       DurabilityPolicy=SimpleNamespace(TRANSIENT_LOCAL="transient_local", VOLATILE="volatile"),
                       HistoryPolicy=SimpleNamespace(KEEP_LAST="keep_last"),
                       ReliabilityPolicy=SimpleNamespace(BEST_EFFORT="best_effort", RELIABLE="reliable"))
    module("rcl_interfaces")
    module("rcl_interfaces.msg", ParameterDescriptor=lambda **kw: SimpleNamespace(**kw),
           SetParametersResult=lambda successful, reason="": SimpleNamespace(successful=successful, reason=reason))
    for typename in (m.IMAGE, m.CAMERA_INFO, m.COMPRESSED_IMAGE, m.POINT_CLOUD2, m.LABEL_INFO, m.MARKER_ARRAY,
                     m.DIAGNOSTIC_ARRAY, m.DETECTION_2D_ARRAY, m.DETECTION_3D_ARRAY, TF_MESSAGE):
        package, _, name = typename.split("/")
        if package not in sys.modules or f"{package}.msg" not in sys.modules:
            module(package)
            module(f"{package}.msg")
        msg = sys.modules[f"{package}.msg"]
        # the "class" is its type name, so tests can check it; monkeypatch restores the real class where ROS is
        # installed (a later launch test would otherwise meet a str where a message class belongs)
        monkeypatch.setattr(msg, name, typename, raising=False)
    monkeypatch.delitem(sys.modules, "panopticdepth_ros.node", raising=False)
    node_module = importlib.import_module("panopticdepth_ros.node")
    yield SimpleNamespace(node=node_module, logs=logs, executor=Executor)
    sys.modules.pop("panopticdepth_ros.node", None)
    import panopticdepth_ros

    panopticdepth_ros.__dict__.pop("node", None)


def _wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_node_lifecycle_with_a_stand_in_rclpy(fake_ros, tiny_weights: Path) -> None:
    node = fake_ros.node.PanopticDepthNode(parameter_overrides={"weights": str(tiny_weights), "device": "cpu",
                                                                "diagnostics_period": 0.1})
    assert node._publishers == ["rclpy's own"] and node._subscriptions == ["rclpy's own"]
    assert node.trigger_configure() == _Result.SUCCESS, node.log
    topics = {p.topic: p for p in node.managed}
    assert set(topics) == {"~/" + s for s in OUTPUTS} | {"~/label_info", "/diagnostics"}
    assert topics["~/label_info"].qos.durability == "transient_local"
    assert topics["~/points"].qos.reliability == "reliable" and topics["~/points"].msg_type == m.POINT_CLOUD2

    assert node.trigger_activate() == _Result.SUCCESS
    assert len(topics["~/label_info"].sent) == 1  # latched once
    label_info = m.deserialize(topics["~/label_info"].sent[0], m.LABEL_INFO, m.get_store())
    assert label_info.class_map[0].class_name == "road"
    image_sub, info_sub, tf_sub, tf_static_sub = node.subscriptions_made
    assert image_sub.msg_type == m.IMAGE and image_sub.qos.reliability == "best_effort" and image_sub.qos.depth == 1
    # tf2_ros's listener QoS: reliable, depth 100; /tf_static transient local (latched)
    assert (tf_sub.topic_name, tf_sub.msg_type, tf_sub.qos.durability) == ("/tf", TF_MESSAGE, "volatile")
    assert (tf_static_sub.topic_name, tf_static_sub.qos.durability) == ("/tf_static", "transient_local")
    assert {tf_sub.qos.reliability, tf_static_sub.qos.reliability, tf_sub.qos.depth} == {"reliable", 100}
    store = m.get_store()
    stamp_ns = STAMP[0] * 1_000_000_000 + STAMP[1]
    tf_static_sub.callback(tf_bytes(store, [transform_stamped(store, "base_link", FRAME_ID, np.eye(4), 0)]))
    tf_sub.callback(tf_bytes(store, [transform_stamped(store, "odom", "base_link", np.eye(4), stamp_ns)]))
    topics["~/depth"].subscribers = 1
    topics["~/points"].subscribers = 1
    info_sub.callback(_camera_info_bytes(store, 48, 64))
    image_sub.callback(_image_bytes(store, 48, 64))
    assert _wait_for(lambda: topics["~/points"].sent and topics["/diagnostics"].sent)

    def diagnostics() -> dict[str, str]:
        status = m.deserialize(topics["/diagnostics"].sent[-1], m.DIAGNOSTIC_ARRAY, store).status[0]
        return {kv.key: kv.value for kv in status.values}

    assert _wait_for(lambda: diagnostics().get("frames with a /tf pose") == "1"), diagnostics()
    assert diagnostics()["tracking frame"] == "odom"
    assert any(level == "info" and "'odom'" in text for level, text in node.log)
    assert topics["~/overlay"].sent == []  # no subscriber: not computed
    depth = m.deserialize(topics["~/depth"].sent[0], m.IMAGE, store)
    assert (depth.encoding, depth.header.frame_id, depth.height, depth.width) == ("32FC1", FRAME_ID, 48, 64)

    result = node.set_parameters({"cloud_stride": 0})
    assert not result.successful and "cloud_stride" in result.reason
    assert node.set_parameters({"cloud_stride": 4, "device": "cpu"}).successful
    sent = len(topics["~/points"].sent)
    image_sub.callback(_image_bytes(store, 48, 64))
    assert _wait_for(lambda: len(topics["~/points"].sent) > sent)
    cloud = m.deserialize(topics["~/points"].sent[-1], m.POINT_CLOUD2, store)
    assert (cloud.height, cloud.width) == (12, 16)  # the live setting reached the running pipeline

    assert node.trigger_deactivate() == _Result.SUCCESS
    assert node.subscriptions_made == [] and node._worker is None
    assert node.trigger_cleanup() == _Result.SUCCESS
    assert node.managed == [] and node._pipeline is None
    assert node._publishers == ["rclpy's own"] and node._subscriptions == ["rclpy's own"]  # rclpy's state intact


def test_node_configure_fails_cleanly_on_missing_weights(fake_ros, tmp_path: Path) -> None:
    node = fake_ros.node.PanopticDepthNode(parameter_overrides={"weights": str(tmp_path / "gone.safetensors")})
    assert node.trigger_configure() == _Result.FAILURE
    assert any(level == "error" and "gone.safetensors" in text for level, text in node.log)
    assert node.managed == [] and node._pipeline is None


def test_node_main_autostarts_and_rejects_bad_parameters(fake_ros, tiny_weights: Path) -> None:
    _FakeLifecycleNode.global_overrides = {"cloud_stride": -1}
    handlers = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    try:
        assert fake_ros.node.main([]) == 1
        assert any("cloud_stride" in text for text in fake_ros.logs)
        _FakeLifecycleNode.global_overrides = {"weights": str(tiny_weights), "device": "cpu"}
        # configures, activates, spins until the SIGINT of the stand-in executor's first wait, cleans up, exits 0
        assert fake_ros.node.main([]) == 0
        assert fake_ros.executor.waits == 1
        node = _FakeLifecycleNode.instances[-1]
        label_info = [p for p in node.created if p.topic == "~/label_info"]
        assert len(label_info) == 1 and len(label_info[0].sent) == 1  # it was activated
        assert node.managed == [] and node._pipeline is None and node._worker is None  # and released at exit
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # restored
    finally:
        _FakeLifecycleNode.global_overrides = {}


def test_node_declares_the_empty_label_list_as_an_integer_array(fake_ros) -> None:
    """rclpy would type the default [] as a byte array; `ros2 param dump` then writes `[]` for it."""
    node = fake_ros.node.PanopticDepthNode(parameter_overrides={})
    declared = node.get_parameter("cloud_exclude_labels")
    assert declared.type_ == _Parameter.Type.INTEGER_ARRAY and declared.value == []
    node = fake_ros.node.PanopticDepthNode(parameter_overrides={"cloud_exclude_labels": [10]})
    assert node.get_parameter("cloud_exclude_labels").value == [10]
    assert node.node_params.cloud_exclude_labels == (10,)


def test_every_parameter_is_documented() -> None:
    text = (REPO / "docs" / "ros_node.md").read_text(encoding="utf-8")
    missing = [name for name in PARAMETERS if f"`{name}`" not in text]
    assert not missing, f"docs/ros_node.md does not mention {missing}"
