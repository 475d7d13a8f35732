"""Post-processing on hand-built head outputs whose panoptic answer is known exactly.

The scene: 5 classes (0, 1, 2 stuff; 3, 4 things), a 64x96 input (stride-4 maps 16x24) and two levels
(stride 8: 8x12, stride 16: 4x6). Every stride-4 cell belongs to one segment j; the mask embedding holds a
constant -1 channel and a channel 2*[cell in j] per segment, so the kernel 10*(e_bias + e_j) gives logits +10
inside segment j and -10 outside. Level cells carry the kernel of the segment they sit in, thing peaks the
kernel of their thing. Depth kernels [logit(mu/44), 0, 0...] give D = mu exactly. At output size 16x24 the
bilinear resampling leaves every cell's own segment the clear winner, so the answer is the label map itself.
"""

from __future__ import annotations

import math

import pytest
import torch

from panopticdepth_core.config import get_default_config
from panopticdepth_core.modeling.postprocess import (
    fuse_stuff_kernels,
    fuse_thing_kernels,
    postprocess,
    stuff_regions,
    thing_peaks,
)
from panopticdepth_core.modeling.settings import PostprocessParams
from panopticdepth_core.modeling.types import LABEL_DIVISOR, VOID_CLASS, VOID_PANOPTIC_ID, HeadOutputs

H4, W4 = 16, 24
IMAGE = (H4 * 4, W4 * 4)
LEVELS = [(8, 12), (4, 6)]
NUM_CLASSES, NUM_THINGS, KD = 5, 2, 3
# segment -> (class, mu metres); A, B, C stuff; T1, T2, T3 things
SEGMENTS = {"A": (0, 20.0), "B": (1, 10.0), "C": (2, 5.0), "T1": (3, 8.0), "T2": (4, 12.0), "T3": (3, 30.0)}
NAMES = list(SEGMENTS)
EMBED = 2 + len(NAMES)  # bias, one channel per segment, one spare channel "X" marking some A cells
X_CELLS = (slice(0, 2), slice(10, 14))


def identity(kernels: torch.Tensor) -> torch.Tensor:
    return kernels


def kernel(name: str, scale: float = 10.0) -> torch.Tensor:
    k = torch.zeros(EMBED)
    k[0] = scale
    k[1 + NAMES.index(name)] = scale
    return k


def label_map() -> torch.Tensor:
    """(H4, W4) segment index of every stride-4 cell."""
    labels = torch.zeros(H4, W4, dtype=torch.long)
    labels[8:] = NAMES.index("B")
    labels[14:, :2] = NAMES.index("C")
    labels[2:6, 2:8] = NAMES.index("T1")
    labels[9:13, 12:18] = NAMES.index("T2")
    labels[3:7, 16:22] = NAMES.index("T3")
    return labels


