"""Periodic and final evaluation: run the model like the Predictor does and score PQ, DPQ and depth metrics.

Evaluation goes through `Predictor` on purpose: the numbers training reports are the numbers a user of the
predictor, the node or `panopticdepth predict` + `panopticdepth eval` gets.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..config import CfgNode
from ..inference.predictor import Predictor


def evaluate_model(
    model: nn.Module,
    cfg: CfgNode,
    dataset_name: str,
    max_images: int | None = None,
    tb_writer=None,
    iteration: int = 0,
    num_vis: int = 3,
) -> dict:
    """Metrics of ``model`` on a named data set (see data/build.py); a few prediction images to TensorBoard."""
    from ..data.build import build_dataset
    from ..evaluation.evaluator import DPSEvaluator

    was_training = model.training
    device = next(model.parameters()).device
    predictor = Predictor(cfg, weights=None, device=str(device), model=model)
    dataset = build_dataset(cfg, dataset_name, is_train=False)
    evaluator = DPSEvaluator()
    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    try:
        for index in range(count):
            sample = dataset[index]
            # the frame's own focal length: depth is scaled for its camera, as the node does from camera_info
            pred = predictor(sample.image, focal=sample_focal(sample))
            evaluator.process(
                sample.name or f"frame_{index:06d}",
                pred.semantic, pred.instance, pred.depth,
                sample.semantic, sample.instance, sample.depth,
                sequence=sample.sequence or None, frame=sample.frame,
            )
            if tb_writer is not None and index < num_vis:
                _log_images(tb_writer, f"{dataset_name}/{index}", sample.image, pred, cfg, iteration)
    finally:
        model.train(was_training)
    return evaluator.summarize()


def sample_focal(sample) -> float | None:
    """fx (pixels) of a Sample's stored image, or None without usable intrinsics."""
    from ..data.transforms import usable_focal

    return None if sample.intrinsics is None else usable_focal(np.asarray(sample.intrinsics)[0, 0])


def _log_images(writer, tag: str, image: np.ndarray, pred, cfg: CfgNode, iteration: int) -> None:
    from ..inference.visualize import colorize_depth, colorize_panoptic, overlay

    over = overlay(image, colorize_panoptic(pred.semantic, pred.instance))
    writer.add_image(f"{tag}/panoptic", torch.from_numpy(over).permute(2, 0, 1), iteration)
    if pred.depth is not None:
        depth_rgb = colorize_depth(pred.depth, cfg.MODEL.DEPTH_HEAD.MAX_DEPTH)
        writer.add_image(f"{tag}/depth", torch.from_numpy(depth_rgb).permute(2, 0, 1), iteration)
