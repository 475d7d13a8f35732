"""`panopticdepth extract`: turn a rosbag2 recording into a Cityscapes-DPS-layout training set.

Example (the sample bag of ``panopticdepth synth --bag /tmp/demo_bag --num 20``)::

    panopticdepth extract --bag /tmp/demo_bag --out /tmp/demo_data --image-topic /camera/image_raw \\
        --camera-info-topic /camera/camera_info --lidar-topic /lidar/points \\
        --semantic-topic /camera/semantic --instance-topic /camera/instance

writes ``/tmp/demo_data/train/`` for ``DATASETS.TRAIN ("dps_folder:/tmp/demo_data/train",)``. The work is done
by ``panopticdepth_ros.bags.extraction`` (rosbags; no ROS install needed). See docs/bag_extraction.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .argtypes import number, positive_int


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bag", required=True, type=Path, metavar="IN",
                        help="rosbag2 folder (mcap or sqlite3), or a single .mcap / .db3 file")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output root; frames go to DIR/SPLIT/")
    parser.add_argument("--image-topic", required=True, metavar="T",
                        help="camera images (sensor_msgs/Image or CompressedImage)")
    parser.add_argument("--camera-info-topic", metavar="C",
                        help="sensor_msgs/CameraInfo of the images: per-frame intrinsics (needed with --lidar-topic)")
    depth = parser.add_mutually_exclusive_group()
    depth.add_argument("--depth-topic", metavar="D",
                       help="depth image registered to the camera: 32FC1 metres or 16UC1 millimetres")
    depth.add_argument("--lidar-topic", metavar="L",
                       help="sensor_msgs/PointCloud2 projected into the camera with camera_info and /tf_static, /tf")
    parser.add_argument("--semantic-topic", metavar="S", help="semantic label image (with --instance-topic)")
    parser.add_argument("--instance-topic", metavar="I", help="instance id image (with --semantic-topic)")
    parser.add_argument("--panoptic-topic", metavar="P",
                        help="panoptic label image: class * 1000 + instance (32SC1/16UC1) or CARLA colour ids")
    parser.add_argument("--class-map", type=Path, metavar="YAML",
                        help="source label id -> Cityscapes train id (0..18, 255 void); default: ids already are")
    parser.add_argument("--pseudo-labels", nargs=2, metavar=("CONFIG", "WEIGHTS"),
                        help="label every frame with a trained model instead of label topics (recorded as such)")
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--every", type=positive_int, default=1, metavar="N", help="keep every N-th image (default 1)")
    rate.add_argument("--max-rate", type=number, default=None, metavar="HZ",
                      help="keep at most HZ images per second of header time")
    parser.add_argument("--time-tolerance", type=number, default=0.05, metavar="SEC",
                        help="largest header-stamp difference for a match with the image (default 0.05 s)")
    parser.add_argument("--split", default="train", metavar="NAME", help="split folder under DIR (default train)")
    parser.add_argument("--storage", default="auto", choices=("auto", "mcap", "sqlite3"),
                        help="bag storage (default: detected from the bag)")
    parser.add_argument("--distro", default="humble", choices=("humble", "jazzy"),
                        help="ROS 2 distro whose message definitions decode the bag (what counts for bags without "
                             "definitions, e.g. sqlite3 bags before Iron; default humble)")
    parser.add_argument("--depth-scale", type=number, default=None, metavar="FACTOR",
                        help="metres per stored depth unit (default 1 for 32FC1, 0.001 for 16UC1)")
    parser.add_argument("--device", default="cpu", help="torch device for --pseudo-labels (default cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from ..bags.errors import BagError
    from ..bags.extraction import ExtractOptions, extract_bag

    options = ExtractOptions(
        bag=args.bag, out=args.out, image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
        depth_topic=args.depth_topic, lidar_topic=args.lidar_topic, semantic_topic=args.semantic_topic,
        instance_topic=args.instance_topic, panoptic_topic=args.panoptic_topic, class_map=args.class_map,
        every=args.every, max_rate=args.max_rate, time_tolerance=args.time_tolerance, split=args.split,
        storage=args.storage, pseudo_labels=tuple(args.pseudo_labels) if args.pseudo_labels else None,
        depth_scale=args.depth_scale, device=args.device, progress=not args.quiet, distro=args.distro,
    )
    try:
        summary = extract_bag(options)
    except (BagError, OSError) as exc:
        print(f"panopticdepth extract: error: {exc}", file=sys.stderr)
        return 1
    print(summary.format(args.time_tolerance))
    return 0
