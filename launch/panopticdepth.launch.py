"""Launch panopticdepth_node (a lifecycle node) and optionally rviz2. Works on Humble and Jazzy.

    ros2 launch panopticdepth_ros panopticdepth.launch.py image:=/camera/image_raw \
        camera_info:=/camera/camera_info use_rviz:=true

Arguments: params_file, weights, image, camera_info, namespace, use_rviz, autostart, log_level, rviz_fixed_frame.
Autostart is the node's own ``autostart`` parameter (it configures and activates itself), because launch_ros'
LifecycleNode has no autostart option in Humble or Jazzy; with autostart:=false drive it with
``ros2 lifecycle set /panopticdepth_node configure`` (then ``activate``).
"""

from __future__ import annotations

import os
import tempfile

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

PACKAGE = "panopticdepth_ros"
NODE_NAME = "panopticdepth_node"
RVIZ_TOPIC_PREFIX = "/panopticdepth_node/"
RVIZ_FIXED_FRAME = "camera_optical_frame"


def _share() -> str:
    try:
        from ament_index_python.packages import get_package_share_directory

        return get_package_share_directory(PACKAGE)
    except Exception:  # running from a source checkout: launch/ sits next to config/ and rviz/
        return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _truthy(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"expected true or false, got {text!r}")
    return value in ("true", "1", "yes")


def _rviz_config(share: str, namespace: str, fixed_frame: str) -> str:
    """The shipped rviz config with the topics moved into ``namespace`` and the fixed frame set."""
    with open(os.path.join(share, "rviz", "panopticdepth.rviz"), encoding="utf-8") as f:
        text = f.read()
    prefix = "/" + "/".join(p for p in (namespace.strip("/"), NODE_NAME) if p) + "/"
    text = text.replace(RVIZ_TOPIC_PREFIX, prefix).replace(f"Fixed Frame: {RVIZ_FIXED_FRAME}",
                                                           f"Fixed Frame: {fixed_frame}")
    handle, path = tempfile.mkstemp(prefix="panopticdepth_", suffix=".rviz")
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _require_package(package: str, why: str) -> None:
    """Fail before any process starts: launch exits on an action's error without stopping the node it started."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        get_package_prefix(package)
    except PackageNotFoundError:
        raise RuntimeError(f"{why} needs the ROS package '{package}', which is not installed or not sourced "
                           f"(install ros-$ROS_DISTRO-{package.replace('_', '-')}, or leave {why} out)") from None


def _launch_setup(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    use_rviz = _truthy(arg("use_rviz"))
    if use_rviz:
        _require_package("rviz2", "use_rviz:=true")
    share = _share()
    params_file = arg("params_file") or os.path.join(share, "config", "panopticdepth_node.yaml")
    overrides = {"autostart": _truthy(arg("autostart"))}
    if arg("weights"):  # only when given: an empty argument must not hide the params file's weights
        overrides["weights"] = arg("weights")
    namespace = arg("namespace")
    actions = [
        LifecycleNode(
            package=PACKAGE,
            executable=NODE_NAME,
            name=NODE_NAME,
            namespace=namespace,
            output="screen",
            emulate_tty=True,
            parameters=[params_file, overrides],
            remappings=[("image", arg("image")), ("camera_info", arg("camera_info"))],
            ros_arguments=["--log-level", arg("log_level")],
        )
    ]
    if use_rviz:
        actions.append(Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            arguments=["-d", _rviz_config(share, namespace, arg("rviz_fixed_frame"))],
            output="screen",
        ))
    return actions


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument("params_file", default_value="",
                              description="node parameter YAML (default: the package's config/panopticdepth_node.yaml)"),
        DeclareLaunchArgument("weights", default_value="",
                              description="model weights (.safetensors); empty: the params file's (shipped model)"),
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="input image topic (sensor_msgs/Image, or CompressedImage with "
                                          "compressed_input: true)"),
        DeclareLaunchArgument("camera_info", default_value="/camera/camera_info",
                              description="input sensor_msgs/CameraInfo topic"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("use_rviz", default_value="false", description="also start rviz2 with the "
                              "package's panopticdepth.rviz"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="configure and activate at start (false: use `ros2 lifecycle set`)"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
        DeclareLaunchArgument("rviz_fixed_frame", default_value=RVIZ_FIXED_FRAME,
                              description="rviz fixed frame: the camera's optical frame (the images' frame_id)"),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_launch_setup)])
