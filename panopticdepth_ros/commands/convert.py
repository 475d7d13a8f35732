"""`panopticdepth convert`: released PanopticDepth / PanopticFCN Detectron2 checkpoint (.pth) -> .safetensors."""

from __future__ import annotations

import argparse
import sys


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="released Detectron2 checkpoint (.pth / .pkl with a 'model' entry)")
    parser.add_argument("output", help="where to write the converted weights (.safetensors)")
    parser.add_argument("--config", default=None,
                        help="config the weights are for (default: the shipped Cityscapes-DPS config if the "
                             "checkpoint has depth heads, else the Cityscapes panoptic one); stored in the output")
    parser.add_argument("--show-mapping", action="store_true",
                        help="also print every released key and the key it became")


def run(args: argparse.Namespace) -> int:
    from panopticdepth_core.checkpoint.convert import convert_checkpoint
    from panopticdepth_core.checkpoint.io import CheckpointError
    from panopticdepth_core.config import ConfigError

    try:
        report = convert_checkpoint(args.input, args.output, args.config)
    except (CheckpointError, ConfigError) as exc:
        print(f"panopticdepth convert: error: {exc}", file=sys.stderr)
        return 1
    print(f"converted {args.input} -> {args.output}")
    print(report.summary())
    if args.show_mapping:
        for released, ours in report.mapped:
            print(f"{released} -> {ours}")
    return 0
