"""Training targets on a hand-made scene whose expected values are worked out by hand in the comments."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from panopticdepth_core.config import get_default_config
from panopticdepth_core.modeling.targets import build_targets, downsample_one_hot, gaussian_radius
from panopticdepth_core.modeling.types import InstanceTarget

# 64x128 image; levels P3..P7 (strides 8..128) and the stride-4 embedding of a 64x128 padded batch
LEVELS = [(8, 16), (4, 8), (2, 4), (1, 2), (1, 1)]
EMBED = (16, 32)
ROAD, SKY, PERSON, CAR = 0, 10, 11, 13  # Cityscapes train ids; things are 11..18 -> thing index = id - 11


def _scene() -> InstanceTarget:
    """Sky over road, a small car (id 5) and a big person (id 7), a void corner; depth with holes.

    Every boundary lies on a multiple of 8, so the stride-4 masks are exact 0/1 blocks.
    """
    semantic = torch.full((64, 128), ROAD, dtype=torch.int64)
    semantic[:32] = SKY
    semantic[:8, 120:] = 255  # void corner
    instance = torch.zeros((64, 128), dtype=torch.int64)
    # car: rows 32..47, cols 16..39 -> box 24 x 16, sqrt(area) = 19.6 -> level 0 only (1..64)
    semantic[32:48, 16:40] = CAR
    instance[32:48, 16:40] = 5
    # person: rows 8..55, cols 64..111 -> box 48 x 48, sqrt(area) = 48 -> levels 0 (1..64) and 1 (32..128)
    semantic[8:56, 64:112] = PERSON
    instance[8:56, 64:112] = 7
    depth = torch.full((64, 128), 30.0)
    depth[32:48, 16:24] = 0.0  # car: left third invalid
    depth[32:48, 24:32] = 10.0
    depth[32:48, 32:40] = 40.0
    depth[8:56, 64:112] = 5.0
    depth[:8, 120:] = 0.0
    return InstanceTarget(semantic=semantic, instance=instance, depth=depth)


def _cfg(**model):
    cfg = get_default_config()
    for key, value in model.items():
        setattr(cfg.MODEL, key, value)
    return cfg


def test_things_land_on_the_right_levels_with_masks_classes_and_slots() -> None:
    cfg = _cfg(TENSOR_DIM=6)
    out = build_targets([_scene()], (64, 128), LEVELS, EMBED, cfg)
    lv0, lv1 = out.levels[0], out.levels[1]
    # level 0 holds both things, ordered by instance id: car (thing 2), person (thing 0)
    assert lv0.thing_valid[0].tolist() == [True, True, False, False, False, False]
    assert lv0.thing_classes[0, :2].tolist() == [CAR - 11, PERSON - 11]
    # level 1 holds only the person; levels 2..4 nothing
    assert lv1.thing_valid[0].tolist() == [True] + [False] * 5
    assert lv1.thing_classes[0, 0].item() == PERSON - 11
    for level in out.levels[2:]:
        assert not level.thing_valid.any()
        assert level.center_heatmap.abs().sum() == 0
        assert (level.thing_masks == 255).all()  # every slot is padding
    # the car's stride-4 mask: rows 8..11, cols 4..9, exactly 1
    expected = torch.zeros(EMBED)
    expected[8:12, 4:10] = 1.0
    assert torch.equal(lv0.thing_masks[0, 0], expected)
    # the person's: rows 2..13, cols 16..27, on both of its levels
    expected = torch.zeros(EMBED)
    expected[2:14, 16:28] = 1.0
    assert torch.equal(lv0.thing_masks[0, 1], expected) and torch.equal(lv1.thing_masks[0, 0], expected)
    assert (lv0.thing_masks[0, 2:] == 255).all()  # padding slots carry the ignore value
    assert lv0.thing_masks.shape == (1, 6, *EMBED)


def test_centre_heatmaps_peak_at_the_mass_centre_cell() -> None:
    out = build_targets([_scene()], (64, 128), LEVELS, EMBED, _cfg())
    heat0, heat1 = out.levels[0].center_heatmap[0], out.levels[1].center_heatmap[0]
    # car: stride-4 mass centre (x, y) = (6.5, 9.5) -> level 0 (x0.5) = (3.25, 4.75) -> cell x=3, y=4.
    # box on level 0 = (3, 2) -> CornerNet radius 0.66 -> 0: a single 1.
    assert heat0[CAR - 11, 4, 3] == 1.0
    assert torch.count_nonzero(heat0[CAR - 11]) == 1
    # person: mass centre (21.5, 7.5) -> level 0 cell (10, 3); box on level 0 = (6, 6) -> radius 1, sigma 3/3 = 1
    assert heat0[PERSON - 11, 3, 10] == 1.0
    assert heat0[PERSON - 11, 3, 11].item() == pytest.approx(math.exp(-0.5), rel=1e-5)
    assert heat0[PERSON - 11, 4, 11].item() == pytest.approx(math.exp(-1.0), rel=1e-5)
    assert heat0[PERSON - 11, 3, 12] == 0.0  # outside the 3x3 window
    assert torch.count_nonzero(heat0[PERSON - 11]) == 9
    # level 1 (x0.25): (5.375, 1.875) -> cell (5, 1); box (3, 3) -> radius 0
    assert heat1[PERSON - 11, 1, 5] == 1.0 and torch.count_nonzero(heat1) == 1
    # no other class channel is touched
    others = [c for c in range(8) if c not in (CAR - 11, PERSON - 11)]
    assert heat0[others].abs().sum() == 0


def test_gaussian_radius_matches_hand_values() -> None:
    # (3, 2) and (6, 6) boxes at min_overlap 0.7: the third CornerNet case is the smallest
    radius = gaussian_radius(torch.tensor([[3.0, 2.0], [6.0, 6.0]]), 0.7)
    # a = 4 * 0.7 = 2.8, b = -2 * 0.7 * (3 + 2) = -7, c = (0.7 - 1) * 3 * 2 = -1.8
    r3_a = (-7 + math.sqrt(49 - 4 * 2.8 * -1.8)) / 2  # 0.658
    assert radius[0].item() == pytest.approx(r3_a, rel=1e-5)
    assert int(radius[1]) == 1


def test_stuff_classes_masks_and_scores() -> None:
    out = build_targets([_scene()], (64, 128), LEVELS, EMBED, _cfg())
    lv0 = out.levels[0]
    # all four classes are present on level 0 (stuff covers all 19 classes, things included), in class order
    assert lv0.stuff_valid[0].sum() == 4
    assert lv0.stuff_classes[0, :4].tolist() == [ROAD, SKY, PERSON, CAR]
    # stride-4 masks are the downsampled one-hot of the present classes
    semantic = _scene().semantic
    for slot, cls in enumerate([ROAD, SKY, PERSON, CAR]):
        expected = F.avg_pool2d((semantic == cls).float()[None, None], 4)[0, 0]  # exact: boundaries on 8
        assert torch.equal(lv0.stuff_masks[0, slot], expected), cls
        assert torch.equal(lv0.stuff_region_masks[0, slot], (lv0.stuff_scores[0, cls] > 0).float())
    assert (lv0.stuff_masks[0, 4:] == 0).all() and not lv0.stuff_valid[0, 4:].any()
    # the void corner (rows 0..7, cols 120..127) belongs to no class: level-0 cell (0, 15)
    assert lv0.stuff_scores[0, :, 0, 15].sum() == 0
    # level 4 (1x1) samples stride-4 rows 7,8 x cols 15,16: sky, person, road, person -> only person reaches 0.5
    lv4 = out.levels[4]
    assert lv4.stuff_valid[0].sum() == 1 and lv4.stuff_classes[0, 0].item() == PERSON
    assert lv4.stuff_scores[0, PERSON, 0, 0].item() == pytest.approx(0.5)
    assert lv4.stuff_scores[0, SKY].sum() == 0  # 0.25 < 0.5 is dropped
    assert lv4.stuff_region_masks[0, 0, 0, 0] == 1.0


def test_a_cell_split_in_half_is_the_stuff_target_of_one_class_only() -> None:
    """Sky over road with the horizon at row 16: level 2 (stride 32) row 0 samples pixel rows 15 and 16, half sky
    and half road. The released targets make both 0.5 (a tie the region head learns and inference's argmax
    breaks by float noise); here the lower class id (road) keeps the cell."""
    semantic = torch.full((64, 128), ROAD, dtype=torch.int64)
    semantic[:16] = SKY
    out = build_targets([InstanceTarget(semantic, torch.zeros_like(semantic))], (64, 128), LEVELS, EMBED, _cfg())
    lv2 = out.levels[2]
    raw = F.interpolate(F.one_hot(semantic, 19).permute(2, 0, 1)[None].float(), size=(2, 4), mode="bilinear")[0]
    assert raw[ROAD, 0].tolist() == raw[SKY, 0].tolist() == [0.5] * 4  # the tie
    assert lv2.stuff_scores[0, ROAD, 0].tolist() == [0.5] * 4 and lv2.stuff_scores[0, SKY].sum() == 0
    assert lv2.stuff_classes[0, :1].tolist() == [ROAD] and lv2.stuff_valid[0].sum() == 1
    assert lv2.stuff_region_masks[0, 0].tolist() == [[1.0] * 4, [1.0] * 4]
    # the stride-4 masks are untouched: the sky keeps its pixels for the mask and depth losses
    assert torch.equal(out.class_masks[0, SKY], (semantic[::4, ::4] == SKY).float())
    # no tie on the finer levels: the horizon is on their cell borders
    assert out.levels[0].stuff_scores[0, SKY, 1].tolist() == [1.0] * 16


def test_depth_is_nearest_sampled_and_thing_means_use_valid_pixels_only() -> None:
    out = build_targets([_scene()], (64, 128), LEVELS, EMBED, _cfg())
    assert out.depth is not None and out.depth.shape == (1, *EMBED)
    # nearest sampling picks pixel (4i, 4j)
    assert torch.equal(out.depth[0], _scene().depth[::4, ::4])
    # car: stride-4 columns 4,5 invalid, 6,7 = 10, 8,9 = 40 -> mean of valid = 25 (16.7 if zeros counted)
    mean0 = out.levels[0].thing_mean_depth
    assert mean0 is not None
    assert mean0[0, 0].item() == pytest.approx(25.0)
    assert mean0[0, 1].item() == pytest.approx(5.0)
    assert (mean0[0, 2:] == 0).all()
    assert out.levels[1].thing_mean_depth[0, 0].item() == pytest.approx(5.0)


def test_batch_of_two_sizes_padded_and_an_image_without_things() -> None:
    small = InstanceTarget(
        semantic=torch.full((32, 64), ROAD, dtype=torch.int64),
        instance=torch.zeros((32, 64), dtype=torch.int64),
        depth=None,
    )
    out = build_targets([_scene(), small], (64, 128), LEVELS, EMBED, _cfg(TENSOR_DIM=4))
    lv0 = out.levels[0]
    assert lv0.center_heatmap.shape == (2, 8, 8, 16) and lv0.thing_masks.shape == (2, 4, *EMBED)
    # the first image is unchanged by batching
    alone = build_targets([_scene()], (64, 128), LEVELS, EMBED, _cfg(TENSOR_DIM=4)).levels[0]
    assert torch.equal(lv0.center_heatmap[0], alone.center_heatmap[0])
    assert torch.equal(lv0.thing_masks[0], alone.thing_masks[0])
    # the second image: no things, road only, in its 8x16 stride-4 corner; no depth -> zeros
    assert not lv0.thing_valid[1].any() and lv0.center_heatmap[1].sum() == 0
    assert (lv0.thing_masks[1] == 255).all()
    assert lv0.stuff_valid[1].tolist() == [True] + [False] * 18 and lv0.stuff_classes[1, 0] == ROAD
    expected = torch.zeros(EMBED)
    expected[:8, :16] = 1.0
    assert torch.equal(lv0.stuff_masks[1, 0], expected)
    assert out.depth is not None and out.depth[1].sum() == 0
    assert (lv0.thing_mean_depth[1] == 0).all()
    for level in out.levels:
        for tensor in (level.center_heatmap, level.thing_masks, level.stuff_scores, level.stuff_masks):
            assert torch.isfinite(tensor).all()


def test_empty_image_and_no_depth_at_all() -> None:
    void = InstanceTarget(
        semantic=torch.full((64, 128), 255, dtype=torch.int64), instance=torch.zeros((64, 128), dtype=torch.int64)
    )
    out = build_targets([void], (64, 128), LEVELS, EMBED, _cfg())
    assert out.depth is None
    for level in out.levels:
        assert level.thing_mean_depth is None
        assert not level.thing_valid.any() and not level.stuff_valid.any()
        assert level.center_heatmap.sum() == 0 and level.stuff_scores.sum() == 0


def test_tensor_dim_truncates_and_level_count_is_checked() -> None:
    out = build_targets([_scene()], (64, 128), LEVELS, EMBED, _cfg(TENSOR_DIM=1))
    assert out.levels[0].thing_valid.tolist() == [[True]]
    with pytest.raises(ValueError, match="INSTANCE_SCALES"):
        build_targets([_scene()], (64, 128), LEVELS[:3], EMBED, _cfg())


@pytest.mark.parametrize("size", [(37, 53, 9, 13), (64, 128, 16, 32), (10, 7, 3, 2), (5, 6, 8, 9)])
def test_downsample_one_hot_equals_interpolating_the_one_hot(size: tuple[int, int, int, int]) -> None:
    height, width, out_h, out_w = size
    labels = torch.randint(-1, 6, (height, width), generator=torch.Generator().manual_seed(height))
    one_hot = F.one_hot(labels.clamp(min=0), 6).permute(2, 0, 1).float() * (labels >= 0)
    expected = F.interpolate(one_hot[None], size=(out_h, out_w), mode="bilinear", align_corners=False)[0]
    assert torch.allclose(downsample_one_hot(labels, 6, (out_h, out_w)), expected, atol=1e-6)


def test_sparse_depth_cells_take_nearest_valid_depth_of_the_same_segment() -> None:
    from panopticdepth_core.modeling.targets import _sample_depth_stride4

    depth = torch.zeros(8, 8)
    segment = torch.zeros(8, 8, dtype=torch.long)
    segment[4:, 4:] = 7  # another object in the bottom-right cell
    depth[1, 2], depth[2, 1] = 5.0, 4.0  # two LiDAR returns in the top-left cell: the nearer one wins
    depth[6, 6] = 9.0
    depth[1, 6] = 3.0  # a return in the top-right cell...
    segment[1, 6] = 7  # ...but on a different segment than the cell's sampled pixel: it must not leak
    out = _sample_depth_stride4(depth, segment, (2, 2))
    assert out.tolist() == [[4.0, 0.0], [0.0, 9.0]]
    dense = torch.arange(1, 65, dtype=torch.float32).reshape(8, 8)
    # dense depth: exactly the released nearest sampling
    assert torch.equal(_sample_depth_stride4(dense, segment, (2, 2)), dense[::4, ::4])
