"""Tiny PanopticDepth configs and random-weights model files shared by the tests (no pytest needed, so a test run
outside pytest, such as launch_test, can import it too)."""

from __future__ import annotations

from pathlib import Path

import torch

from panopticdepth_core.checkpoint.io import save_checkpoint
from panopticdepth_core.config import CfgNode, load_config
from panopticdepth_core.modeling.build import build_model
from panopticdepth_core.modeling.panoptic_depth import PanopticDepth

# R-18 with BN, 32-channel FPN / semantic FPN / encoder, 64-channel heads of one conv each, Kd 8: builds and runs
# in well under a second on one CPU thread.
TINY_MODEL = [
    "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.NORM", "BN", "MODEL.RESNETS.STRIDE_IN_1X1", "False",
    "MODEL.BACKBONE.FREEZE_AT", "0", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.SEMANTIC_FPN.CONVS_DIM", "32",
    "MODEL.POSITION_HEAD.CONVS_DIM", "64", "MODEL.POSITION_HEAD.NUM_CONVS", "1",
    "MODEL.KERNEL_HEAD.CONVS_DIM", "64", "MODEL.KERNEL_HEAD.NUM_CONVS", "1",
    "MODEL.FEATURE_ENCODER.CONVS_DIM", "32", "MODEL.FEATURE_ENCODER.NUM_CONVS", "1",
    "MODEL.DEPTH_HEAD.CONVS_DIM", "64", "MODEL.DEPTH_HEAD.NUM_CONVS", "1", "MODEL.DEPTH_HEAD.DEPTH_KERNEL_DIM", "8",
    "INPUT.FORMAT", "RGB",
]
# TINY_MODEL without deformable convs and with 64x128 test images: what the node and bag tests run.
TINY_NODE_MODEL = [
    *TINY_MODEL, "MODEL.POSITION_HEAD.DEFORM", "False", "MODEL.FEATURE_ENCODER.DEFORM", "False",
    "MODEL.DEPTH_HEAD.DEFORM", "False", "MODEL.DEPTH_ON", "True", "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "128",
]


def tiny_cfg(*extra: str, base: list[str] = TINY_MODEL, depth_on: bool = True) -> CfgNode:
    """The default config with ``base``, then MODEL.DEPTH_ON, then ``extra`` overrides applied."""
    return load_config(None, [*base, "MODEL.DEPTH_ON", str(depth_on), *extra])


def random_model(cfg: CfgNode, seed: int = 0, label_everything: bool = False) -> PanopticDepth:
    """A freshly initialised model; ``label_everything`` biases the semantic and centre logits so that a random
    model still labels every pixel (random logits alone give no segment at all)."""
    torch.manual_seed(seed)
    net = build_model(cfg)
    if label_everything:
        with torch.no_grad():
            for name, parameter in net.named_parameters():
                if name.endswith("position_head.out_sem.bias"):
                    parameter.fill_(3.0)
                if name.endswith("position_head.out_inst.bias"):
                    parameter.fill_(0.0)
    return net


def write_random_model(folder: Path, cfg: CfgNode, label_everything: bool = False) -> tuple[Path, Path]:
    """(folder/tiny.yaml, folder/tiny.safetensors with the config embedded) of :func:`random_model` with seed 0."""
    config = Path(folder) / "tiny.yaml"
    config.write_text(cfg.dump())
    weights = save_checkpoint(random_model(cfg, label_everything=label_everything), Path(folder) / "tiny.safetensors",
                              cfg)
    return config, weights
