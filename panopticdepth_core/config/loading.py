"""Build a frozen, validated config from a file plus command-line overrides."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .defaults import get_default_config
from .node import CfgNode, ConfigError

_NORMS = ("", "BN", "SyncBN", "FrozenBN", "GN")


def load_config(config_file: str | Path | None = None, overrides: Sequence[str] = (), freeze: bool = True) -> CfgNode:
    """Defaults, then ``config_file`` (with its ``_BASE_`` chain), then ``KEY VALUE`` overrides; validated."""
    cfg = get_default_config()
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(overrides))
    validate_config(cfg, source=str(config_file) if config_file else "<defaults>")
    return cfg.freeze() if freeze else cfg


def validate_config(cfg: CfgNode, source: str = "<config>") -> None:
    """Reject values that parse but make no sense, naming the key."""
    m = cfg.MODEL

    def fail(key: str, why: str) -> None:
        raise ConfigError(f"{source}: {key} {why}")

    if m.RESNETS.DEPTH not in (18, 34, 50, 101):
        fail("MODEL.RESNETS.DEPTH", f"must be 18, 34, 50 or 101, got {m.RESNETS.DEPTH}")
    for key in ("RESNETS.NORM", "FPN.NORM", "SEMANTIC_FPN.NORM", "POSITION_HEAD.NORM", "KERNEL_HEAD.NORM",
                "FEATURE_ENCODER.NORM", "DEPTH_HEAD.NORM"):
        section, leaf = key.split(".")
        if m[section][leaf] not in _NORMS:
            fail(f"MODEL.{key}", f"must be one of {_NORMS}, got {m[section][leaf]!r}")
    if not 0 <= m.BACKBONE.FREEZE_AT <= 5:
        fail("MODEL.BACKBONE.FREEZE_AT", f"must be in 0..5, got {m.BACKBONE.FREEZE_AT}")
    if len(m.PIXEL_MEAN) != 3 or len(m.PIXEL_STD) != 3 or min(m.PIXEL_STD) <= 0:
        fail("MODEL.PIXEL_MEAN/PIXEL_STD", "must have 3 values each, with positive std")
    n_levels = len(m.FEATURE_ENCODER.IN_FEATURES)
    if len(m.KERNEL_HEAD.INSTANCE_SCALES) != n_levels:
        fail("MODEL.KERNEL_HEAD.INSTANCE_SCALES", f"needs one (min, max) per level in FEATURE_ENCODER.IN_FEATURES ({n_levels})")
    if len(m.INFERENCE.CENTER_POOL_SIZES) != n_levels or any(k % 2 == 0 for k in m.INFERENCE.CENTER_POOL_SIZES):
        fail("MODEL.INFERENCE.CENTER_POOL_SIZES", f"needs {n_levels} odd sizes")
    th, st = m.POSITION_HEAD.THING.NUM_CLASSES, m.POSITION_HEAD.STUFF.NUM_CLASSES
    if th < 1 or st <= th:
        fail("MODEL.POSITION_HEAD", f"needs THING.NUM_CLASSES >= 1 and STUFF.NUM_CLASSES > it, got {th} and {st}")
    if not (m.POSITION_HEAD.STUFF.ALL_CLASSES and m.POSITION_HEAD.STUFF.WITH_THING):
        fail("MODEL.POSITION_HEAD.STUFF.ALL_CLASSES/WITH_THING", "must be True (the released method's setting)")
    if m.INFERENCE.COMBINE.MODE not in ("auto", "argmax", "paste"):
        fail("MODEL.INFERENCE.COMBINE.MODE", f"must be auto, argmax or paste, got {m.INFERENCE.COMBINE.MODE!r}")
    if m.DEPTH_HEAD.MAX_DEPTH <= 0:
        fail("MODEL.DEPTH_HEAD.MAX_DEPTH", "must be positive")
    if not (math.isfinite(m.CANONICAL_FOCAL) and m.CANONICAL_FOCAL >= 0):
        fail("MODEL.CANONICAL_FOCAL", f"must be a focal length in pixels (> 0), or 0 for not recorded; got "
             f"{m.CANONICAL_FOCAL}")
    syn = cfg.DATASETS.SYNTHETIC
    hfov = tuple(syn.HFOV_RANGE)
    if len(hfov) != 2 or not 0 < hfov[0] <= hfov[1] < 180:
        fail("DATASETS.SYNTHETIC.HFOV_RANGE", f"must be (min, max) degrees with 0 < min <= max < 180, got {hfov}")
    if not (syn.VAL_FOCAL == -1 or syn.VAL_FOCAL >= 0):
        fail("DATASETS.SYNTHETIC.VAL_FOCAL", f"must be -1 (= FOCAL), 0 (random field of view) or pixels, got "
             f"{syn.VAL_FOCAL}")
    if cfg.INPUT.FORMAT not in ("RGB", "BGR"):
        fail("INPUT.FORMAT", f"must be RGB or BGR, got {cfg.INPUT.FORMAT!r}")
    if cfg.SOLVER.OPTIMIZER not in ("ADAM", "ADAMW", "SGD"):
        fail("SOLVER.OPTIMIZER", f"must be ADAM, ADAMW or SGD, got {cfg.SOLVER.OPTIMIZER!r}")
    if cfg.SOLVER.AMP.PRECISION not in ("bf16", "fp16"):
        fail("SOLVER.AMP.PRECISION", f"must be bf16 or fp16, got {cfg.SOLVER.AMP.PRECISION!r}")
    if cfg.SOLVER.IMS_PER_BATCH < 1 or cfg.SOLVER.MAX_ITER < 1:
        fail("SOLVER.IMS_PER_BATCH/MAX_ITER", "must be positive")
