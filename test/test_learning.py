"""Learning test (issue: training; slow, run with `pytest -m slow`): the network learns the task from scratch.

train.py trains config/synthetic/PanopticDepth-R18-synthetic-ci.yaml on freshly rendered synthetic street scenes
(the "basic" profile: road, sidewalk, building, vegetation, sky and cars) on the CPU, then the
run's final evaluation scores held-out scenes (DATASETS.SYNTHETIC.VAL_SEED: scene seeds never used in training)
through the Predictor and the DPS evaluator, like a user's run. The issue's bar: DPQ >= 30 % and AbsRel <= 0.25
within 8 minutes on 2 CPU cores (measured: ~7 minutes); the time is printed, not asserted (a benchmark's job),
the scores are asserted against raised floors. Measured values: the constants' comments and docs/training.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config/synthetic/PanopticDepth-R18-synthetic-ci.yaml"
# The bar is DPQ >= 30 (%, as the evaluator reports PQ-type metrics) and AbsRel <= 0.25; raised here.
# Measured with this config (2700 steps, 100 held-out scenes): 2 threads 425 s, PQ 67.3, DPQ 51.9, AbsRel 0.176;
# 1 thread (other float order) PQ 67.7, DPQ 53.0, AbsRel 0.172; SEED 1: PQ 69.4, DPQ 54.5, AbsRel 0.171.
# Since the stuff depth kernels are also trained the way inference builds them (docs/training.md), 1 thread:
# PQ 64.5, DPQ 49.7, AbsRel 0.185 (the extra loss term shares the step with the others in this short run).
# The floors keep ~2.5x the spread above below the worst run; an untrained network scores DPQ ~0, AbsRel ~1.
MIN_DPQ = 43.0
MAX_ABS_REL = 0.21


@pytest.mark.slow
def test_learns_panoptic_depth_from_scratch_on_cpu(tmp_path: Path) -> None:
    # every core for torch's intra-op threads: the data worker renders a 128x256 scene in ~30 ms and needs about a
    # third of a core (on 2 cores: 12 images/s with 2 threads, 10.5 with 1 thread and a core left to the worker)
    threads = max(1, min(4, os.cpu_count() or 2))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    command = [sys.executable, str(REPO / "training/train.py"), "--config-file", str(CONFIG),
               "OUTPUT_DIR", str(tmp_path)]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]

    records = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    final = [r for r in records if "synthetic_val/dpq/all" in r][-1]
    dpq, pq, abs_rel = final["synthetic_val/dpq/all"], final["synthetic_val/pq/all"], final["synthetic_val/depth/abs_rel"]
    losses = [r["total_loss"] for r in records if "total_loss" in r]
    print(f"learning test: {final['iteration']} iterations in {elapsed:.0f} s ({threads} threads); loss "
          f"{losses[0]:.2f} -> {losses[-1]:.2f}; held-out PQ {pq:.1f}, DPQ {dpq:.1f}, AbsRel {abs_rel:.3f}")
    assert dpq >= MIN_DPQ, f"DPQ {dpq:.1f} < {MIN_DPQ}"
    assert abs_rel <= MAX_ABS_REL, f"AbsRel {abs_rel:.3f} > {MAX_ABS_REL}"
