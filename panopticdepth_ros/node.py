"""`panopticdepth_node`: the managed (lifecycle) rclpy node. Thin: it wires ROS to the ROS-free pieces.

Parameters (params.py), model loading (loading.py), the newest-frame worker (worker.py) and the per-frame path
(frame_pipeline.py) need no ROS and are tested in CI; this module only declares parameters, creates publishers
and raw subscriptions, drives the lifecycle and logs. Runs on Humble (Python 3.10) and Jazzy (Python 3.12); the
rclpy calls used here are the same on both (see docs/ros_node.md, "rclpy API used").

Lifecycle: configure loads the model (a clear error and FAILURE, not a crash, when it cannot) and creates the
publishers; activate publishes ~/label_info, subscribes and starts the worker; deactivate stops both; cleanup
releases the model. With ``autostart`` (default) the node configures and activates itself at start.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import signal
import sys
import threading

try:
    import rclpy
    import rclpy.logging
    from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
except ImportError as _error:  # pragma: no cover - exercised only without ROS
    raise ImportError(
        "panopticdepth_ros.node needs ROS 2 (rclpy, Humble or Jazzy): source /opt/ros/<distro>/setup.bash and "
        f"run it with `ros2 run panopticdepth_ros panopticdepth_node` ({_error}). Without ROS, "
        "`panopticdepth bag` runs the same processing over a rosbag2."
    ) from _error

from . import messages as m
from .frame_pipeline import OUTPUT_TYPES
from .loading import ModelLoadError, build_pipeline
from .params import PARAMETERS, NodeParams, ParameterError, validate
from .tf_poses import TF_MESSAGE, TF_QOS_DEPTH, TF_STATIC_TOPIC, TF_TOPIC, TfPoseSource
from .worker import Frame, FrameMailbox, FrameWorker

NODE_NAME = "panopticdepth_node"
PACKAGE_NAME = "panopticdepth_ros"
WARN_PERIOD_S = 5.0
#: How often the main loop looks at the stop request between executor waits (seconds).
SPIN_PERIOD_S = 0.1

_RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def _msg_class(typename: str):
    """The rclpy message class of "pkg/msg/Name"."""
    package, _, name = typename.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _qos(reliability: str, depth: int, transient_local: bool = False) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=_RELIABILITY[reliability],
        durability=DurabilityPolicy.TRANSIENT_LOCAL if transient_local else DurabilityPolicy.VOLATILE,
    )


def _distro() -> str:
    """Type store for (de)serialization; wire formats agree, so anything but jazzy uses humble's."""
    return "jazzy" if os.environ.get("ROS_DISTRO", "") == "jazzy" else "humble"


def _share_directories() -> list[str]:
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return []
    try:
        return [get_package_share_directory(PACKAGE_NAME)]
    except PackageNotFoundError:
        return []


