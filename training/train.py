"""Train or evaluate PanopticDepth: the released code's command line, without Detectron2.

    python training/train.py --config-file config/cityscapes/PanopticDepth-R50-cityscapes.yaml --num-gpus 8 \
        OUTPUT_DIR ./output/ps
    python training/train.py --config-file CFG --num-gpus 8 --resume
    python training/train.py --eval-only --config-file CFG MODEL.WEIGHTS model_final.safetensors

Also available as `panopticdepth train` with the same flags, and under `torchrun --nproc-per-node N`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config-file", required=True, metavar="FILE", help="YAML experiment file")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in OUTPUT_DIR (model, optimizer, schedule, RNG, data)")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate MODEL.WEIGHTS on DATASETS.TEST")
    parser.add_argument("--num-gpus", type=int, default=1,
                        help="processes per machine (one per GPU; CPU workers over gloo when CUDA is absent)")
    parser.add_argument("--num-machines", type=int, default=1, help="machines in the job")
    parser.add_argument("--machine-rank", type=int, default=0, help="rank of this machine (0 .. num-machines-1)")
    parser.add_argument("--dist-url", default="auto",
                        help="tcp://HOST:PORT of machine 0 (auto: a free local port, one machine only)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS x OUTPUT_DIR y")


def setup_config(args: argparse.Namespace):
    from panopticdepth_core.config import load_config

    cfg = load_config(args.config_file, args.opts, freeze=False)
    if cfg.MODEL.DEVICE == "cuda" and not torch.cuda.is_available():
        logging.getLogger("panopticdepth.train").warning("MODEL.DEVICE cuda asked for but unavailable; using cpu")
        cfg.MODEL.DEVICE = "cpu"
    return cfg.freeze()


def seed_everything(seed: int, rank: int) -> int:
    if seed < 0:
        seed = int.from_bytes(os.urandom(4), "little") % (2**31)
    seed = seed + rank
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return seed


def _configure_logging(rank: int) -> None:
    level = logging.INFO if rank == 0 else logging.WARNING
    logging.basicConfig(level=level, format=f"[%(asctime)s r{rank}] %(message)s", datefmt="%H:%M:%S", force=True)


def main_worker(args: argparse.Namespace) -> dict:
    from training.distributed import get_rank, is_main_process
    from training.loop import Trainer

    rank = get_rank()
    _configure_logging(rank)
    cfg = setup_config(args)
    torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)
    seed_everything(cfg.SEED, rank)
    if args.eval_only:
        from panopticdepth_core.checkpoint.io import load_model_weights
        from panopticdepth_core.modeling.build import build_model
        from training.evaluate import evaluate_model

        model = build_model(cfg)
        if cfg.MODEL.WEIGHTS:
            load_model_weights(model, cfg.MODEL.WEIGHTS)
        metrics = {}
        if is_main_process():
            for name in cfg.DATASETS.TEST:
                metrics[name] = evaluate_model(model, cfg, name)
            out = Path(cfg.OUTPUT_DIR)
            out.mkdir(parents=True, exist_ok=True)
            (out / "eval_metrics.json").write_text(json.dumps(metrics, indent=2))
            print(json.dumps(metrics, indent=2))
        return metrics
    trainer = Trainer(cfg, resume=args.resume)
    return trainer.train()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="train.py", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    from training.distributed import launch

    launch(main_worker, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
