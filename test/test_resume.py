"""Resuming and failure handling of training (issue: training).

- A run killed with SIGKILL after a checkpoint and restarted with ``--resume`` logs the same per-iteration losses
  as an uninterrupted run with the same seeds (model, optimiser, schedule, RNG and data position all restored).
- A non-finite loss skips the step and is logged; too many in a row stop the run with a message that names
  SOLVER.MAX_NONFINITE, and the last good checkpoint stays on disk, loadable.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config/synthetic/PanopticDepth-R18-synthetic-tiny.yaml"
MAX_ITER = 12


def _command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "training/train.py"), "--config-file", str(CONFIG), *extra,
            "SOLVER.MAX_ITER", str(MAX_ITER), "SOLVER.CHECKPOINT_PERIOD", "4", "TEST.LOG_PERIOD", "1", "SEED", "5",
            "DATALOADER.NUM_WORKERS", "1", "OUTPUT_DIR", str(out)]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _losses(out: Path) -> dict[int, float]:
    """iteration -> total loss from metrics.json; a later line for the same iteration (the resumed run) wins."""
    losses: dict[int, float] = {}
    for line in (out / "metrics.json").read_text().splitlines():
        record = json.loads(line)
        if "total_loss" in record:
            losses[record["iteration"]] = record["total_loss"]
    return losses


def test_sigkill_then_resume_reproduces_the_uninterrupted_losses(tmp_path: Path) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_command(straight), env=_env(), check=True, capture_output=True, timeout=300)
    reference = _losses(straight)
    assert sorted(reference) == list(range(1, MAX_ITER + 1))

    proc = subprocess.Popen(_command(killed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (killed / "model_0000004.pth").exists():
        assert proc.poll() is None, "the run ended before writing its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "model_final.pth").exists(), "the run finished before it could be killed"
    resumed_from = max(int(p.stem.split("_")[1]) for p in killed.glob("model_0*.pth"))

    done = subprocess.run(_command(killed, "--resume"), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"at iteration {resumed_from}" in done.stderr, done.stderr[-2000:]
    after = _losses(killed)
    compared = list(range(resumed_from + 1, MAX_ITER + 1))
    assert compared, "nothing left to compare after the checkpoint"
    for iteration in compared:
        assert after[iteration] == pytest.approx(reference[iteration], rel=1e-5, abs=1e-6), (
            f"iteration {iteration}: resumed {after[iteration]} vs uninterrupted {reference[iteration]}")
    # the losses must depend on the iteration, or equal values would prove nothing
    assert len({round(reference[i], 6) for i in compared}) > 1


def _trainer(out: Path, *extra: str):
    from panopticdepth_core.config import load_config
    from panopticdepth_core.engine.trainer import Trainer

    torch.manual_seed(0)
    cfg = load_config(CONFIG, ["SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "2", "SEED", "1",
                               "OUTPUT_DIR", str(out), *extra])
    return Trainer(cfg)


def _poison(trainer, bad_calls: set[int] | None, from_call: int | None = None) -> dict[str, int]:
    """Make the model's losses NaN on the given forward calls (1-based), or on every call from ``from_call``."""
    original = trainer.model.forward
    calls = {"forward": 0, "step": 0}

    def forward(*args, **kwargs):
        calls["forward"] += 1
        losses = original(*args, **kwargs)
        n = calls["forward"]
        if (bad_calls and n in bad_calls) or (from_call is not None and n >= from_call):
            losses = {k: v * float("nan") for k, v in losses.items()}
        return losses

    def count_step(*_args) -> None:
        calls["step"] += 1

    trainer.model.forward = forward
    trainer.optimizer.register_step_post_hook(count_step)
    return calls


def test_a_non_finite_loss_skips_the_step_and_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    torch.set_num_threads(1)
    trainer = _trainer(tmp_path)
    calls = _poison(trainer, bad_calls={3})
    with caplog.at_level(logging.WARNING, logger="panopticdepth.train"):
        trainer.train()
    assert calls == {"forward": 6, "step": 5}, calls
    assert any("non-finite loss, step skipped" in r.getMessage() for r in caplog.records)
    records = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    logged = {r["iteration"]: r for r in records if "total_loss" in r}
    assert 3 not in logged and logged[6]["nonfinite_total"] == 1
    weights = (tmp_path / "model_final.safetensors")
    from panopticdepth_core.checkpoint.io import read_checkpoint

    state, _ = read_checkpoint(weights)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_repeated_non_finite_losses_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path: Path) -> None:
    from panopticdepth_core.engine.checkpointer import Checkpointer
    from panopticdepth_core.engine.trainer import NonFiniteLossError

    torch.set_num_threads(1)
    trainer = _trainer(tmp_path, "SOLVER.MAX_NONFINITE", "1")
    _poison(trainer, bad_calls=None, from_call=3)  # 1-2 fine (checkpoint at 2); NaN at 3 and 4: stop
    with pytest.raises(NonFiniteLossError, match="SOLVER.MAX_NONFINITE"):
        trainer.train()
    assert not (tmp_path / "model_final.pth").exists()
    latest = Checkpointer(tmp_path).latest()
    assert latest is not None and latest.name == "model_0000002.pth"
    state = Checkpointer.load(latest)
    assert state["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