class PanopticDepthNode(LifecycleNode):
    """Camera image in; panoptic labels, depth, labeled cloud, overlay and boxes out (see docs/ros_node.md)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for name, spec in PARAMETERS.items():
            # Dynamic typing: validate() converts and range-checks with messages that name the parameter.
            descriptor = ParameterDescriptor(description=spec.description, dynamic_typing=True)
            declared = self.declare_parameter(name, list(spec.default) if spec.kind == "int[]" else spec.default,
                                              descriptor)
            if spec.kind == "int[]" and declared.type_ != Parameter.Type.INTEGER_ARRAY and not declared.value:
                # rclpy types an empty list as a byte array (every element of [] is "bytes"); say what it is, so
                # `ros2 param describe/dump/set` treat it as the integer list it is.
                self.set_parameters([Parameter(name, Parameter.Type.INTEGER_ARRAY, [])])
        # A ParameterError here reaches main(), which logs it (the parameter named) and exits with status 1.
        self.node_params: NodeParams = validate(self._parameter_values())
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._pipeline = None
        self._model = None
        self._worker: FrameWorker | None = None
        self._mailbox = FrameMailbox()
        self._outputs: dict[str, object] = {}
        self._label_info_pub = None
        self._diagnostics_pub = None
        self._inputs: list[object] = []
        self._tf_inputs: list[object] = []  # /tf and /tf_static, while tracking is on and the node is active
        self._poses: TfPoseSource | None = None  # camera poses for the tracker (configure .. cleanup)
        self._camera_info = None  # latest camera_info CDR bytes
        self._lifecycle_label = "unconfigured"

    # ---------------------------------------------------------------------------------------- parameters
    def _parameter_values(self) -> dict[str, object]:
        return {name: self.get_parameter(name).value for name in PARAMETERS}

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        """Reject invalid values (naming the parameter); apply per-frame settings at once, the rest at configure."""
        changes = {p.name: p.value for p in parameters if p.name in PARAMETERS}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            new = validate(changes, base=self.node_params)
        except ParameterError as error:
            return SetParametersResult(successful=False, reason=str(error))
        restart = new.changed_restart_parameters(self.node_params)
        self.node_params = new
        if restart and self._lifecycle_label != "unconfigured":
            verb = "takes" if len(restart) == 1 else "take"
            self.get_logger().info(f"{', '.join(restart)} {verb} effect on the next configure "
                                   "(deactivate, cleanup, configure, activate)")
        if self._worker is not None and self._pipeline is not None:
            current = self._pipeline.settings
            settings = new.pipeline_settings(current.distro, current.label_threshold, current.hardware_id)
            # the subscription's message type is fixed until the next configure
            settings = dataclasses.replace(settings, compressed_input=current.compressed_input)
            self._worker.update_settings(settings)
            if new.track:
                self._subscribe_tf()  # tracking turned on while active: its poses need /tf from now on
        return SetParametersResult(successful=True)

    # ----------------------------------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        logger = self.get_logger()
        try:
            self.node_params = validate(self._parameter_values())
            self._pipeline, self._model = build_pipeline(self.node_params, _distro(), _share_directories())
        except (ParameterError, ModelLoadError) as error:
            logger.error(f"configure failed: {error}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        except Exception as error:  # anything else while loading (a torch error) must not kill the node either
            logger.error(f"configure failed: unexpected {type(error).__name__}: {error}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        logger.info(self._model.describe())
        params = self.node_params
        self._poses = TfPoseSource(params.track_fixed_frame, params.track_tf_tolerance, distro=_distro(),
                                   warn=self._warn, info=logger.info, warn_period=WARN_PERIOD_S)
        self._pipeline.camera_poses = self._poses
        output_qos = _qos(params.output_qos_reliability, params.output_qos_depth)
        for suffix, typename in OUTPUT_TYPES.items():  # all of them: the publish_* toggles apply while running
            self._outputs[suffix] = self.create_lifecycle_publisher(_msg_class(typename), "~/" + suffix, output_qos)
        self._label_info_pub = self.create_lifecycle_publisher(
            _msg_class(m.LABEL_INFO), "~/label_info", _qos("reliable", 1, transient_local=True))
        self._diagnostics_pub = self.create_lifecycle_publisher(
            _msg_class(m.DIAGNOSTIC_ARRAY), "/diagnostics", _qos("reliable", 10))
        self._lifecycle_label = "inactive"
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        if result != TransitionCallbackReturn.SUCCESS:
            return result
        stamp = self.get_clock().now().seconds_nanoseconds()
        self._label_info_pub.publish(self._pipeline.label_info(stamp)[1])
        self._worker = FrameWorker(
            self._pipeline, self._mailbox, self._wanted, self._publish, self._warn,
            stamp=lambda: self.get_clock().now().seconds_nanoseconds(),
            extra_values=self._extra_diagnostics, diagnostics_period=self.node_params.diagnostics_period,
            warn_period=WARN_PERIOD_S)
        self._worker.start()
        params = self.node_params
        input_qos = _qos(params.input_qos_reliability, params.input_qos_depth)
        compressed = self._pipeline.settings.compressed_input  # as configured: the pipeline decodes this type
        image_type = _msg_class(m.COMPRESSED_IMAGE if compressed else m.IMAGE)
        self._inputs = [
            self.create_subscription(image_type, "image", self._on_image, input_qos, raw=True),
            self.create_subscription(_msg_class(m.CAMERA_INFO), "camera_info", self._on_camera_info, input_qos,
                                     raw=True),
        ]
        if params.track:
            self._subscribe_tf()
        self._lifecycle_label = "active"
        tf_topics = f", {TF_TOPIC} and {TF_STATIC_TOPIC} (camera poses for tracking)" if self._tf_inputs else ""
        self.get_logger().info(f"active: subscribed to {self._inputs[0].topic_name} and "
                               f"{self._inputs[1].topic_name}{tf_topics}")
        return TransitionCallbackReturn.SUCCESS

    def _subscribe_tf(self) -> None:
        """/tf and /tf_static with tf2_ros's listener QoS (reliable, depth 100; /tf_static transient local, so the
        latched static transforms arrive at once), fed to the pose source as raw CDR bytes."""
        if self._tf_inputs or self._poses is None:
            return
        poses, tf_type = self._poses, _msg_class(TF_MESSAGE)
        self._tf_inputs = [
            self.create_subscription(tf_type, TF_TOPIC, lambda data: poses.add(data, static=False),
                                     _qos("reliable", TF_QOS_DEPTH), raw=True),
            self.create_subscription(tf_type, TF_STATIC_TOPIC, lambda data: poses.add(data, static=True),
                                     _qos("reliable", TF_QOS_DEPTH, transient_local=True), raw=True),
        ]

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._lifecycle_label = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error in state {state.label}: releasing the model; configure again to recover")
        self._stop_processing()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_processing(self) -> None:
        for subscription in [*self._inputs, *self._tf_inputs]:
            self.destroy_subscription(subscription)
        self._inputs, self._tf_inputs = [], []
        if self._worker is not None:
            if not self._worker.stop():
                self.get_logger().warning("the worker is still finishing a frame; it will stop after it")
            self._worker = None
        self._camera_info = None

    def _release(self) -> None:
        """Destroy the publishers and free the model (and its GPU memory)."""
        publishers = [*self._outputs.values(), self._label_info_pub, self._diagnostics_pub]
        for publisher in publishers:
            if publisher is not None:
                self.destroy_lifecycle_publisher(publisher)
        self._outputs, self._label_info_pub, self._diagnostics_pub = {}, None, None
        device = getattr(self._model, "device", "cpu")
        self._pipeline = self._model = self._poses = None
        if str(device).startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        self._lifecycle_label = "unconfigured"

    # ------------------------------------------------------------------------------------------ callbacks
    def _on_image(self, data: bytes) -> None:
        """Executor thread: store the newest frame; the worker picks it up (an unprocessed older one is dropped)."""
        now = self.get_clock().now().nanoseconds * 1e-9
        self._mailbox.put(Frame(data, self._camera_info, now))

    def _on_camera_info(self, data: bytes) -> None:
        self._camera_info = data

    # ------------------------------------------------------------------------------------ worker callbacks
    def _wanted(self) -> list[str]:
        """Outputs that are switched on and have at least one subscriber (no work for the others)."""
        enabled = self.node_params.enabled_outputs()
        return [s for s, publisher in self._outputs.items()
                if s in enabled and publisher.get_subscription_count() > 0]

    def _publish(self, topic: str, data: bytes) -> None:
        publisher = self._diagnostics_pub if topic == "/diagnostics" else self._outputs.get(topic)
        if publisher is not None:
            publisher.publish(data)

    def _warn(self, text: str) -> None:
        self.get_logger().warning(text)

    def _extra_diagnostics(self) -> dict[str, object]:
        values: dict[str, object] = {"lifecycle state": self._lifecycle_label}
        if self._model is not None:
            values["device"] = self._model.device
            values["weights"] = str(self._model.weights)
        values["outputs with subscribers"] = " ".join(self._wanted()) or "none"
        if self._poses is not None and self.node_params.track:
            values.update(self._poses.diagnostics())
        return values

    def stop(self) -> None:
        """Stop the worker and free the model (process exit)."""
        self._stop_processing()
        self._release()


def _stop_on_signals() -> tuple[threading.Event, dict]:
    """An event that SIGINT and SIGTERM set (instead of raising KeyboardInterrupt anywhere), and the handlers
    it replaced. Why: rclpy's own handlers shut the context down at once and then re-raise KeyboardInterrupt at an
    arbitrary point of the main thread, so the worker could publish into a dead context and the process died of
    the signal (exit -2 under `ros2 launch`). Here the main loop sees the request, stops the worker while the
    context is still valid, and exits 0."""
    stop = threading.Event()
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda *_: stop.set())
    return stop, previous


def main(args: list[str] | None = None) -> int:
    """Entry point of `ros2 run panopticdepth_ros panopticdepth_node`; exits 0 on SIGINT and SIGTERM."""
    stop, previous_handlers = _stop_on_signals()
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        logger = rclpy.logging.get_logger(NODE_NAME)
        try:
            node = PanopticDepthNode()
        except ParameterError as error:
            logger.error(f"invalid parameters: {error}")
            rclpy.shutdown()
            return 1
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        if node.node_params.autostart and not stop.is_set():
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                node.trigger_activate()
            else:
                node.get_logger().error(
                    "autostart: configure failed (see above); the node stays unconfigured. Fix the parameter, then "
                    f"`ros2 lifecycle set {node.get_fully_qualified_name()} configure`")
        try:
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=SPIN_PERIOD_S)
        except ExternalShutdownException:  # another part of the process shut the context down
            pass
        finally:
            try:
                node.stop()  # the worker finishes its frame and stops while the context can still publish
            except Exception as error:  # exiting anyway; say why the clean stop failed
                logger.warning(f"while stopping: {type(error).__name__}: {error}")
            executor.remove_node(node)
            node.destroy_node()
            if rclpy.ok():
                rclpy.shutdown()
        return 0
    finally:
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
