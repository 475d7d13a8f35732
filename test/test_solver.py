"""Optimiser groups, the warm-up poly schedule, clipping and atomic checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from panopticdepth_core.config import load_config
from panopticdepth_core.engine.checkpointer import Checkpointer, atomic_torch_save
from panopticdepth_core.engine.solver import build_lr_scheduler, build_optimizer, clip_gradients, warmup_poly_factor


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4, 2, bias=False)


def test_no_weight_decay_on_norms_and_bias_decay_from_config() -> None:
    cfg = load_config(None, ["SOLVER.WEIGHT_DECAY", "0.01", "SOLVER.WEIGHT_DECAY_BIAS", "0.001"])
    model = _Tiny()
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.Adam)
    by_decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in opt.param_groups}
    assert by_decay[0.0] == {id(model.norm.weight), id(model.norm.bias)}
    assert by_decay[0.001] == {id(model.conv.bias)}
    assert by_decay[0.01] == {id(model.conv.weight), id(model.fc.weight)}


def test_warmup_then_poly() -> None:
    cfg = load_config(None, ["SOLVER.MAX_ITER", "100", "SOLVER.WARMUP_ITERS", "10", "SOLVER.WARMUP_FACTOR", "0.1",
                             "SOLVER.POLY_LR_POWER", "0.9"])
    assert warmup_poly_factor(0, cfg) == pytest.approx(0.1)
    assert warmup_poly_factor(5, cfg) == pytest.approx((0.1 * 0.5 + 0.5) * (1 - 0.05) ** 0.9)
    assert warmup_poly_factor(50, cfg) == pytest.approx(0.5**0.9)
    assert warmup_poly_factor(100, cfg) == 0.0
    model = _Tiny()
    opt = build_optimizer(model, cfg)
    sched = build_lr_scheduler(opt, cfg)
    for _ in range(50):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(cfg.SOLVER.BASE_LR * 0.5**0.9)


def test_clip_by_value() -> None:
    cfg = load_config(None, ["SOLVER.CLIP_GRADIENTS.CLIP_VALUE", "0.5"])
    model = _Tiny()
    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0)
    clip_gradients(model, cfg)
    assert all(float(p.grad.abs().max()) == 0.5 for p in model.parameters())


def test_checkpointer_keeps_last_k_and_finds_latest(tmp_path: Path) -> None:
    ck = Checkpointer(tmp_path, max_to_keep=2)
    for it in (10, 20, 30):
        ck.save(f"model_{it:07d}", {"iteration": it, "w": torch.ones(2) * it})
    names = sorted(p.name for p in tmp_path.glob("model_*.pth"))
    assert names == ["model_0000020.pth", "model_0000030.pth"]
    assert ck.latest().name == "model_0000030.pth"
    assert Checkpointer.load(ck.latest())["iteration"] == 30
    assert not list(tmp_path.glob(".*tmp*"))


def test_atomic_save_leaves_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "model_0000010.pth"
    atomic_torch_save({"iteration": 10}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_torch_save({"iteration": 20, "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["iteration"] == 10
    assert os.listdir(tmp_path) == [path.name]  # the failed write left no temporary behind
