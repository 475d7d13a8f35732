"""`panopticdepth synth`: render synthetic street scenes into a Cityscapes-DPS-layout folder.

Example: ``panopticdepth synth --out /tmp/synth --num 1000 --size 256x512 --seed 0 --workers 4`` writes
``/tmp/synth/train/*_{leftImg8bit,gtFine_instanceTrainIds,depth}.png`` plus ``*_camera.json`` and
``dataset.json``. See docs/synthetic.md.
"""

from __future__ import annotations

import argparse
import re

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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of pixels, got {text!r}")
    return value


def _split_name(text: str) -> str:
    if not text or text in (".", "..") or any(c in text for c in "/\\"):
        raise argparse.ArgumentTypeError(f"expected a plain folder name such as train or val, got {text!r}")
    return text


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output root; frames go to OUT/SPLIT/")
    parser.add_argument("--num", required=True, type=_non_negative_int, help="number of scenes to render")
    parser.add_argument("--size", default=(256, 512), type=parse_size, metavar="HxW",
                        help="image size in pixels, height x width (default 256x512)")
    parser.add_argument("--seed", default=0, type=_non_negative_int,
                        help="data set seed; scene i uses (seed * 1000003 + i) mod 2**63 (default 0)")
    parser.add_argument("--split", default="train", type=_split_name, help="split folder name under OUT (default train)")
    parser.add_argument("--workers", default=1, type=_positive_int, help="processes rendering in parallel")
    parser.add_argument("--focal", default=None, type=_positive_float, metavar="PIXELS",
                        help="fixed focal length fx = fy in pixels (default: horizontal FOV drawn from 60-90 deg)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..data.synthetic import write_synthetic_dataset

    try:
        split_dir = write_synthetic_dataset(args.out, args.num, args.size, args.seed, split=args.split,
                                            workers=args.workers, progress=not args.quiet, focal=args.focal)
    except (OSError, ValueError) as exc:
        print(f"panopticdepth synth: error: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"wrote {args.num} frames of {args.size[0]}x{args.size[1]} to {split_dir}")
    return 0