class Scene:
    """Head outputs for one image, built cell by cell."""

    def __init__(self, empty: bool = False) -> None:
        labels = label_map()
        spare = torch.zeros(1, H4, W4)
        spare[(0, *X_CELLS)] = 2.0
        segments = 2.0 * torch.stack([labels == j for j in range(len(NAMES))])
        self.embedding = torch.cat([-torch.ones(1, H4, W4), segments, spare])
        self.depth_embedding = torch.randn(KD, H4, W4, generator=torch.Generator().manual_seed(0))
        self.centers = [torch.full((NUM_THINGS, h, w), -10.0) for h, w in LEVELS]
        self.regions = [torch.full((NUM_CLASSES, h, w), -10.0 if empty else -5.0) for h, w in LEVELS]
        self.kernels = [torch.zeros(EMBED, h, w) for h, w in LEVELS]
        self.depth = [torch.zeros(2 + KD, h, w) for h, w in LEVELS]
        if empty:
            return
        for level, (h, w) in enumerate(LEVELS):
            for y in range(h):
                for x in range(w):
                    self.set_cell(level, y, x, "A" if y < h // 2 else "B")
        self.set_cell(0, 7, 0, "C")
        self.set_cell(0, 2, 2, "T1", center_logit=4.0)
        # T2's mask logits are only +-2: rescoring multiplies its score by sigmoid(2)
        self.set_cell(0, 5, 7, "T2", center_logit=3.0, kernel_vec=kernel("T2", scale=2.0))
        self.set_cell(1, 1, 4, "T3", center_logit=1.5)

    def set_cell(self, level, y, x, name, center_logit=None, kernel_vec=None) -> None:
        category, mu = SEGMENTS[name]
        self.kernels[level][:, y, x] = kernel(name) if kernel_vec is None else kernel_vec
        self.regions[level][:, y, x] = -5.0
        self.regions[level][category, y, x] = 5.0
        self.depth[level][:, y, x] = 0.0
        self.depth[level][0, y, x] = math.log(mu / (44.0 - mu))  # sigmoid(a) * 44 = mu
        if center_logit is not None:
            self.centers[level][category - (NUM_CLASSES - NUM_THINGS), y, x] = center_logit


def batch(*scenes: Scene) -> HeadOutputs:
    return HeadOutputs(
        center_logits=[torch.stack([s.centers[i] for s in scenes]) for i in range(len(LEVELS))],
        region_logits=[torch.stack([s.regions[i] for s in scenes]) for i in range(len(LEVELS))],
        kernel_features=[torch.stack([s.kernels[i] for s in scenes]) for i in range(len(LEVELS))],
        mask_embedding=torch.stack([s.embedding for s in scenes]),
        depth_kernel_params=[torch.stack([s.depth[i] for s in scenes]) for i in range(len(LEVELS))],
        depth_embedding=torch.stack([s.depth_embedding for s in scenes]),
    )


def config(depth_on: bool = True, area_limit: int = 4, mode: str = "auto"):
    cfg = get_default_config()
    cfg.MODEL.DEPTH_ON = depth_on
    cfg.MODEL.INFERENCE.COMBINE.STUFF_AREA_LIMIT = area_limit
    cfg.MODEL.INFERENCE.COMBINE.MODE = mode
    return cfg


def run(head, cfg, image_sizes=None, output_sizes=None):
    """Post-processing with the settings built from ``cfg`` once, as the model does."""
    n = head.mask_embedding.shape[0]
    params = PostprocessParams.from_config(cfg)
    return postprocess(head, identity, identity, image_sizes or [IMAGE] * n, output_sizes or [(H4, W4)] * n, params)


def expected_panoptic() -> torch.Tensor:
    """Panoptic ids of the label map: things numbered by score (T1 > T2 > T3)."""
    ids = {"A": 0, "B": 1000, "C": 2000, "T1": 3001, "T2": 4002, "T3": 3003}
    return torch.tensor([ids[n] for n in NAMES], dtype=torch.int32)[label_map()]


# ------------------------------------------------------------------------------------------- units


def test_plateau_gives_one_peak_and_peaks_are_sorted() -> None:
    logits = torch.full((2, 9, 9), -10.0)
    logits[0, 2:5, 2:5] = 3.0  # a 3x3 plateau of class 0
    logits[1, 7, 7] = 4.0  # an isolated peak of class 1: the avg-pool halves its score
    scores, classes, cells = thing_peaks(logits, pool_size=3, top_k=50, threshold=0.05)
    assert classes.tolist() == [0, 1]
    assert cells.tolist() == [3 * 9 + 3, 7 * 9 + 7]  # the plateau peaks once, at its middle
    assert scores[0] > scores[1] > 0.05
    assert thing_peaks(logits, pool_size=3, top_k=50, threshold=0.6)[1].tolist() == [0]


def test_fusion_merges_near_identical_kernels_of_one_class_only() -> None:
    base = torch.tensor([1.0, 0.0, 0.0, 2.0])
    near = base + torch.tensor([0.0, 0.05, 0.0, 0.0])  # cosine ~0.9997
    other = torch.tensor([0.0, 1.0, 1.0, 0.0])
    kernels = torch.stack([base, near, other, base])
    keep, groups = fuse_thing_kernels(kernels, torch.tensor([3, 3, 3, 4]), threshold=0.97, class_specific=True)
    assert keep.tolist() == [True, False, True, True]
    assert groups.tolist() == [[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    keep, groups = fuse_thing_kernels(kernels, torch.tensor([3, 3, 3, 4]), threshold=0.97, class_specific=False)
    assert keep.tolist() == [True, False, True, False]
    assert groups[0].tolist() == [1, 1, 0, 1]


def test_stuff_region_counts_argmax_cells_but_sums_confident_ones() -> None:
    logits = torch.full((3, 1, 4), -10.0)
    logits[0, 0, :3] = torch.tensor([2.2, 2.2, -0.85])  # probabilities 0.9, 0.9, 0.3 (still the argmax)
    logits[2, 0, 3] = -2.2  # class 2 wins one cell at 0.1: below 0.4, so its score is 0
    classes, scores, regions, counts = stuff_regions(logits, threshold=0.05)
    assert classes.tolist() == [0] and counts.tolist() == [3]
    assert scores.tolist() == pytest.approx([0.6], abs=1e-3)
    assert regions.tolist() == [[1.0, 1.0, 0.0, 0.0]]


def test_stuff_kernels_of_one_class_are_averaged_over_levels() -> None:
    kernels = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 4.0]])
    depth = torch.tensor([[1.0], [5.0], [3.0]])
    fused, classes, scores, fused_depth = fuse_stuff_kernels(
        kernels, torch.tensor([2, 0, 2]), torch.tensor([0.2, 0.3, 0.4]), depth
    )
    assert classes.tolist() == [0, 2]
    assert fused.tolist() == [[1.0, 1.0], [1.0, 2.0]]
    assert scores.tolist() == pytest.approx([0.3, 0.3])
    assert fused_depth.tolist() == [[5.0], [2.0]]


