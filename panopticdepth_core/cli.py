"""The `panopticdepth` command: one entry point, one subcommand per module in ``commands/``.

Subcommand modules are imported only when needed so `panopticdepth --help` stays fast and a broken optional
dependency of one tool does not break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: subcommand -> (module under panopticdepth_core.commands, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("predict", "run the model on images; write official-layout PNGs, overlays and colour depth"),
    "eval": ("evaluate", "score prediction PNGs against ground truth: PQ, DPQ, DVPQ, depth metrics"),
    "synth": ("synth", "render synthetic street scenes with exact depth and panoptic labels"),
    "train": ("train", "train or evaluate a model (same flags as training/train.py)"),
    "convert": ("convert", "convert a released PanopticDepth/PanopticFCN Detectron2 checkpoint"),
    "bag": ("bag", "run the node's processing over a rosbag2 and write its output topics to a new bag"),
    "extract": ("extract", "turn a rosbag2 recording into a Cityscapes-DPS-layout training set"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="panopticdepth", description="Depth-aware panoptic segmentation.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"panopticdepth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "--version") or argv[0] not in SUBCOMMANDS:
        parser = build_parser()
        parser.parse_args(argv or ["--help"])
        return 2
    name = argv[0]
    module = importlib.import_module(f"panopticdepth_core.commands.{SUBCOMMANDS[name][0]}")
    sub_parser = argparse.ArgumentParser(prog=f"panopticdepth {name}", description=SUBCOMMANDS[name][1])
    module.register(sub_parser)
    args = sub_parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
