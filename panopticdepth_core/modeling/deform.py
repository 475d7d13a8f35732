"""Modulated deformable convolution (DCNv2) written with standard operators, for inference and export.

Why not ``torchvision.ops.deform_conv2d`` everywhere: its CPU kernel runs mostly on one core (a 256-channel
stride-4 layer took about 5x a plain convolution of the same shape), and it exports to ONNX only as the opset-19
``DeformConv`` op, which onnxruntime 1.12 (the newest on ROS 2 Humble) does not have. This form computes the
same numbers (the same bilinear rule, corner by corner, as torchvision's kernel, so it agrees to float rounding)
in three steps:

1. sampling positions: for every output pixel and kernel tap, the tap's position plus its (dy, dx) offset;
2. bilinear sampling of the input at those positions, weighted by the tap's mask, channels last
   (``embedding_bag`` in eager mode: one weighted sum of four input rows per position; four ``index_select``
   gathers when traced for ONNX, which become plain ``Gather`` ops);
3. one matrix product of the sampled columns with the conv weight.

Eager mode works through the output in bands of rows so the sampled columns stay small (and in cache).
Training keeps torchvision's kernel (its backward is the tested one); see ``ModulatedDeformConv2d``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

#: ``standard``: this module at inference, torchvision in training; ``torchvision``: torchvision's kernel always
#: (the reference, for comparisons: ``benchmarks/forward.py --deform torchvision``).
IMPLEMENTATIONS = ("standard", "torchvision")
_implementation = "standard"

#: Eager mode samples at most about this many floats at a time (the columns of one band of output rows).
BAND_FLOATS = 4 * 1024 * 1024


def implementation() -> str:
    """The implementation inference uses now (one of ``IMPLEMENTATIONS``)."""
    return _implementation


@contextlib.contextmanager
def deform_implementation(name: str) -> Iterator[None]:
    """Use ``name`` (one of ``IMPLEMENTATIONS``) for the deformable convs inside the ``with`` block."""
    global _implementation
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"deformable conv implementation must be one of {IMPLEMENTATIONS}, got {name!r}")
    previous, _implementation = _implementation, name
    try:
        yield
    finally:
        _implementation = previous


def use_standard_form(x: Tensor) -> bool:
    """Whether inference on ``x`` runs this module's form: when exporting, and on every device but CUDA, where
    torchvision's GPU kernel does not have the CPU kernel's one-core problem and the banded loop here would launch
    thousands of small kernels per layer (not measured on a GPU yet: no GPU was available)."""
    if _implementation != "standard":
        return False
    return _exporting() or x.device.type != "cuda"


def full_precision(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast off (the sampling weights and positions need float32), and no autocast op at all when it is off."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def _exporting() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def modulated_deform_conv2d(x: Tensor, offset: Tensor, mask: Tensor, weight: Tensor, bias: Tensor | None,
                            stride: int = 1, padding: int = 0, dilation: int = 1) -> Tensor:
    """Same contract as ``torchvision.ops.deform_conv2d(x, offset, weight, bias, stride, padding, dilation,
    mask)`` with one offset group and one weight group.

    x (B, C, H, W); offset (B, 2*K, Ho, Wo) with (dy, dx) interleaved per tap, taps row-major over the kernel;
    mask (B, K, Ho, Wo); weight (O, C, kh, kw), K = kh * kw; returns (B, O, Ho, Wo).
    """
    batch, channels, height, width = x.shape
    out_channels, in_channels, kh, kw = weight.shape
    taps = kh * kw
    if in_channels != channels:
        raise ValueError(f"weight expects {in_channels} input channels, got {channels} (weight groups unsupported)")
    if offset.shape[1] != 2 * taps or mask.shape[1] != taps:
        raise ValueError(f"offset/mask must have {2 * taps}/{taps} channels (one offset group), "
                         f"got {offset.shape[1]}/{mask.shape[1]}")
    out_h, out_w = offset.shape[-2:]
    # (B*H*W, C): every input pixel's channels contiguous, so one sample reads one row.
    # (contiguous: with B = 1 a plain reshape would be a strided view, which embedding_bag reads 5x slower)
    rows = x.permute(0, 2, 3, 1).contiguous().view(batch * height * width, channels)
    # (K*C, O) in the (tap, channel) order the columns below have.
    weight_cols = weight.permute(2, 3, 1, 0).reshape(taps * channels, out_channels)
    if _exporting():
        out = _deform_band(rows, offset, mask, weight_cols, bias, (height, width), (kh, kw), stride, padding,
                           dilation, 0, gather=True)
        return out.permute(0, 3, 1, 2)
    band = max(1, BAND_FLOATS // max(1, batch * out_w * taps * channels))
    bands = [
        _deform_band(rows, offset[:, :, r: r + band], mask[:, :, r: r + band], weight_cols, bias,
                     (height, width), (kh, kw), stride, padding, dilation, r, gather=False)
        for r in range(0, out_h, band)
    ]
    out = bands[0] if len(bands) == 1 else torch.cat(bands, dim=1)  # (B, Ho, Wo, O)
    return out.permute(0, 3, 1, 2)


def _deform_band(rows: Tensor, offset: Tensor, mask: Tensor, weight_cols: Tensor, bias: Tensor | None,
                 in_size: tuple[int, int], kernel: tuple[int, int], stride: int, padding: int, dilation: int,
                 first_row: int, gather: bool) -> Tensor:
    """Output rows ``first_row ..`` (as many as ``offset`` has) -> (B, rows, Wo, O), channels last."""
    height, width = in_size
    kh, kw = kernel
    taps = kh * kw
    batch, _, out_h, out_w = offset.shape
    channels = rows.shape[1]
    dev, dtype = offset.device, offset.dtype
    # Tap positions relative to the window's top-left, row-major over the kernel (torchvision's order).
    tap_y = (torch.arange(kh, device=dev, dtype=dtype) * dilation).repeat_interleave(kw)  # (K,)
    tap_x = (torch.arange(kw, device=dev, dtype=dtype) * dilation).repeat(kh)  # (K,)
    base_y = (torch.arange(out_h, device=dev, dtype=dtype) + first_row) * stride - padding  # (Ho,)
    base_x = torch.arange(out_w, device=dev, dtype=dtype) * stride - padding  # (Wo,)
    off = offset.reshape(batch, taps, 2, out_h, out_w)
    # (B, Ho, Wo, K) sampling positions, taps last so the columns come out (position, tap, channel).
    pos_y = (base_y.view(1, 1, -1, 1) + tap_y.view(1, taps, 1, 1) + off[:, :, 0]).permute(0, 2, 3, 1)
    pos_x = (base_x.view(1, 1, 1, -1) + tap_x.view(1, taps, 1, 1) + off[:, :, 1]).permute(0, 2, 3, 1)
    tap_mask = mask.reshape(batch, taps, out_h, out_w).permute(0, 2, 3, 1)
    # torchvision's rule: a position at or beyond one pixel outside the image samples 0; inside, each of the four
    # corners that lies in the image contributes with its bilinear weight, the others 0.
    inside = (pos_y > -1) & (pos_y < height) & (pos_x > -1) & (pos_x < width)
    tap_mask = tap_mask * inside.to(dtype)
    # floor(p) as trunc(p + 1) - 1, exact for p >= -1; positions outside are clamped first (their weight is 0
    # anyway). Why not torch.floor: it was 100x slower than this on the CPU here.
    pos_y, pos_x = pos_y.clamp(-1, height), pos_x.clamp(-1, width)
    y0, x0 = (pos_y + 1).long() - 1, (pos_x + 1).long() - 1
    ly, lx = pos_y - y0.to(dtype), pos_x - x0.to(dtype)
    hy, hx = 1 - ly, 1 - lx
    y1, x1 = y0 + 1, x0 + 1
    image_start = (torch.arange(batch, device=dev) * (height * width)).view(batch, 1, 1, 1)
    corners = ((y0, x0, hy * hx), (y0, x1, hy * lx), (y1, x0, ly * hx), (y1, x1, ly * lx))
    indices, weights = [], []
    for cy, cx, bilinear in corners:
        valid = (cy >= 0) & (cy <= height - 1) & (cx >= 0) & (cx <= width - 1)
        weights.append(bilinear * tap_mask * valid.to(dtype))  # (B, Ho, Wo, K)
        indices.append(cy.clamp(0, height - 1) * width + cx.clamp(0, width - 1) + image_start)
    if gather:
        cols = None
        for index, w in zip(indices, weights):
            sampled = rows.index_select(0, index.reshape(-1)) * w.reshape(-1, 1)  # (B*Ho*Wo*K, C)
            cols = sampled if cols is None else cols + sampled
    else:
        # One weighted sum of four rows per sample: (B*Ho*Wo*K, 4) indices and weights -> (B*Ho*Wo*K, C).
        cols = F.embedding_bag(torch.stack(indices, -1).reshape(-1, 4), rows,
                               per_sample_weights=torch.stack(weights, -1).reshape(-1, 4), mode="sum")
    out = cols.reshape(batch * out_h * out_w, taps * channels) @ weight_cols  # (B*Ho*Wo, O)
    if bias is not None:
        out = out + bias
    return out.reshape(batch, out_h, out_w, -1)
