"""The config values the target builder, the losses and the post-processing read, as typed, frozen objects.

``PanopticDepth`` builds each of them once from its (frozen) config and passes them to ``build_targets``,
``compute_losses`` and ``postprocess``; nothing below the meta-architecture reads the config tree itself. The
field names say what a value does; the comment next to each field names the released config key it comes from
(those keys are the published names and stay as they are, e.g. ``MODEL.INFERENCE.INST_THRES`` is the mask
probability threshold and ``MODEL.INFERENCE.COMBINE.INST_THRESH`` the score a thing needs to enter the panoptic
map).

They live in their own module (not next to the code that reads them) so the model can build them without
importing the target, loss and post-processing code, which it loads lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from ..config import CfgNode

COMBINE_MODES = ("argmax", "paste")
SIMILARITY_TYPES = ("cosine", "L2")


@dataclass(frozen=True)
class TargetParams:
    """What ``build_targets`` reads."""

    num_classes: int  # S, all semantic classes (MODEL.POSITION_HEAD.STUFF.NUM_CLASSES)
    num_things: int  # T, the last T of the S classes (MODEL.POSITION_HEAD.THING.NUM_CLASSES)
    tensor_dim: int  # thing slots per level and image (MODEL.TENSOR_DIM)
    ignore_value: int  # value of unused thing-mask slots (MODEL.IGNORE_VALUE)
    common_stride: int  # stride of the mask embedding (MODEL.SEMANTIC_FPN.COMMON_STRIDE)
    min_overlap: float  # CornerNet Gaussian radius parameter (MODEL.POSITION_HEAD.THING.MIN_OVERLAP)
    sigma_factor: float  # Gaussian sigma = (2 r + 1) / this (MODEL.POSITION_HEAD.THING.GAUSSIAN_SIGMA)
    instance_scales: tuple[tuple[float, float], ...]  # sqrt(box area) range per level (KERNEL_HEAD.INSTANCE_SCALES)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> TargetParams:
        model = cfg.MODEL
        num_classes = int(model.POSITION_HEAD.STUFF.NUM_CLASSES)
        num_things = int(model.POSITION_HEAD.THING.NUM_CLASSES)
        if not 0 < num_things <= num_classes:
            raise ValueError(
                f"MODEL.POSITION_HEAD.THING.NUM_CLASSES ({num_things}) must be in 1..MODEL.POSITION_HEAD.STUFF."
                f"NUM_CLASSES ({num_classes}): things are the last classes of the semantic label space"
            )
        center_type = str(model.POSITION_HEAD.THING.CENTER_TYPE)
        if "mass" not in center_type:
            raise ValueError(f"MODEL.POSITION_HEAD.THING.CENTER_TYPE is {center_type!r}; only 'mass' is supported")
        return cls(
            num_classes=num_classes,
            num_things=num_things,
            tensor_dim=int(model.TENSOR_DIM),
            ignore_value=int(model.IGNORE_VALUE),
            common_stride=int(model.SEMANTIC_FPN.COMMON_STRIDE),
            min_overlap=float(model.POSITION_HEAD.THING.MIN_OVERLAP),
            sigma_factor=float(model.POSITION_HEAD.THING.GAUSSIAN_SIGMA),
            instance_scales=tuple((float(lo), float(hi)) for lo, hi in model.KERNEL_HEAD.INSTANCE_SCALES),
        )


@dataclass(frozen=True)
class LossParams:
    """What ``compute_losses`` reads."""

    num_classes: int  # MODEL.POSITION_HEAD.STUFF.NUM_CLASSES
    num_things: int  # MODEL.POSITION_HEAD.THING.NUM_CLASSES
    pos_num: int  # kernels selected per thing and level (MODEL.POSITION_HEAD.THING.POS_NUM)
    stuff_score_threshold: float  # as PostprocessParams: a stuff region must score above this (STUFF.THRES)
    weight_pos_thing: float  # MODEL.LOSS_WEIGHT.POSITION_THING
    weight_pos_stuff: float  # MODEL.LOSS_WEIGHT.POSITION_STUFF
    weight_segment: float  # MODEL.LOSS_WEIGHT.SEGMENT
    alpha: float  # MODEL.LOSS_WEIGHT.FOCAL_LOSS_ALPHA
    gamma: float  # MODEL.LOSS_WEIGHT.FOCAL_LOSS_GAMMA
    depth_on: bool  # MODEL.DEPTH_ON
    depth_factor: float  # MODEL.DEPTH_HEAD.FACTOR
    depth_factor_ins: float  # MODEL.DEPTH_HEAD.FACTOR_INS
    mean_scale: float  # MODEL.DEPTH_HEAD.MEAN_SCALE
    range_scale: float  # MODEL.DEPTH_HEAD.RANGE_SCALE

    @classmethod
    def from_config(cls, cfg: CfgNode) -> LossParams:
        model = cfg.MODEL
        return cls(
            num_classes=int(model.POSITION_HEAD.STUFF.NUM_CLASSES),
            num_things=int(model.POSITION_HEAD.THING.NUM_CLASSES),
            pos_num=int(model.POSITION_HEAD.THING.POS_NUM),
            stuff_score_threshold=float(model.POSITION_HEAD.STUFF.THRES),
            weight_pos_thing=float(model.LOSS_WEIGHT.POSITION_THING),
            weight_pos_stuff=float(model.LOSS_WEIGHT.POSITION_STUFF),
            weight_segment=float(model.LOSS_WEIGHT.SEGMENT),
            alpha=float(model.LOSS_WEIGHT.FOCAL_LOSS_ALPHA),
            gamma=float(model.LOSS_WEIGHT.FOCAL_LOSS_GAMMA),
            depth_on=bool(model.DEPTH_ON),
            depth_factor=float(model.DEPTH_HEAD.FACTOR),
            depth_factor_ins=float(model.DEPTH_HEAD.FACTOR_INS),
            mean_scale=float(model.DEPTH_HEAD.MEAN_SCALE),
            range_scale=float(model.DEPTH_HEAD.RANGE_SCALE),
        )


@dataclass(frozen=True)
class PostprocessParams:
    """What ``postprocess`` reads (see docs/postprocess.md for each step)."""

    common_stride: int  # stride of the mask / depth embeddings (MODEL.SEMANTIC_FPN.COMMON_STRIDE)
    center_pool_sizes: tuple[int, ...]  # centre smoothing avg-pool per level (MODEL.INFERENCE.CENTER_POOL_SIZES)
    thing_top_num: int  # MODEL.POSITION_HEAD.THING.TOP_NUM: TOP_NUM // 2 peaks per level, TOP_NUM things kept
    center_threshold: float  # a centre peak must score above this (MODEL.POSITION_HEAD.THING.THRES)
    stuff_score_threshold: float  # a stuff region must score above this (MODEL.POSITION_HEAD.STUFF.THRES)
    mask_threshold: float  # mask probability above which a pixel is in a thing's mask (MODEL.INFERENCE.INST_THRES)
    similarity_threshold: float  # thing kernels this similar are fused (MODEL.INFERENCE.SIMILAR_THRES)
    similarity_type: str  # "cosine" or "L2" (MODEL.INFERENCE.SIMILAR_TYPE)
    class_specific_fusion: bool  # only fuse thing kernels of one class (MODEL.INFERENCE.CLASS_SPECIFIC)
    overlap_threshold: float  # a thing is dropped when more of its mask is taken (COMBINE.OVERLAP_THRESH)
    stuff_min_area: int  # output pixels a stuff class needs to survive (COMBINE.STUFF_AREA_LIMIT)
    combine_score_threshold: float  # rescored score a thing needs to enter the panoptic map (COMBINE.INST_THRESH)
    combine_mode: str  # "argmax" or "paste" (COMBINE.MODE, "auto" resolved by MODEL.DEPTH_ON)
    depth_on: bool  # MODEL.DEPTH_ON
    mean_scale: float  # MODEL.DEPTH_HEAD.MEAN_SCALE
    range_scale: float  # MODEL.DEPTH_HEAD.RANGE_SCALE
    max_depth: float  # output depth is clamped to [0, this] (MODEL.DEPTH_HEAD.MAX_DEPTH)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> PostprocessParams:
        inference = cfg.MODEL.INFERENCE
        combine = inference.COMBINE
        depth_on = bool(cfg.MODEL.DEPTH_ON)
        mode = str(combine.MODE).lower()
        if mode == "auto":
            mode = "argmax" if depth_on else "paste"
        if mode not in COMBINE_MODES:
            raise ValueError(f"MODEL.INFERENCE.COMBINE.MODE is {combine.MODE!r}; expected 'auto', 'argmax' or 'paste'")
        similarity_type = str(inference.SIMILAR_TYPE)
        if similarity_type not in SIMILARITY_TYPES:
            raise ValueError(f"MODEL.INFERENCE.SIMILAR_TYPE is {similarity_type!r}; expected 'cosine' or 'L2'")
        return cls(
            common_stride=int(cfg.MODEL.SEMANTIC_FPN.COMMON_STRIDE),
            center_pool_sizes=tuple(int(p) for p in inference.CENTER_POOL_SIZES),
            thing_top_num=int(cfg.MODEL.POSITION_HEAD.THING.TOP_NUM),
            center_threshold=float(cfg.MODEL.POSITION_HEAD.THING.THRES),
            stuff_score_threshold=float(cfg.MODEL.POSITION_HEAD.STUFF.THRES),
            mask_threshold=float(inference.INST_THRES),
            similarity_threshold=float(inference.SIMILAR_THRES),
            similarity_type=similarity_type,
            class_specific_fusion=bool(inference.CLASS_SPECIFIC),
            overlap_threshold=float(combine.OVERLAP_THRESH),
            stuff_min_area=int(combine.STUFF_AREA_LIMIT),
            combine_score_threshold=float(combine.INST_THRESH),
            combine_mode=mode,
            depth_on=depth_on,
            mean_scale=float(cfg.MODEL.DEPTH_HEAD.MEAN_SCALE),
            range_scale=float(cfg.MODEL.DEPTH_HEAD.RANGE_SCALE),
            max_depth=float(cfg.MODEL.DEPTH_HEAD.MAX_DEPTH),
        )


P = TypeVar("P", TargetParams, LossParams, PostprocessParams)


def as_params(params_or_cfg: P | CfgNode, kind: type[P]) -> P:
    """``params_or_cfg`` if it already is a ``kind``, else ``kind.from_config`` of it (a config node).

    The model passes the objects it built once; callers holding only a config (tools, tests, the predictor's
    module-level ``postprocess`` call) may pass the config and pay the small lookup per call.
    """
    if isinstance(params_or_cfg, kind):
        return params_or_cfg
    if isinstance(params_or_cfg, CfgNode):
        return kind.from_config(params_or_cfg)
    raise TypeError(f"expected a {kind.__name__} or a config node, got {type(params_or_cfg).__name__}")