# ------------------------------------------------------------------------------------------- combination


def test_argmax_combine_assigns_every_pixel_and_its_segments_depth() -> None:
    (result,) = run(batch(Scene()), config(depth_on=True))  # auto -> argmax with depth
    assert torch.equal(result.panoptic, expected_panoptic())
    assert torch.equal(result.semantic, expected_panoptic() // LABEL_DIVISOR)
    assert torch.equal(result.instance, expected_panoptic() % LABEL_DIVISOR)
    mus = torch.tensor([SEGMENTS[n][1] for n in NAMES])
    assert result.depth.dtype == torch.float32
    assert torch.allclose(result.depth, mus[label_map()], atol=1e-3)
    labels = label_map()
    by_id = {s.id: s for s in result.segments}
    assert sorted(by_id) == [0, 1000, 2000, 3001, 3003, 4002]
    for name, pid in zip(NAMES, [0, 1000, 2000, 3001, 4002, 3003]):
        seg = by_id[pid]
        assert seg.area == int((labels == NAMES.index(name)).sum())
        assert seg.mean_depth == pytest.approx(SEGMENTS[name][1], abs=1e-3)
        assert seg.is_thing == name.startswith("T")
    assert by_id[3001].score > by_id[4002].score > by_id[3003].score > 0.2
    isolated_peak = (torch.sigmoid(torch.tensor(3.0)) * 10 / 9 + 8 / 9 * torch.sigmoid(torch.tensor(-10.0))) / 2
    assert by_id[4002].score == pytest.approx(float(isolated_peak * torch.sigmoid(torch.tensor(2.0))), rel=1e-4)


def test_paste_mode_leaves_void_where_nothing_is_placed() -> None:
    head = batch(Scene())
    # auto -> paste; C (4 output pixels, 64 at the 64x96 network input, where areas are counted) is too small
    (pasted,) = run(head, config(depth_on=False, area_limit=65))
    expected = expected_panoptic()
    small = label_map() == NAMES.index("C")
    assert (pasted.panoptic[small] == VOID_PANOPTIC_ID).all() and (pasted.semantic[small] == VOID_CLASS).all()
    assert torch.equal(pasted.panoptic[~small], expected[~small])
    assert pasted.depth is None and all(math.isnan(s.mean_depth) for s in pasted.segments)
    assert 2000 not in {s.id for s in pasted.segments}
    (argmaxed,) = run(head, config(depth_on=False, area_limit=65, mode="argmax"))
    assert (argmaxed.panoptic != VOID_PANOPTIC_ID).all()  # argmax leaves nothing void


def test_overlap_suppression_drops_a_duplicate_thing() -> None:
    scene = Scene()
    # a weaker class-3 peak whose kernel draws T1's mask with higher confidence but is not similar enough
    # (cosine 0.96 < 0.97) to be fused: without suppression it would win T1's pixels in the argmax
    dup = 1.5 * kernel("T1")
    dup[1 + NAMES.index("A")] = -6.0
    scene.set_cell(0, 0, 6, "T1", center_logit=3.5, kernel_vec=dup)
    (result,) = run(batch(scene), config(depth_on=True))
    (clean,) = run(batch(Scene()), config(depth_on=True))
    assert torch.equal(result.panoptic, expected_panoptic())
    # the kept T1 is the original (its score), not the duplicate renumbered as instance 1
    assert [(s.id, s.score) for s in result.segments] == [(s.id, s.score) for s in clean.segments]


def test_a_thing_that_wins_no_pixel_is_dropped_and_not_numbered() -> None:
    scene = Scene()
    ghost = torch.zeros(EMBED)
    ghost[0] = ghost[-1] = 5.0  # mask = the X cells inside A, at probability 0.993 < A's 0.99995
    scene.set_cell(0, 0, 9, "T1", center_logit=3.5, kernel_vec=ghost)  # scored between T1 and T2
    (argmaxed,) = run(batch(scene), config(depth_on=True))
    assert torch.equal(argmaxed.panoptic, expected_panoptic())  # T2 is still instance 2
    assert sorted(s.id for s in argmaxed.segments) == [0, 1000, 2000, 3001, 3003, 4002]
    (pasted,) = run(batch(scene), config(depth_on=False))  # pasting keeps it: it claimed the X cells first
    assert (pasted.panoptic[X_CELLS] == 3002).all() and (
        pasted.panoptic[label_map() == NAMES.index("T2")] == 4003
    ).all()


def test_thing_class_region_without_a_placed_thing_stays_void_in_paste_mode() -> None:
    scene = Scene()
    scene.centers[0][:] = -10.0  # T1 and T2 undetected; their cells still argmax to thing-class regions
    (result,) = run(batch(scene), config(depth_on=False))
    labels = label_map()
    for name in ("T1", "T2"):
        assert (result.panoptic[labels == NAMES.index(name)] == VOID_PANOPTIC_ID).all()
    assert (result.panoptic[labels == NAMES.index("T3")] == 3001).all()
    scene.centers[1][0, 1, 4] = -1.0  # T3 now scores ~0.15: above THING.THRES (0.05), below COMBINE.INST_THRESH (0.2)
    (result,) = run(batch(scene), config(depth_on=False))
    assert (result.panoptic[labels == NAMES.index("T3")] == VOID_PANOPTIC_ID).all()
    assert not any(s.is_thing for s in result.segments)


def test_image_smaller_than_the_padded_batch_is_cropped_before_resizing() -> None:
    scene = Scene()
    scene.depth_embedding[0] = torch.arange(H4, dtype=torch.float32)[:, None]  # a ramp along rows
    for params in scene.depth:
        params[2] = 0.1  # every depth kernel reads it: D = mu + 44 * (2 * sigmoid(0.1 * row) - 1)
    (result,) = run(batch(scene), config(depth_on=True), image_sizes=[(48, 64)], output_sizes=[(12, 16)])
    assert torch.equal(result.panoptic, expected_panoptic()[:12, :16])  # T3 (outside) is gone, C too
    rows = torch.arange(1, 12, dtype=torch.float32)
    mu = torch.where(rows < 8, SEGMENTS["A"][1], SEGMENTS["B"][1])
    assert torch.allclose(result.depth[1:, 0], mu + 44.0 * (2 * torch.sigmoid(0.1 * rows) - 1), atol=1e-3)


def test_output_size_other_than_the_input_size() -> None:
    head = batch(Scene())
    for size in [IMAGE, (40, 60), (100, 150)]:
        (result,) = run(head, config(depth_on=True), output_sizes=[size])
        assert result.panoptic.shape == result.depth.shape == size
        nearest = torch.nn.functional.interpolate(expected_panoptic()[None, None].float(), size=size, mode="nearest")
        agree = (result.panoptic == nearest[0, 0].int()).float().mean()
        assert agree > 0.9  # only segment borders may differ
        assert {s.id for s in result.segments} == {0, 1000, 2000, 3001, 3003, 4002}


def test_odd_image_and_output_sizes() -> None:
    cfg = config(depth_on=True)
    cfg.MODEL.DEPTH_HEAD.MAX_DEPTH = 25.0  # T3 sits at 30 m
    (result,) = run(batch(Scene()), cfg, image_sizes=[(61, 93)], output_sizes=[(47, 71)])
    assert result.panoptic.shape == result.semantic.shape == result.instance.shape == (47, 71)
    assert (result.panoptic != VOID_PANOPTIC_ID).all()
    assert set(result.semantic.unique().tolist()) == {0, 1, 2, 3, 4}
    assert result.depth.min() == pytest.approx(SEGMENTS["C"][1], abs=1e-3) and result.depth.max() == 25.0
    assert sum(s.area for s in result.segments) == 47 * 71


def test_nothing_detected_gives_all_void() -> None:
    (result,) = run(batch(Scene(empty=True)), config(depth_on=True))
    assert (result.panoptic == VOID_PANOPTIC_ID).all() and (result.semantic == VOID_CLASS).all()
    assert (result.instance == 0).all() and (result.depth == 0).all() and result.segments == []


def test_batch_of_two_is_processed_per_image() -> None:
    cfg = config(depth_on=True)
    (alone,) = run(batch(Scene()), cfg)
    results = run(
        batch(Scene(), Scene(empty=True)), cfg, image_sizes=[IMAGE, (48, 80)], output_sizes=[(16, 24), (12, 20)]
    )
    assert torch.equal(results[0].panoptic, alone.panoptic) and torch.allclose(results[0].depth, alone.depth)
    assert results[1].panoptic.shape == (12, 20) and (results[1].panoptic == VOID_PANOPTIC_ID).all()


def test_bad_settings_are_named() -> None:
    head = batch(Scene())
    with pytest.raises(ValueError, match="MODEL.INFERENCE.COMBINE.MODE"):
        run(head, config(mode="nearest"))
    head.depth_embedding = None
    with pytest.raises(ValueError, match="MODEL.DEPTH_ON"):
        run(head, config(depth_on=True))


def test_settings_names_say_which_threshold_is_which() -> None:
    cfg = config()
    cfg.MODEL.INFERENCE.INST_THRES = 0.3  # released key: the mask probability threshold
    cfg.MODEL.INFERENCE.COMBINE.INST_THRESH = 0.6  # released key: the score a thing needs to be placed
    params = PostprocessParams.from_config(cfg)
    assert params.mask_threshold == 0.3 and params.combine_score_threshold == 0.6
    assert params.combine_mode == "argmax" and PostprocessParams.from_config(config(depth_on=False)).combine_mode == "paste"


def test_a_config_in_place_of_the_settings_gives_the_same_result() -> None:
    head, cfg = batch(Scene()), config(depth_on=True)
    (from_params,) = run(head, cfg)
    (from_cfg,) = postprocess(head, identity, identity, [IMAGE], [(H4, W4)], cfg)
    assert torch.equal(from_params.panoptic, from_cfg.panoptic) and torch.equal(from_params.depth, from_cfg.depth)
    with pytest.raises(TypeError, match="PostprocessParams"):
        postprocess(head, identity, identity, [IMAGE], [(H4, W4)], {"MODEL": {}})


def test_depth_at_another_output_size_is_the_same_with_little_memory(monkeypatch) -> None:
    import panopticdepth_core.modeling.postprocess as module

    scene = Scene()
    scene.depth_embedding[0] = torch.arange(H4, dtype=torch.float32)[:, None]  # depth varies inside segments
    for params in scene.depth:
        params[2] = 0.1
    head = batch(scene)
    for size in [(100, 150), (40, 60)]:
        (whole_maps,) = run(head, config(depth_on=True), output_sizes=[size])
        monkeypatch.setattr(module, "_MAX_DEPTH_MAP_VALUES", 0)  # per-pixel kernels instead of whole maps
        (per_pixel,) = run(head, config(depth_on=True), output_sizes=[size])
        monkeypatch.undo()
        assert torch.equal(whole_maps.panoptic, per_pixel.panoptic)
        assert torch.allclose(whole_maps.depth, per_pixel.depth, atol=1e-4)
        assert whole_maps.depth.std() > 1.0  # not a constant that any branch would get right


@pytest.mark.parametrize("size", [(100, 150), (40, 60), (47, 71), (16, 24)])
def test_segment_areas_and_mean_depths_match_the_output_maps(size) -> None:
    scene = Scene()
    rows, cols = torch.arange(H4, dtype=torch.float32)[:, None], torch.arange(W4, dtype=torch.float32)[None, :]
    scene.depth_embedding[0] = rows + 0.7 * cols  # depth varies inside segments, along both axes
    for params in scene.depth:
        params[2] = 0.1
    for mode in ("argmax", "paste"):
        (result,) = run(batch(scene), config(depth_on=True, mode=mode), output_sizes=[size])
        assert result.segments
        for segment in result.segments:
            pixels = result.panoptic == segment.id
            assert segment.area == int(pixels.sum())
            assert segment.mean_depth == pytest.approx(float(result.depth[pixels].double().mean()), rel=1e-5)


def _per_pixel_kernel_depth(winner, survivors, embedding, st):
    """The rule the stride-4 depth replaces: each pixel's own segment's kernel over the upsampled embedding
    (Kd, H, W); 0 where void."""
    from panopticdepth_core.modeling.instance_depth import pixel_depths

    kernels = torch.stack([s.depth_kernel for s in survivors])
    index = winner.reshape(-1)
    pixels = embedding.reshape(embedding.shape[0], -1).T  # (P, Kd)
    values = pixel_depths(pixels, kernels[index.clamp(min=0)], st.mean_scale, st.range_scale)
    return torch.where(index >= 0, values, 0.0).reshape(winner.shape).clamp(0.0, st.max_depth)


@pytest.mark.parametrize("image", [(64, 96), (61, 90)])  # whole stride-4 grid, and an image cropped inside it
def test_depth_from_stride_cells_equals_the_upsampled_embedding(image) -> None:
    """Native-size depth from the S segments' stride-4 logits equals the per-pixel kernel over the x4-upsampled
    embedding (the rule it replaces), void pixels 0, within float rounding."""
    from panopticdepth_core.modeling.postprocess import _depth_from_stride_cells, _Survivor, _to_output

    generator = torch.Generator().manual_seed(3)
    kd, rows, cols = 8, 16, 24
    embedding = torch.randn(kd, rows, cols, generator=generator)
    survivors = [_Survivor(11, True, 0.9, torch.randn(2 + kd, generator=generator) * 2) for _ in range(5)]
    winner = torch.randint(-1, len(survivors), image, generator=generator)  # void pixels included
    st = PostprocessParams.from_config(config())
    new = _depth_from_stride_cells(winner, survivors, embedding, 4, st)
    old = _per_pixel_kernel_depth(winner, survivors, _to_output(embedding, 4, image, image), st)
    assert new.shape == old.shape == image
    assert torch.equal(new == 0, old == 0) and bool((new[winner < 0] == 0).all())
    assert torch.allclose(new, old, rtol=1e-5, atol=1e-4)
    # single pixels (the camera path's border samples) give the same values as the whole map
    from panopticdepth_core.modeling.postprocess import _StrideCellDepth

    rows, cols = torch.nonzero(winner >= 0, as_tuple=True)
    at = _StrideCellDepth(survivors, embedding, 4, st).at(winner[rows, cols], rows, cols)
    assert torch.equal(at, new[rows, cols])


def _brute_force_combine(things, thing_probs, stuff, stuff_probs, first_thing, image, st):
    """The combination rule on every thing's whole upsampled map (what ``_combine`` must equal)."""
    from panopticdepth_core.modeling.postprocess import _to_output

    full = _to_output(thing_probs, 4, image, image)
    pasted = torch.full(image, -1, dtype=torch.long)
    sources, maps = [], []
    for i in range(full.shape[0]):
        mask = full[i] > st.mask_threshold
        area = int(mask.sum())
        if area == 0:
            continue
        mask &= pasted < 0
        if (area - int(mask.sum())) / area > st.overlap_threshold:
            continue
        pasted[mask] = len(sources)
        sources.append(("thing", i))
        maps.append(full[i])
    stuff_up = _to_output(stuff_probs, 4, image, image)
    label = stuff_up.argmax(0)
    free = pasted < 0
    for u in range(stuff_up.shape[0]):
        area = int(((label == u) & free).sum())
        if int(stuff.classes[u]) >= first_thing or area == 0 or area < st.stuff_min_area:
            continue
        pasted[(label == u) & free] = len(sources)
        sources.append(("stuff", u))
        maps.append(stuff_up[u])
    if st.combine_mode == "argmax":
        return torch.stack(maps).argmax(0), sources  # torch.argmax returns the first maximum
    return pasted, sources


@pytest.mark.parametrize("mode", ["argmax", "paste"])
@pytest.mark.parametrize("image", [(64, 96), (57, 93)])
def test_combine_equals_the_rule_on_whole_maps(mode, image) -> None:
    """Things upsampled inside their windows for masks, areas and overlaps, and the argmax decided on the stride-4
    grid with only disagreeing pixels sampled: the same survivors and winners as the rule evaluated on every
    whole upsampled map, with stuff too weak in a band for the argmax to leave things to their masks."""
    from panopticdepth_core.modeling.postprocess import _argmax_winner, _Candidates, _combine

    generator = torch.Generator().manual_seed(11)
    rows, cols = H4 + 1, W4 + 1
    ys, xs = torch.meshgrid(torch.arange(rows).float(), torch.arange(cols).float(), indexing="ij")
    blobs = []
    for _ in range(14):  # overlapping blobs of several sizes, some touching the image's edges
        cy, cx = torch.rand(2, generator=generator) * torch.tensor([rows, cols])
        radius = 1.0 + 4.0 * float(torch.rand(1, generator=generator))
        blobs.append(torch.sigmoid(3.0 * (1.0 - ((ys - cy) ** 2 + (xs - cx) ** 2) / radius**2)))
    thing_probs = torch.stack(blobs)
    # weak stuff: in a band of the image every stuff probability stays below the mask threshold
    stuff_probs = torch.rand(3, rows, cols, generator=generator) * 0.9
    stuff_probs[:, 3:12] *= 0.02
    classes = torch.tensor([11 + i % 3 for i in range(14)])
    things = _Candidates(torch.zeros(14, 4), classes, torch.linspace(0.9, 0.3, 14), None)
    stuff = _Candidates(torch.zeros(3, 4), torch.tensor([0, 1, 2]), torch.ones(3), None)
    cfg = config(area_limit=16, mode=mode)
    st = PostprocessParams.from_config(cfg)
    winner, survivors = _combine(things, thing_probs, stuff, stuff_probs, 11, image, st)
    if mode == "argmax":
        winner = _argmax_winner(survivors, thing_probs, stuff_probs, 4, image)
    expected, sources = _brute_force_combine(things, thing_probs, stuff, stuff_probs, 11, image, st)
    assert [("thing" if s.is_thing else "stuff", s.source) for s in survivors] == sources
    assert torch.equal(winner, expected)
    assert sum(kind == "thing" for kind, _ in sources) >= 5 and any(kind == "stuff" for kind, _ in sources)
    if mode == "argmax":  # things win pixels outside their masks (and windows) where stuff is weak
        maps = torch.stack([(_to_full(thing_probs[i], image) if kind == "thing" else _to_full(stuff_probs[i], image))
                            for kind, i in sources])
        is_thing = torch.tensor([kind == "thing" for kind, _ in sources])
        outside = is_thing[expected] & (maps.max(0).values <= st.mask_threshold)
        assert int(outside.sum()) > 20


def _to_full(cells: torch.Tensor, image) -> torch.Tensor:
    from panopticdepth_core.modeling.postprocess import _to_output

    return _to_output(cells[None], 4, image, image)[0]
