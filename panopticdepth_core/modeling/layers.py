"""Small building blocks shared by the backbone and the heads.

A norm factory with the released configs' names (``BN``, ``SyncBN``, ``FrozenBN``, ``GN``, ``""``), a frozen
batch norm that loads ordinary BN state dicts, a conv + norm + ReLU block, a modulated deformable 3x3 conv
(DCNv2) that predicts its own offsets and mask, and the CoordConv helper. Channel orders and parameter layouts
follow the released PanopticDepth code so that converted checkpoints behave the same.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

from . import deform

NORM_CHOICES = ("", "BN", "SyncBN", "FrozenBN", "GN")
GN_GROUPS = 32


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters (all buffers, nothing trains).

    Used for backbones fine-tuned with small batches, as Detectron2 does. Loads state dicts of ordinary
    ``BatchNorm2d`` (their ``num_batches_tracked`` is dropped).
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Return ``module`` with every (Sync)BatchNorm2d inside replaced by a frozen copy of itself."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            frozen = cls(module.num_features, module.eps)
            if module.affine:
                frozen.weight.copy_(module.weight.detach())
                frozen.bias.copy_(module.bias.detach())
            if module.track_running_stats:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
            return frozen.to(module.running_mean.device if module.running_mean is not None else "cpu")
        for name, child in module.named_children():
            new_child = cls.convert(child)
            if new_child is not child:
                module.add_module(name, new_child)
        return module


def get_norm(norm: str, channels: int, key: str = "norm") -> nn.Module | None:
    """A normalisation layer by its config name, or None for ``""``; ``key`` names the config key in errors."""
    if norm == "":
        return None
    if norm == "BN":
        return nn.BatchNorm2d(channels)
    if norm == "SyncBN":
        return nn.SyncBatchNorm(channels)
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if norm == "GN":
        if channels % GN_GROUPS:
            raise ValueError(f"{key} = GN needs a channel count divisible by {GN_GROUPS}, got {channels}")
        # Detectron2 uses 32 groups; with fewer than 64 channels that leaves one channel per group, which cannot
        # be normalised on the 1x1 P7 map of a small image. Halve the groups there (same parameters per channel,
        # so checkpoints are unaffected; the released 256-channel heads keep 32 groups).
        groups = GN_GROUPS if channels >= 2 * GN_GROUPS else max(1, channels // 2)
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"{key} must be one of {NORM_CHOICES}, got {norm!r}")


class ModulatedDeformConv2d(nn.Module):
    """Modulated deformable conv (DCNv2) whose offsets and mask come from a plain conv on the same input.

    ``offset_mask`` predicts ``3 * k * k`` channels: the first ``2 * k * k`` are the (dy, dx) offsets
    interleaved per kernel tap, the last ``k * k`` the mask logits (this is the released code's layout, and
    torchvision's ``deform_conv2d`` expects the same offset order).

    Training runs torchvision's kernel; inference (``eval()``) on the CPU and ONNX export the standard-operator
    form of ``deform.py``, which gives the same outputs (to float rounding) several times faster on the CPU and
    exports with ordinary ONNX ops. CUDA inference keeps torchvision's GPU kernel (see ``use_standard_form``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, dilation: int = 1, bias: bool = True) -> None:
        super().__init__()
        padding = dilation * (kernel_size // 2) if padding is None else padding
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation
        taps = kernel_size * kernel_size
        # Default PyTorch init for the offset branch, as the released ModulatedDeformConvWithOff leaves it.
        self.offset_mask = nn.Conv2d(in_channels, 3 * taps, kernel_size, stride=stride, padding=padding,
                                     dilation=dilation)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        taps = self.kernel_size * self.kernel_size
        offset_mask = self.offset_mask(x)  # (B, 3*k*k, h, w)
        # NaN offsets crash torchvision's CPU kernel (out-of-bounds reads); a diverged model must not kill the process.
        offset = torch.nan_to_num(offset_mask[:, : 2 * taps])
        mask = offset_mask[:, 2 * taps:].sigmoid()
        # torchvision has no reduced-precision CPU kernel (and casts to float32 under CUDA autocast anyway):
        # run the deformable conv in float32 and hand back the input's dtype.
        if not self.training and deform.use_standard_form(x):
            with deform.full_precision(x.device.type):
                out = deform.modulated_deform_conv2d(
                    x.float(), offset.float(), mask.float(), self.weight.float(),
                    self.bias.float() if self.bias is not None else None, self.stride, self.padding, self.dilation)
            return out.to(x.dtype)
        out = deform_conv2d(x.float(), offset.float(), self.weight.float(),
                            self.bias.float() if self.bias is not None else None, stride=self.stride,
                            padding=self.padding, dilation=self.dilation, mask=mask.float())
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}")


class ConvNormAct(nn.Module):
    """Conv (plain or modulated-deformable), optional norm, optional ReLU: the unit every head is made of."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 norm: str = "", activation: bool = True, deform: bool = False, bias: bool | None = None,
                 norm_key: str = "norm") -> None:
        super().__init__()
        bias = (norm == "") if bias is None else bias
        padding = kernel_size // 2
        if deform:
            self.conv: nn.Module = ModulatedDeformConv2d(in_channels, out_channels, kernel_size, stride=stride,
                                                         padding=padding, bias=bias)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.norm = get_norm(norm, out_channels, key=norm_key) or nn.Identity()
        self.act = nn.ReLU(inplace=True) if activation else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


def make_tower(in_channels: int, channels: int, num_convs: int, deform: bool, norm: str,
               norm_key: str = "norm") -> nn.Sequential:
    """``num_convs`` 3x3 conv + norm + ReLU blocks (the released ``SingleHead`` without its CoordConv)."""
    return nn.Sequential(*[
        ConvNormAct(in_channels if k == 0 else channels, channels, 3, norm=norm, deform=deform, norm_key=norm_key)
        for k in range(num_convs)
    ])


def append_coords(feat: Tensor) -> Tensor:
    """CoordConv input: ``feat`` with two channels appended, the row then the column coordinate in [-1, 1].

    The order matters for converted weights: the released ``SingleHead.coord_conv`` appends the coordinate
    that varies along H first (its ``grid_x``), then the one that varies along W.
    """
    batch, _, height, width = feat.shape
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        rows, cols = _traceable_linspace(feat, 2), _traceable_linspace(feat, 3)
    else:
        rows = torch.linspace(-1.0, 1.0, height, device=feat.device, dtype=feat.dtype)
        cols = torch.linspace(-1.0, 1.0, width, device=feat.device, dtype=feat.dtype)
    grid_rows, grid_cols = torch.meshgrid(rows, cols, indexing="ij")  # (H, W) each
    coords = torch.stack([grid_rows, grid_cols]).unsqueeze(0).expand(batch, -1, -1, -1)  # (B, 2, H, W)
    return torch.cat([feat, coords], dim=1)


def _traceable_linspace(feat: Tensor, dim: int) -> Tensor:
    """``linspace(-1, 1, feat.shape[dim])`` from tensor ops only, so an ONNX export keeps the size dynamic (and
    float32: the exporter's linspace gives doubles). Equal to linspace up to float rounding (~1e-7)."""
    plane = feat.select(0, 0).select(0, 0)  # (H, W)
    index = torch.ones_like(plane.select(1 if dim == 2 else 0, 0)).cumsum(0) - 1  # (size along dim,) 0, 1, ..
    return index / index[-1:].clamp(min=1) * 2 - 1


def c2_msra_fill(module: nn.Module) -> None:
    """He-normal (fan_out, ReLU) weights and zero bias: Detectron2's init for backbone-like convs."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2's "Xavier" (uniform, a=1) weights and zero bias: Detectron2's init for FPN convs."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


def normal_fill(module: nn.Module, std: float = 0.01, bias: float = 0.0) -> None:
    """Small-normal weights and a constant bias: the released init of the heads' output convs."""
    nn.init.normal_(module.weight, mean=0.0, std=std)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, bias)
