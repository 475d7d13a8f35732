"""Train or evaluate PanopticDepth: the released code's command line (train_net.py), without Detectron2.

    python training/train.py --config-file config/cityscapes/PanopticDepth-R50-cityscapes.yaml --num-gpus 8 \
        OUTPUT_DIR ./output/ps
    python training/train.py --config-file CFG --num-gpus 8 --resume
    python training/train.py --eval-only --config-file CFG MODEL.WEIGHTS model_final.safetensors

The same as `panopticdepth train` (same flags, defined once in panopticdepth_ros/commands/train.py), and it runs
under ``torchrun --nproc-per-node N training/train.py ...``. Needs the package installed (``pip install -e .``).
"""

from __future__ import annotations

import sys

from panopticdepth_ros.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)], prog="train.py")


if __name__ == "__main__":
    raise SystemExit(main())
