"""A seeded random R-50 PanopticDepth whose activations look like a trained network's, for benchmarks.

Why: with random weights and the frozen batch norms' identity statistics, ResNet activations grow to ~1e4; the
deformable convs' offsets then reach thousands of pixels (every tap outside the image) and the outputs are zeros
and rounding noise, which says nothing about speed or agreement on real models. ``calibrated_model`` sets every
batch norm's statistics from one image (each layer sees its already normalised input), so features have unit
scale, offsets a few pixels, and post-processing finds segments. No trained R-50 is shipped or downloaded.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def calibrate_batch_norms(model: nn.Module, batch: torch.Tensor) -> None:
    """Set each FrozenBatchNorm2d / eval BatchNorm2d's running mean and variance to its input's statistics on
    ``batch`` (B, 3, H, W), in forward order."""
    from panopticdepth_core.modeling.layers import FrozenBatchNorm2d

    def hook(module, inputs):
        x = inputs[0]
        module.running_mean.copy_(x.mean((0, 2, 3)))
        module.running_var.copy_(x.var((0, 2, 3), unbiased=False))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()
               if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d))]
    try:
        model.backbone(batch)
    finally:
        for handle in handles:
            handle.remove()


def calibrated_model(config: str, seed: int = 0, size: tuple[int, int] = (256, 512), logit_gain: float = 30.0,
                     thing_bias: float = 0.0):
    """(cfg, model in eval mode): ``config`` built with seed ``seed``, batch norms calibrated on a random image.

    The position head's output convs (initialised at std 0.01 around the -2.19 focal prior, so nothing would pass
    the 0.5 score threshold) get weights ``logit_gain`` times larger and thing bias ``thing_bias``: logits that
    vary across the image, so post-processing meets a realistic number of things and stuff regions."""
    from panopticdepth_core.config import load_config
    from panopticdepth_core.modeling.build import build_model

    cfg = load_config(config, [])
    torch.manual_seed(seed)
    model = build_model(cfg, load_pretrained=False).eval()
    generator = torch.Generator().manual_seed(seed)
    image = (torch.rand(3, *size, generator=generator) * 255).to(torch.uint8)
    batch, _, _ = model.preprocess([image])
    calibrate_batch_norms(model, batch)
    with torch.no_grad():
        head = model.position_head
        head.out_inst.weight.mul_(logit_gain)
        head.out_sem.weight.mul_(logit_gain)
        head.out_inst.bias.fill_(thing_bias)
        head.out_sem.bias.zero_()
    return cfg, model
