"""The `panopticdepth` command: the project's one command line, one subcommand per module in ``commands/``.

It lives here, in the package on top of the others, because its tools span every layer: the core's predictor,
evaluation, synthetic data and training engine, and this package's bag tools. ``training/train.py`` is this
command's ``train``. Subcommand modules are imported only when needed, so `panopticdepth --help` stays fast and a
broken optional dependency of one tool does not break the others.
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
    "train": ("train", "train or evaluate a model (the released train_net.py flags; also training/train.py)"),
    "convert": ("convert", "convert a released PanopticDepth/PanopticFCN Detectron2 checkpoint"),
    "export": ("export", "write the network as ONNX (for onnxruntime / TensorRT; .onnx runs wherever weights do)"),
    "bag": ("bag", "run the node's processing over a rosbag2 and write its output topics to a new bag"),
    "extract": ("extract", "turn a rosbag2 recording into a Cityscapes-DPS-layout training set"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="panopticdepth", description="Depth-aware panoptic segmentation.")
    from panopticdepth_core import __version__

    parser.add_argument("--version", action="version", version=f"panopticdepth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run ``panopticdepth ARGV``; ``prog`` names the command in usage messages (``train.py`` for the script)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "--version") or argv[0] not in SUBCOMMANDS:
        parser = build_parser()
        parser.parse_args(argv or ["--help"])
        return 2
    name = argv[0]
    module = importlib.import_module(f"{__package__}.commands.{SUBCOMMANDS[name][0]}")
    sub_parser = argparse.ArgumentParser(prog=prog or f"panopticdepth {name}", description=SUBCOMMANDS[name][1])
    module.register(sub_parser)
    args = sub_parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
