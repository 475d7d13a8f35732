"""`panopticdepth synth`: render synthetic street scenes into a Cityscapes-DPS-layout folder.

Example: ``panopticdepth synth --out /tmp/synth --num 1000 --size 256x512 --seed 0 --workers 4`` writes
``/tmp/synth/train/*_{leftImg8bit,gtFine_instanceTrainIds,depth}.png`` plus ``*_camera.json`` and
``dataset.json``. ``panopticdepth synth --bag /tmp/demo_bag --num 20`` writes the same kind of scenes as a
rosbag2 (camera, camera_info, depth, LiDAR, /tf_static, label topics; see docs/bag_extraction.md) instead of, or
as well as (with ``--out``), the folder. ``--sequences S --frames F [--fps HZ]`` renders S drives of F frames
instead (a moving camera, moving things, instance ids that persist through a drive); with ``--bag`` the first
drive is one continuous recording with /tf for the camera motion. See docs/synthetic.md.
"""

from __future__ import annotations

import argparse
import re

from panopticdepth_core.data.synthetic_profiles import PROFILES

from .argtypes import non_negative_int, positive_int

_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' (e.g. '256x512') -> (256, 512); argparse turns the ValueError into a usage error naming --size."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH in pixels such as 256x512, got {text!r}")
    height, width = int(match.group(1)), int(match.group(2))
    if height < 8 or width < 8 or height > 8192 or width > 8192:
        raise argparse.ArgumentTypeError(f"height and width must be 8..8192 pixels, got {height}x{width}")
    return height, width


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of pixels, got {text!r}")
    return value


def _positive_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected frames per second, got {text!r}") from None
    if not 0 < value < 1000:
        raise argparse.ArgumentTypeError(f"must be a rate in (0, 1000) frames per second, got {text!r}")
    return value


def _split_name(text: str) -> str:
    if not text or text in (".", "..") or any(c in text for c in "/\\"):
        raise argparse.ArgumentTypeError(f"expected a plain folder name such as train or val, got {text!r}")
    return text


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None,
                        help="output root; frames go to OUT/SPLIT/ (required unless --bag is given)")
    parser.add_argument("--num", default=None, type=non_negative_int,
                        help="number of scenes to render (independent frames); or give --sequences")
    parser.add_argument("--sequences", default=None, type=non_negative_int, metavar="S",
                        help="render S drives instead of --num scenes: the camera drives along the street, things "
                             "move, enter, leave and occlude each other, every thing keeps its id through a drive")
    parser.add_argument("--frames", default=30, type=positive_int, metavar="F",
                        help="frames per drive with --sequences (default 30)")
    parser.add_argument("--fps", default=10.0, type=_positive_rate, metavar="HZ",
                        help="frame rate of a drive with --sequences: its frame times and, with --bag, its stamps "
                             "(default 10)")
    parser.add_argument("--size", default=(256, 512), type=parse_size, metavar="HxW",
                        help="image size in pixels, height x width (default 256x512)")
    parser.add_argument("--seed", default=0, type=non_negative_int,
                        help="data set seed; scene i uses (seed * 1000003 + i) mod 2**63 (default 0)")
    parser.add_argument("--split", default="train", type=_split_name, help="split folder name under OUT (default train)")
    parser.add_argument("--workers", default=1, type=positive_int, help="processes rendering in parallel")
    parser.add_argument("--focal", default=None, type=_positive_float, metavar="PIXELS",
                        help="fixed focal length fx = fy in pixels (default: horizontal FOV drawn from 60-90 deg)")
    parser.add_argument("--profile", default="streets", choices=tuple(PROFILES),
                        help="what scenes may contain: streets = all 18 classes the generator draws (default); basic = "
                             "road, sidewalk, building, vegetation, sky and cars up to 30 m (the CPU learning test)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    bag = parser.add_argument_group("sample rosbag2 (see docs/bag_extraction.md)")
    bag.add_argument("--bag", default=None, metavar="PATH",
                     help="also (or only) write the scenes as a rosbag2 folder at PATH (must not exist): camera image, "
                          "camera_info, depth image, LiDAR cloud, /tf_static, semantic and instance label topics")
    bag.add_argument("--bag-storage", default="mcap", choices=("mcap", "sqlite3"), help="bag storage (default mcap)")
    bag.add_argument("--distro", default="humble", choices=("humble", "jazzy"),
                     help="ROS 2 distribution whose message definitions and bag format to write, and which the bag "
                          "declares (`ros2 bag info`: ROS Distro; default humble)")


def run(args: argparse.Namespace) -> int:
    import sys

    from panopticdepth_core.data.synthetic import write_synthetic_dataset, write_synthetic_sequences

    from ..bags.errors import BagError

    if args.out is None and args.bag is None:
        print("panopticdepth synth: error: give --out DIR (a data set folder) and/or --bag PATH (a rosbag2)",
              file=sys.stderr)
        return 2
    if (args.num is None) == (args.sequences is None):
        print("panopticdepth synth: error: give either --num N (independent scenes) or --sequences S (drives)",
              file=sys.stderr)
        return 2
    try:
        if args.sequences is not None:
            if args.out is not None:
                split_dir = write_synthetic_sequences(args.out, args.sequences, args.frames, args.size, args.seed,
                                                      args.fps, split=args.split, workers=args.workers,
                                                      progress=not args.quiet, focal=args.focal, profile=args.profile)
                if not args.quiet:
                    print(f"wrote {args.sequences} drives of {args.frames} frames of {args.size[0]}x{args.size[1]} "
                          f"to {split_dir}")
            if args.bag is not None:
                bag = _write_bag(args)
                if not args.quiet:
                    print(f"wrote a {args.bag_storage} rosbag2 ({args.distro}) of drive 0 ({args.frames} frames at "
                          f"{args.fps:g} Hz, /tf for the camera motion) to {bag}")
            return 0
        if args.out is not None:
            split_dir = write_synthetic_dataset(args.out, args.num, args.size, args.seed, split=args.split,
                                                workers=args.workers, progress=not args.quiet, focal=args.focal,
                                                profile=args.profile)
            if not args.quiet:
                print(f"wrote {args.num} frames of {args.size[0]}x{args.size[1]} to {split_dir}")
        if args.bag is not None:
            bag = _write_bag(args)
            if not args.quiet:
                print(f"wrote a {args.bag_storage} rosbag2 ({args.distro}) of {args.num} frames to {bag}")
    except (OSError, ValueError, BagError) as exc:
        print(f"panopticdepth synth: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _write_bag(args: argparse.Namespace):
    """The sample bag; without --focal the camera keeps the 77-degree field of view of fx = 320 px at 512 px."""
    from pathlib import Path

    from ..bags.errors import BagError
    from ..bags.synthetic import write_synthetic_bag

    if Path(args.bag).exists():
        raise BagError(f"{args.bag} already exists; a bag is written to a new folder")
    focal = args.focal if args.focal is not None else 320.0 * args.size[1] / 512.0
    if args.sequences is not None:
        if args.sequences < 1:
            raise BagError("--bag with --sequences writes drive 0: give --sequences 1 or more")
        return write_synthetic_bag(args.bag, args.frames, size=args.size, seed=args.seed, storage=args.bag_storage,
                                   distro=args.distro, focal=focal, profile=args.profile, rate_hz=args.fps,
                                   sequence=0)
    return write_synthetic_bag(args.bag, args.num, size=args.size, seed=args.seed, storage=args.bag_storage,
                               distro=args.distro, focal=focal, profile=args.profile)
