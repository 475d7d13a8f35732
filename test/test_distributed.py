"""Distributed training on the CPU (issue: training): 2 gloo processes stay in sync and equal 1-process training.

Two worker processes are started the way ``train.py --num-gpus 2`` starts them on a machine without CUDA
(``panopticdepth_core.engine.distributed.launch``: gloo), each runs the real ``Trainer`` for three steps and dumps its weights.

Exact equality with one process holding the whole batch needs two things the test sets up on purpose:
- no batch-dependent normalisation: FrozenBN in the backbone, GroupNorm in the heads (BN statistics of one image
  per rank differ from those of the two-image batch);
- SGD instead of Adam: Adam divides by sqrt(v), which turns float rounding on near-zero gradients into
  lr-sized steps, while SGD keeps rounding differences at rounding size.

The two ranks see two different scenes with different numbers of things, so the test also checks that the loss
normalisers (things, stuff segments, images) and the pooled pixel depth loss (a scale-invariant log error over
every valid pixel of the batch, not a mean of per-image terms) are taken over the whole batch across processes
(``modeling/cross_process.py``). Before that pooling, DDP's depth updates differed from one process's by ~4%;
now both the panoptic stage and the depth stage agree to float rounding (held to 1e-3). Rank equality is exact.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from panopticdepth_core.data.dps_writer import write_dps_frame
from panopticdepth_core.data.synthetic import render_scene

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config/synthetic/PanopticDepth-R18-synthetic-tiny.yaml"
STEPS = 3


def _two_scenes(folder: Path) -> None:
    """Two different scenes in the Cityscapes-DPS layout, with different numbers of things."""
    first, second = render_scene(7, (64, 128), focal=80.0), render_scene(12, (64, 128), focal=80.0)
    assert first.instance.max() >= 2 and second.instance.max() != first.instance.max(), (
        "the test scenes should hold things, in different numbers")
    write_dps_frame(folder, first, seq=0, frame=0)
    write_dps_frame(folder, second, seq=1, frame=0)


def _overrides(data: Path, out: Path, depth_on: bool) -> list[str]:
    return ["MODEL.DEPTH_ON", str(depth_on),
        "DATASETS.TRAIN", f"('dps_folder:{data}',)", "DATASETS.TEST", "()", "INPUT.FLIP", "False",
        "INPUT.COLOR_AUG", "False", "MODEL.RESNETS.NORM", "FrozenBN", "SOLVER.OPTIMIZER", "SGD",
        "SOLVER.BASE_LR", "0.001", "SOLVER.MAX_ITER", str(STEPS), "SOLVER.IMS_PER_BATCH", "2",
        "SOLVER.CHECKPOINT_PERIOD", "0", "TEST.EVAL_PERIOD", "-1", "SEED", "3", "OUTPUT_DIR", str(out),
    ]


def train_and_dump(args: argparse.Namespace, dump_dir: str) -> None:
    """A worker's main function: train like train.py does, then write this rank's weights."""
    from panopticdepth_core.engine.distributed import get_rank
    from panopticdepth_core.engine.job import seed_everything, setup_config
    from panopticdepth_core.engine.trainer import Trainer

    torch.set_num_threads(1)
    cfg = setup_config(args)
    seed_everything(cfg.SEED, get_rank())
    trainer = Trainer(cfg)
    trainer.train()
    state = {k: v.detach().clone() for k, v in trainer.model_plain.state_dict().items()}
    torch.save(state, Path(dump_dir) / f"rank{get_rank()}.pt")


def _namespace(opts: list[str]) -> argparse.Namespace:
    return argparse.Namespace(config_file=str(CONFIG), opts=opts, eval_only=False, resume=False)


def _update(start: dict, end: dict) -> torch.Tensor:
    """All floating-point parameters' change, as one vector."""
    return torch.cat([(end[k] - v).flatten() for k, v in start.items() if v.is_floating_point()])


def _max_difference(a: dict, b: dict) -> tuple[float, str]:
    worst, name = 0.0, ""
    for key, value in a.items():
        if value.is_floating_point():
            diff = float((value - b[key]).abs().max())
            if diff > worst:
                worst, name = diff, key
    return worst, name


@pytest.mark.parametrize(("depth_on", "tolerance"), [(False, 1e-3), (True, 1e-3)], ids=["panoptic", "dps"])
def test_two_gloo_processes_match_single_process_training(tmp_path: Path, depth_on: bool, tolerance: float) -> None:
    from panopticdepth_core.engine.distributed import launch
    from panopticdepth_core.engine.job import seed_everything, setup_config
    from panopticdepth_core.modeling.build import build_model

    data = tmp_path / "data"
    _two_scenes(data)
    # the starting point: the seeded initialisation every run starts from (DDP broadcasts rank 0's)
    cfg = setup_config(_namespace(_overrides(data, tmp_path / "init", depth_on)))
    seed_everything(cfg.SEED, 0)
    start = build_model(cfg).state_dict()

    ddp = tmp_path / "ddp"
    ddp.mkdir()
    launch(train_and_dump, 2, dist_url="auto", args=(_namespace(_overrides(data, tmp_path / "out_ddp", depth_on)), str(ddp)))
    single = tmp_path / "single"
    single.mkdir()
    train_and_dump(_namespace(_overrides(data, tmp_path / "out_single", depth_on)), str(single))

    rank0 = torch.load(ddp / "rank0.pt", weights_only=True)
    rank1 = torch.load(ddp / "rank1.pt", weights_only=True)
    one = torch.load(single / "rank0.pt", weights_only=True)

    # each rank saw a different image every step, so equal weights mean the gradients were all-reduced
    across, where = _max_difference(rank0, rank1)
    assert across == 0.0, f"ranks diverged: max |w0 - w1| = {across:.3g} at {where}"
    ddp_step, single_step = _update(start, rank0), _update(start, one)
    assert single_step.norm() > 1e-3, "training did not change the weights: the comparison would be vacuous"
    relative = float((ddp_step - single_step).norm() / single_step.norm())
    print(f"update norm {float(single_step.norm()):.4g}; DDP vs single process: relative difference {relative:.2e}")
    assert relative < tolerance, f"DDP and single-process updates differ by {relative:.2e} (expected < {tolerance})"
