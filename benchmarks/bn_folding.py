"""Inference-only rewrites of a loaded network that keep its outputs: batch norms folded into the convs before them.

Why: with fixed statistics a batch norm is a per-channel scale and shift, which the conv before it can apply
through its weight and bias for free, saving one pass over every backbone activation. Only for inference copies:
the folded model no longer has the batch norm parameters training and checkpoints expect.
"""

from __future__ import annotations

import torch
from torch import nn

from panopticdepth_core.modeling.layers import FrozenBatchNorm2d

#: (conv attribute, norm attribute) pairs of torchvision's ResNet blocks and stem, and of ConvNormAct.
_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), ("conv", "norm"))


def _scale_shift(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    if isinstance(norm, FrozenBatchNorm2d):
        weight, bias, mean, var, eps = norm.weight, norm.bias, norm.running_mean, norm.running_var, norm.eps
    elif isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.track_running_stats:
        weight = norm.weight if norm.affine else torch.ones_like(norm.running_mean)
        bias = norm.bias if norm.affine else torch.zeros_like(norm.running_mean)
        mean, var, eps = norm.running_mean, norm.running_var, norm.eps
    else:
        return None
    scale = weight * torch.rsqrt(var + eps)
    return scale, bias - mean * scale


@torch.no_grad()
def _fold(conv: nn.Conv2d, norm: nn.Module) -> bool:
    folded = _scale_shift(norm)
    if folded is None:
        return False
    scale, shift = folded
    conv.weight.mul_(scale.view(-1, 1, 1, 1).to(conv.weight.dtype))
    bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
    return True


def fuse_batch_norms(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm2d / FrozenBatchNorm2d that directly follows a plain ``nn.Conv2d`` (ResNet
    stem and blocks, their downsample branches, ConvNormAct) into that conv; returns ``model`` (changed in place).
    Group norms and deformable convs are left alone."""
    for module in model.modules():
        for conv_name, norm_name in _PAIRS:
            conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
            if type(conv) is nn.Conv2d and norm is not None and _fold(conv, norm):
                setattr(module, norm_name, nn.Identity())
        if isinstance(module, nn.Sequential) and len(module) == 2 and type(module[0]) is nn.Conv2d:
            if _fold(module[0], module[1]):  # torchvision's downsample branch: Sequential(conv, norm)
                module[1] = nn.Identity()
    return model
