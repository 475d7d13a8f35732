"""The released three-stage recipe chains through MODEL.WEIGHTS with our configs (issue: training).

The original README trains in three runs: panoptic pre-training (PanopticDepth-R50-cityscapes.yaml), a
full-scale fine-tune starting from its model_final, then DPS training (PanopticDepth-R50-cityscapes-dps.yaml)
starting from that, where the depth heads, absent from the panoptic model, start from their initialisation.
Here each stage runs for one iteration through train.py's command line on tiny synthetic scenes (ResNet-18,
32 channels: the overrides only shrink the network and swap the data), and each feeds its
model_final.safetensors to the next as MODEL.WEIGHTS.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from panopticdepth_core.checkpoint.io import read_checkpoint

REPO = Path(__file__).resolve().parents[1]
STAGES = [
    "config/cityscapes/PanopticDepth-R50-cityscapes.yaml",
    "config/cityscapes/PanopticDepth-R50-cityscapes-FullScaleFinetune.yaml",
    "config/cityscapes_dps/PanopticDepth-R50-cityscapes-dps.yaml",
]
TINY = [
    "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.STRIDE_IN_1X1", "False", "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.SEMANTIC_FPN.CONVS_DIM", "32", "MODEL.POSITION_HEAD.CONVS_DIM", "32", "MODEL.KERNEL_HEAD.CONVS_DIM", "32",
    "MODEL.FEATURE_ENCODER.CONVS_DIM", "32", "MODEL.DEPTH_HEAD.CONVS_DIM", "32", "MODEL.POSITION_HEAD.NUM_CONVS", "1",
    "MODEL.KERNEL_HEAD.NUM_CONVS", "1", "MODEL.FEATURE_ENCODER.NUM_CONVS", "1", "MODEL.DEPTH_HEAD.NUM_CONVS", "1",
    "MODEL.POSITION_HEAD.DEFORM", "False", "MODEL.FEATURE_ENCODER.DEFORM", "False", "MODEL.DEPTH_HEAD.DEFORM", "False",
    "MODEL.TENSOR_DIM", "32", "MODEL.KERNEL_HEAD.INSTANCE_SCALES", "((1, 8), (4, 16), (8, 32), (16, 64), (32, 2048))",
    "DATASETS.TRAIN", "('synthetic_train',)", "DATASETS.TEST", "()", "DATASETS.SYNTHETIC.NUM_TRAIN", "4",
    "DATASETS.SYNTHETIC.SIZE", "(64, 128)", "DATASETS.SYNTHETIC.FOCAL", "80.0", "DATALOADER.NUM_WORKERS", "0",
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.CROP.ENABLED", "False",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "1", "SOLVER.WARMUP_ITERS", "0", "SOLVER.CHECKPOINT_PERIOD", "0",
    "TEST.EVAL_PERIOD", "-1", "MODEL.DEVICE", "cpu", "SEED", "0",
]


def test_three_stages_chain_through_model_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from panopticdepth_ros.cli import main

    torch.set_num_threads(1)
    weights = ""
    states = []
    for index, config in enumerate(STAGES):
        out = tmp_path / f"stage{index}"
        assert main(["train", "--config-file", str(REPO / config), *TINY, "MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(out)]) == 0
        log = capsys.readouterr().err
        if index == 0:
            assert "initialised from" not in log
        elif index == 1:  # same network: everything loads, nothing starts fresh
            assert f"initialised from {weights}" in log and "freshly initialised (not in the file): none" in log, log
        else:  # the DPS stage adds the depth heads: those, and only those, start fresh
            line = next(x for x in log.splitlines() if f"initialised from {weights}" in x)
            fresh = line.split("freshly initialised (not in the file): ")[1].split(";")[0].split(", ")
            assert fresh and all("depth" in name for name in fresh), line
        weights = str(out / "model_final.safetensors")
        state, meta = read_checkpoint(weights)
        assert "config" in meta
        states.append(state)
    panoptic, finetuned, dps = states
    assert not any("depth" in k for k in panoptic) and any("depth" in k for k in dps)
    # stage 3 started from stage 2's weights (one small step away), not from a fresh initialisation
    key = "backbone.fpn.output.0.weight" if "backbone.fpn.output.0.weight" in dps else next(
        k for k in finetuned if k in dps and finetuned[k].is_floating_point() and finetuned[k].dim() == 4)
    start_gap = float((dps[key] - finetuned[key]).abs().max())
    fresh_gap = float((finetuned[key] - panoptic[key]).abs().max())
    assert start_gap < 1e-3 and fresh_gap < 1e-3, (key, start_gap, fresh_gap)  # one Adam step moves <= ~lr
