"""Optimiser, learning-rate schedule and gradient clipping as the released recipe sets them.

Adam with weight decay (none on normalisation layers, WEIGHT_DECAY_BIAS on biases), a poly schedule with linear
warm-up (Detectron2's WarmupPolyLR), and clipping of gradients by value (CLIP_VALUE 35).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from ..config import CfgNode

_NORM_TYPES = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.LayerNorm,
    nn.InstanceNorm2d, nn.LocalResponseNorm,
)


def parameter_groups(model: nn.Module, cfg: CfgNode) -> list[dict]:
    """One group per (weight decay) value: norms get WEIGHT_DECAY_NORM, biases WEIGHT_DECAY_BIAS."""
    decay: dict[float, list[nn.Parameter]] = {}
    seen: set[int] = set()
    for module in model.modules():
        is_norm = isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if is_norm:
                wd = cfg.SOLVER.WEIGHT_DECAY_NORM
            elif name == "bias":
                wd = cfg.SOLVER.WEIGHT_DECAY_BIAS
            else:
                wd = cfg.SOLVER.WEIGHT_DECAY
            decay.setdefault(float(wd), []).append(param)
    return [{"params": params, "weight_decay": wd} for wd, params in decay.items()]


def build_optimizer(model: nn.Module, cfg: CfgNode) -> torch.optim.Optimizer:
    """The configured optimizer, with PyTorch's fused kernels where the parameters' device has them.

    Why fused: the default per-tensor loop on the CPU took ~62 ms of a ~200 ms step of the small synthetic config
    (141 tensors, 11.4M parameters); the fused kernel takes ~9 ms. Same update rule, float rounding aside.
    """
    groups = parameter_groups(model, cfg)
    lr = cfg.SOLVER.BASE_LR
    name = cfg.SOLVER.OPTIMIZER
    if name == "ADAM":
        make = functools.partial(torch.optim.Adam, groups, lr=lr, betas=tuple(cfg.SOLVER.BETAS))
    elif name == "ADAMW":
        make = functools.partial(torch.optim.AdamW, groups, lr=lr, betas=tuple(cfg.SOLVER.BETAS))
    else:
        make = functools.partial(torch.optim.SGD, groups, lr=lr, momentum=cfg.SOLVER.MOMENTUM)
    try:
        return make(fused=True)
    except (RuntimeError, TypeError, ValueError):  # a device or PyTorch build without fused kernels
        return make()


def warmup_poly_factor(iteration: int, cfg: CfgNode) -> float:
    """Multiplier of BASE_LR at ``iteration`` (0-based): linear warm-up, then (1 - it/max)^power."""
    s = cfg.SOLVER
    warmup = 1.0
    if iteration < s.WARMUP_ITERS:
        if s.WARMUP_METHOD == "constant":
            warmup = s.WARMUP_FACTOR
        else:
            alpha = iteration / max(1, s.WARMUP_ITERS)
            warmup = s.WARMUP_FACTOR * (1 - alpha) + alpha
    if s.LR_SCHEDULER_NAME == "WarmupPolyLR":
        if s.POLY_LR_CONSTANT_ENDING > 0 and iteration >= s.MAX_ITER:
            return s.POLY_LR_CONSTANT_ENDING
        return warmup * math.pow(max(0.0, 1.0 - iteration / s.MAX_ITER), s.POLY_LR_POWER)
    if s.LR_SCHEDULER_NAME == "WarmupCosineLR":
        return warmup * 0.5 * (1.0 + math.cos(math.pi * min(iteration, s.MAX_ITER) / s.MAX_ITER))
    return warmup


def build_lr_scheduler(optimizer: torch.optim.Optimizer, cfg: CfgNode) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: warmup_poly_factor(it, cfg))


def clip_gradients(model: nn.Module, cfg: CfgNode) -> None:
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not clip.ENABLED:
        return
    params = [p for p in model.parameters() if p.grad is not None]
    if clip.CLIP_TYPE == "value":
        torch.nn.utils.clip_grad_value_(params, clip.CLIP_VALUE)
    else:
        torch.nn.utils.clip_grad_norm_(params, clip.CLIP_VALUE, norm_type=clip.NORM_TYPE)
