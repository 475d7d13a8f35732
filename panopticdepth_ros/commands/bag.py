"""`panopticdepth bag`: the ROS node's offline twin, rosbag2 in -> the node's output topics in a new rosbag2.

Example: ``panopticdepth bag --input sample_bag --output sample_out`` (auto-detects the camera topic, uses the
shipped model). Needs no ROS install (rosbags reads and writes the bags). See docs/ros_node.md.
"""

from __future__ import annotations

import argparse
import sys

from .argtypes import positive_number


def _output_list(text: str) -> list[str]:
    from ..frame_pipeline import OUTPUTS

    names = [name.strip().removeprefix("~/") for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in OUTPUTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(OUTPUTS)}; got {text!r}")
    return names


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, metavar="IN", help="input rosbag2 (folder, .mcap or .db3)")
    parser.add_argument("--output", required=True, metavar="OUT", help="output rosbag2 folder (must not exist)")
    parser.add_argument("--image-topic", metavar="T", default=None,
                        help="sensor_msgs/Image or CompressedImage topic (default: the bag's only colour image topic)")
    parser.add_argument("--camera-info-topic", metavar="C", default=None,
                        help="sensor_msgs/CameraInfo topic (default: the one next to the image topic, or the only "
                             "one; without camera_info ~/points, ~/instances and ~/depth/camera_info are off)")
    parser.add_argument("--focal", type=positive_number, default=None, metavar="PX",
                        help="for a bag without camera_info: intrinsics of a pinhole camera with fx = fy = PX and "
                             "the principal point at the image centre, so the 3D outputs are written")
    parser.add_argument("--params-file", metavar="YAML", default=None,
                        help="the node's parameter file (e.g. config/panopticdepth_node.yaml): same settings "
                             "offline; the flags below override it")
    parser.add_argument("--config", metavar="CFG", default=None, help="model config YAML (node parameter "
                        "model_config; default: the config in the weights, or the shipped model's)")
    parser.add_argument("--weights", metavar="W", default=None, help="model weights (default: the shipped model)")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    parser.add_argument("--precision", default=None, choices=("fp32", "fp16", "bf16"), help="default fp32")
    parser.add_argument("--providers", default=None, metavar="LIST",
                        help="onnxruntime execution providers for an .onnx --weights (node parameter "
                             "onnx_providers): auto (default) or a comma-separated list of cpu, cuda, tensorrt")
    parser.add_argument("--rectify", action="store_true", default=None,
                        help="undistort raw images with the camera_info's D, R and P before the network (node "
                             "parameter rectify; needs opencv-python-headless); outputs in the rectified geometry")
    parser.add_argument("--no-track", dest="track", action="store_false", default=None,
                        help="number things 1..N per frame instead of tracking them (node parameter track)")
    parser.add_argument("--outputs", type=_output_list, default=None, metavar="LIST",
                        help="comma-separated outputs to write, e.g. points,overlay (default: all the parameters "
                             "switch on); ~/label_info and /diagnostics are always written")
    parser.add_argument("--namespace", default="/panopticdepth_node",
                        help="prefix of the output topics, as the node's ~ (default /panopticdepth_node)")
    parser.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"), help="output format (default mcap)")
    parser.add_argument("--distro", default="humble", choices=("humble", "jazzy"),
                        help="ROS 2 distro whose message definitions decode the input (when the bag has none) and "
                             "whose definitions and bag layout are written (default humble)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..bags.errors import BagError
    from ..bags.offline import run_bag
    from ..loading import ModelLoadError
    from ..params import ParameterError, load_params_file, validate

    def fail(message: str) -> int:
        print(f"panopticdepth bag: error: {message}", file=sys.stderr)
        return 1

    try:
        values = load_params_file(args.params_file) if args.params_file else {}
        flags = {"model_config": args.config, "weights": args.weights, "device": args.device,
                 "precision": args.precision, "rectify": args.rectify, "track": args.track,
                 "onnx_providers": args.providers}
        values.update({name: value for name, value in flags.items() if value is not None})
        params = validate(values)
    except (ParameterError, ValueError, OSError) as error:
        return fail(str(error))
    try:
        summary = run_bag(args.input, args.output, params, image_topic=args.image_topic,
                          camera_info_topic=args.camera_info_topic, outputs=args.outputs, storage=args.storage,
                          distro=args.distro, namespace=args.namespace, progress=not args.quiet,
                          log=lambda text: print(text, file=sys.stderr), focal=args.focal)
    except (BagError, ModelLoadError) as error:
        return fail(str(error))
    except OSError as error:  # e.g. the disk filled up while writing; the partial output was removed
        return fail(f"writing {args.output} failed: {error}")
    except KeyboardInterrupt:
        print("panopticdepth bag: interrupted; no output written", file=sys.stderr)
        return 130
    print("\n".join(summary.lines()))
    return 0
