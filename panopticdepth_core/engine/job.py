"""One training or evaluation job, as `panopticdepth train` and `python training/train.py` start it.

The flags are defined once, in the command line (``panopticdepth_ros/commands/train.py``); this module is the
library side, as Detectron2 keeps ``default_setup`` in ``detectron2.engine``: the config with its overrides, the
seeds, the logging, and the per-process main that trains or evaluates, started by `distributed.launch` as one
process, N local processes or under torchrun.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import CfgNode, load_config
from .distributed import get_rank, is_main_process, launch

logger = logging.getLogger("panopticdepth.train")


@dataclass(frozen=True)
class TrainJob:
    """What to run: the released train_net.py's options."""

    config_file: str
    opts: list[str] = field(default_factory=list)  # KEY VALUE config overrides
    resume: bool = False  # continue from the newest checkpoint in OUTPUT_DIR
    eval_only: bool = False  # only evaluate MODEL.WEIGHTS on DATASETS.TEST
    num_gpus: int = 1  # processes per machine (CPU workers over gloo without CUDA)
    num_machines: int = 1
    machine_rank: int = 0
    dist_url: str = "auto"


def setup_config(job: TrainJob) -> CfgNode:
    """The job's frozen config; a CUDA device that is not there falls back to the CPU with a warning."""
    cfg = load_config(job.config_file, job.opts, freeze=False)
    if cfg.MODEL.DEVICE == "cuda" and not torch.cuda.is_available():
        logger.warning("MODEL.DEVICE cuda asked for but unavailable; using cpu")
        cfg.MODEL.DEVICE = "cpu"
    return cfg.freeze()


def seed_everything(seed: int, rank: int) -> int:
    """Seed Python, NumPy and torch with ``seed + rank`` (a negative seed draws one); returns the seed used."""
    if seed < 0:
        seed = int.from_bytes(os.urandom(4), "little") % (2**31)
    seed = seed + rank
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return seed


def configure_logging(rank: int) -> None:
    level = logging.INFO if rank == 0 else logging.WARNING
    logging.basicConfig(level=level, format=f"[%(asctime)s r{rank}] %(message)s", datefmt="%H:%M:%S", force=True)


def evaluate_weights(cfg: CfgNode) -> dict:
    """--eval-only: score MODEL.WEIGHTS on every DATASETS.TEST split; rank 0 writes OUTPUT_DIR/eval_metrics.json."""
    from ..checkpoint.io import load_model_weights
    from ..inference.predictor import model_canonical_focal
    from ..modeling.build import build_model
    from .evaluation import evaluate_model

    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        load_model_weights(model, cfg.MODEL.WEIGHTS)
        focal = model_canonical_focal(cfg, cfg.MODEL.WEIGHTS)  # the config and the file must agree on it
        if focal is not None and cfg.MODEL.CANONICAL_FOCAL != focal:  # the file's, when the config has none
            cfg = cfg.clone().defrost()
            cfg.MODEL.CANONICAL_FOCAL = focal
            cfg.freeze()
    metrics = {}
    if is_main_process():
        for name in cfg.DATASETS.TEST:
            metrics[name] = evaluate_model(model, cfg, name)
        out = Path(cfg.OUTPUT_DIR)
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval_metrics.json").write_text(json.dumps(metrics, indent=2))
        print(json.dumps(metrics, indent=2))
    return metrics


def main_worker(job: TrainJob) -> dict:
    """What every process of the job runs: train (or evaluate) and return the last evaluation's metrics."""
    from .trainer import Trainer

    rank = get_rank()
    configure_logging(rank)
    cfg = setup_config(job)
    torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)
    seed_everything(cfg.SEED, rank)
    if job.eval_only:
        return evaluate_weights(cfg)
    return Trainer(cfg, resume=job.resume).train()


def run_job(job: TrainJob) -> int:
    """Start the job's processes (one, N local ones, or this one under torchrun) and wait for them."""
    launch(main_worker, job.num_gpus, num_machines=job.num_machines, machine_rank=job.machine_rank,
           dist_url=job.dist_url, args=(job,))
    return 0
