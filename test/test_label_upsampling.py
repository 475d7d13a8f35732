"""Labels and depth at another resolution than the network input's equal the brute-force full-size evaluation.

The shortcut in ``label_upsampling`` copies a key wherever the four source pixels agree and evaluates the rule
only on borders. The reference here resamples every map to the output size with ``F.interpolate`` and applies
the rule at every pixel, for both post-processing rules, up- and downsampling and odd sizes.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from panopticdepth_core.modeling.label_upsampling import axis_taps, upsample_segment_depth, upsample_segment_maps

INPUT = (24, 32)
SIZES = [(24, 32), (100, 130), (17, 23), (48, 64), (31, 47), (240, 320)]


def smooth_maps(count: int, seed: int) -> torch.Tensor:
    """(count, *INPUT) random score maps with segment-like regions (coarse noise resampled up)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(count, 1, 5, 7, generator=generator) * 3
    return torch.sigmoid(F.interpolate(coarse, size=INPUT, mode="bilinear", align_corners=False)[:, 0])


def argmax_rule(values: torch.Tensor) -> torch.Tensor:
    return values.argmax(0)


def paste_rule(things: int, threshold: float = 0.5):
    def decide(values: torch.Tensor) -> torch.Tensor:
        key = things + values[things:].argmax(0)
        for thing in range(things - 1, -1, -1):
            key = torch.where(values[thing] > threshold, thing, key)
        return key
    return decide


def brute_force(decide, maps: torch.Tensor, size) -> torch.Tensor:
    full = F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]
    return decide(full.reshape(full.shape[0], -1)).reshape(size)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("rule", ["argmax", "paste"])
def test_keys_equal_the_rule_on_full_size_maps(size, rule) -> None:
    disagreements = 0
    for seed in range(4):
        maps = smooth_maps(7, seed)
        decide = argmax_rule if rule == "argmax" else paste_rule(3)
        keys = decide(maps.reshape(7, -1)).reshape(INPUT)
        fast, border, _ = upsample_segment_maps(keys, decide, maps, size)
        reference = brute_force(decide, maps, size)
        disagreements += int((fast != reference).sum())
        if size != INPUT:
            assert 0 < border.rows.numel() < size[0] * size[1]  # the shortcut is taken, and borders exist
    assert disagreements == 0


def test_the_shortcut_is_needed_a_copied_nearest_key_is_wrong_on_borders() -> None:
    maps = smooth_maps(7, 0)
    keys = maps.reshape(7, -1).argmax(0).reshape(INPUT)
    nearest = F.interpolate(keys[None, None].float(), size=(100, 130), mode="nearest")[0, 0].long()
    assert (nearest != brute_force(argmax_rule, maps, (100, 130))).sum() > 50  # what the border pass fixes


@pytest.mark.parametrize("size", [(100, 130), (17, 23), (31, 47)])
def test_depth_is_each_pixels_own_segment_depth_resampled(size) -> None:
    maps = smooth_maps(5, 3)
    depths = 5.0 + 40.0 * smooth_maps(5, 4)  # (5, h, w) each segment's depth over the whole image
    keys = maps.reshape(5, -1).argmax(0).reshape(INPUT)
    owners_in = keys.clone()
    owners_in[keys == 4] = -1  # segment 4 is void: depth 0
    table = torch.tensor([0, 1, 2, 3, -1])
    out_keys, border, _ = upsample_segment_maps(keys, argmax_rule, maps, size)
    owners = table[out_keys]
    depth_in = torch.where(owners_in >= 0, depths.gather(0, owners_in.clamp(min=0)[None])[0], 0.0)
    flat = depths.reshape(5, -1)
    fast = upsample_segment_depth(depth_in, owners[border.rows, border.cols], border,
                                  lambda owner, source: flat[owner, source], size)
    full = F.interpolate(depths[None], size=size, mode="bilinear", align_corners=False)[0]
    reference = torch.where(owners >= 0, full.gather(0, owners.clamp(min=0)[None])[0], 0.0)
    assert torch.allclose(fast, reference, atol=1e-4)
    assert (fast[owners < 0] == 0).all()


@pytest.mark.parametrize("out_len,in_len", [(100, 24), (17, 24), (24, 24), (1, 5), (7, 1)])
def test_axis_taps_reproduce_interpolate(out_len, in_len) -> None:
    signal = torch.randn(in_len, generator=torch.Generator().manual_seed(out_len))
    taps = axis_taps(out_len, in_len)
    ours = signal[taps.first] * (1 - taps.weight) + signal[taps.second] * taps.weight
    reference = F.interpolate(signal[None, None, :, None], size=(out_len, 1), mode="bilinear", align_corners=False)
    assert torch.allclose(ours, reference[0, 0, :, 0], atol=1e-6)


@pytest.mark.parametrize("size", SIZES)
def test_opencv_and_torch_block_copies_agree(size, monkeypatch) -> None:
    import panopticdepth_core.modeling.label_upsampling as module

    maps = smooth_maps(7, 5)
    keys = maps.reshape(7, -1).argmax(0).reshape(INPUT)
    table = torch.arange(7) * 1000 + 3
    fast, _, _ = upsample_segment_maps(keys, argmax_rule, maps, size, table=table)
    monkeypatch.setattr(module, "CV2_NEAREST", False)
    gathered, _, _ = upsample_segment_maps(keys, argmax_rule, maps, size, table=table)
    assert fast.dtype == gathered.dtype == torch.int64
    assert torch.equal(fast, gathered)
    assert torch.equal(fast, table[brute_force(argmax_rule, maps, size)])
