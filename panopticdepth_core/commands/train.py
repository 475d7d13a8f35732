"""`panopticdepth train`: the same flags as training/train.py (the released code's command line)."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    from training.train import add_arguments

    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from training.train import run as run_training

    return run_training(args)
