"""The standard-operator deformable conv (modeling/deform.py) equals torchvision's ``deform_conv2d``.

Checked within 1e-5 on random offsets (many pointing outside the image) and masks, for every deformable layer
shape the released R-50 configs build, for strides / paddings / dilations beyond those, for positions exactly on
the pixel grid and on the image border, in both forms (eager ``embedding_bag`` and the traced ``index_select``
one that ONNX export uses), and inside a model: an eval-mode network gives the same head outputs with either.
"""

from __future__ import annotations

import pytest
import torch
from tiny_model import random_model, tiny_cfg
from torchvision.ops import deform_conv2d

from panopticdepth_core.config import load_config
from panopticdepth_core.modeling import deform
from panopticdepth_core.modeling.build import build_model
from panopticdepth_core.modeling.layers import ModulatedDeformConv2d

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 1e-5


def _case(batch, in_ch, out_ch, height, width, kernel=3, stride=1, padding=1, dilation=1, spread=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    out_h = (height + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    out_w = (width + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    x = torch.randn(batch, in_ch, height, width, generator=g)
    # spread 3 px with 6-pixel maps: many taps land beyond the border, some far outside
    offset = torch.randn(batch, 2 * kernel * kernel, out_h, out_w, generator=g) * spread
    mask = torch.rand(batch, kernel * kernel, out_h, out_w, generator=g)
    weight = torch.randn(out_ch, in_ch, kernel, kernel, generator=g) / (in_ch * kernel * kernel) ** 0.5
    bias = torch.randn(out_ch, generator=g)
    return x, offset, mask, weight, bias, dict(stride=stride, padding=padding, dilation=dilation)


def _check(x, offset, mask, weight, bias, conv, traced=False, monkeypatch=None):
    expected = deform_conv2d(x, offset, weight, bias, mask=mask, **conv)
    if traced:
        monkeypatch.setattr(deform, "_exporting", lambda: True)
    got = deform.modulated_deform_conv2d(x, offset, mask, weight, bias, **conv)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=TOL)


def _r50_deform_shapes() -> set[tuple[int, int, int, int, int, int]]:
    """(in, out, kernel, stride, padding, dilation) of every deformable layer in the R-50 Cityscapes-DPS model."""
    cfg = load_config("config/cityscapes_dps/PanopticDepth-R50-cityscapes-dps.yaml", [])
    model = build_model(cfg, load_pretrained=False)
    return {(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation)
            for m in model.modules() if isinstance(m, ModulatedDeformConv2d)}


def test_every_r50_deformable_shape_matches_torchvision():
    shapes = _r50_deform_shapes()
    # the position, feature-encoder, depth-encoder and depth-kernel towers: 256 -> 256 and 258 (CoordConv) -> 256
    assert {s[0] for s in shapes} == {256, 258} and len(shapes) >= 2
    for i, (in_ch, out_ch, k, stride, pad, dil) in enumerate(sorted(shapes)):
        # map sizes like a small level (odd, non-square) and the stride-4 map of a small image
        for height, width in ((5, 7), (12, 20)):
            _check(*_case(1, in_ch, out_ch, height, width, k, stride, pad, dil, seed=i))


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "export-form"])
@pytest.mark.parametrize("conv", [
    dict(kernel=3, stride=1, padding=1, dilation=1),
    dict(kernel=3, stride=2, padding=1, dilation=1),
    dict(kernel=3, stride=1, padding=2, dilation=2),
    dict(kernel=1, stride=1, padding=0, dilation=1),
    dict(kernel=5, stride=1, padding=0, dilation=1),
])
def test_matches_torchvision_other_geometries(conv, traced, monkeypatch):
    conv = dict(conv)  # parametrize shares the dict between the eager and export-form runs
    kernel = conv.pop("kernel")
    for seed, (height, width, spread) in enumerate(((6, 6, 3.0), (9, 14, 10.0), (1, 5, 2.0))):
        if height + 2 * conv["padding"] < conv["dilation"] * (kernel - 1) + 1:
            continue
        _check(*_case(2, 5, 7, height, width, kernel, spread=spread, seed=seed, **conv), traced=traced,
               monkeypatch=monkeypatch)


def test_grid_and_border_positions(monkeypatch):
    """Integer offsets (exact pixels), half pixels, and positions exactly at -1 and at H / W (sample 0)."""
    x, offset, mask, weight, bias, conv = _case(1, 4, 3, 6, 8)
    for values in (torch.tensor([-1.0, 0.0, 1.0, 2.0]), torch.tensor([-0.5, 0.5, -7.0, 6.0])):
        pick = torch.randint(0, len(values), offset.shape, generator=torch.Generator().manual_seed(1))
        _check(x, values[pick], mask, weight, bias, conv)
    # every tap pushed to exactly one pixel beyond each border
    for dy, dx in ((-1 - 1.0, 0.0), (8.0, 0.0), (0.0, -2.0), (0.0, 8.0)):
        shifted = torch.zeros_like(offset)
        shifted[:, 0::2], shifted[:, 1::2] = dy, dx
        _check(x, shifted, mask, weight, bias, conv)


def test_bands_give_the_same_result(monkeypatch):
    """Eager mode splits the output into bands of rows; a one-row band must not change anything."""
    case = _case(2, 6, 4, 11, 9, spread=4.0)
    whole = deform.modulated_deform_conv2d(*case[:5], **case[5])
    monkeypatch.setattr(deform, "BAND_FLOATS", 1)
    torch.testing.assert_close(deform.modulated_deform_conv2d(*case[:5], **case[5]), whole, rtol=0, atol=1e-6)


def test_rejects_offset_groups():
    x, offset, mask, weight, bias, conv = _case(1, 4, 3, 6, 8)
    with pytest.raises(ValueError, match="offset group"):
        deform.modulated_deform_conv2d(x, torch.cat([offset, offset], 1), mask, weight, bias, **conv)
    with pytest.raises(ValueError, match="implementation must be one of"):
        with deform.deform_implementation("cuda-magic"):
            pass


def test_eval_model_heads_equal_with_either_implementation():
    model = random_model(tiny_cfg()).eval()  # the tiny model keeps deformable position/encoder/depth heads
    assert any(isinstance(m, ModulatedDeformConv2d) for m in model.modules())
    image = (torch.rand(3, 64, 96, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    with torch.inference_mode():
        with deform.deform_implementation("torchvision"):
            expected, _, _ = model.predict_heads([image])
        got, _, _ = model.predict_heads([image])
    for name in ("mask_embedding", "depth_embedding"):
        torch.testing.assert_close(getattr(got, name), getattr(expected, name), rtol=1e-4, atol=1e-4)
    for a, b in zip(got.center_logits + got.region_logits, expected.center_logits + expected.region_logits):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
