"""`panopticdepth train` and ``python training/train.py``: the released code's command line, defined once here.

    panopticdepth train --config-file config/cityscapes/PanopticDepth-R50-cityscapes.yaml --num-gpus 8 \\
        OUTPUT_DIR ./output/ps
    panopticdepth train --config-file CFG --num-gpus 8 --resume
    panopticdepth train --eval-only --config-file CFG MODEL.WEIGHTS model_final.safetensors

Also works under ``torchrun --nproc-per-node N training/train.py ...``. The work is the engine's
(``panopticdepth_core.engine.job``).
"""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
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


def run(args: argparse.Namespace) -> int:
    from panopticdepth_core.engine.job import TrainJob, run_job

    job = TrainJob(config_file=args.config_file, opts=list(args.opts), resume=args.resume, eval_only=args.eval_only,
                   num_gpus=args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
                   dist_url=args.dist_url)
    return run_job(job)
