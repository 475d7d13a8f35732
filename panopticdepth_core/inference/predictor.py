"""The Predictor: one RGB image in, panoptic labels + metric depth out. The API the node, the bag tool and
`panopticdepth predict` share.

Why a class: it owns the loaded model, the device and precision, and the test-time resize, so callers only pass
images. The network runs under autocast when asked; post-processing always runs in float32 (thresholds and the
argmax combine are sensitive to half precision).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import CfgNode, ConfigError, load_config
from ..modeling.types import HeadOutputs, PanopticResult, Segment

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Prediction:
    """Outputs for one image at its original resolution (NumPy, ready for messages and files)."""

    panoptic: np.ndarray  # (H, W) int32: class*1000 + instance, -1 void
    semantic: np.ndarray  # (H, W) int32: class id, 255 void
    instance: np.ndarray  # (H, W) int32: 1..N for things, 0 elsewhere
    depth: np.ndarray | None  # (H, W) float32 metres, 0 where the model gives none; None without a depth head
    segments: list[Segment] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage


def resize_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """Detectron2's ResizeShortestEdge rule: shortest edge to ``min_size``, longest capped at ``max_size``.

    ``min_size <= 0`` keeps the native resolution.
    """
    if min_size <= 0:
        return 1.0
    scale = min_size / min(height, width)
    if max_size > 0 and max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return scale


def _head_to_float(head: HeadOutputs) -> HeadOutputs:
    def conv(t):
        if t is None:
            return None
        if isinstance(t, list):
            return [x.float() for x in t]
        return t.float()

    return HeadOutputs(**{name: conv(getattr(head, name)) for name in head.__dataclass_fields__})


class Predictor:
    """Load a model from a config file and a local weights file and run it on RGB uint8 images."""

    def __init__(
        self,
        cfg: CfgNode,
        weights: str | Path | None,
        device: str = "cpu",
        precision: str = "fp32",
        min_size: int | None = None,
        max_size: int | None = None,
        model: torch.nn.Module | None = None,
    ) -> None:
        """``model``: an already built network (training's evaluation passes its own); else one is built."""
        from ..checkpoint.io import load_model_weights
        from ..modeling.build import build_model

        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} was asked for but CUDA is not available")
        if precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("precision fp16 needs a CUDA device; use fp32 or bf16 on the CPU")
        self.cfg = cfg
        self.precision = precision
        self.min_size = cfg.INPUT.MIN_SIZE_TEST if min_size is None else min_size
        self.max_size = cfg.INPUT.MAX_SIZE_TEST if max_size is None else max_size
        # With trained weights about to be loaded, reading the ImageNet backbone file first is wasted start-up.
        self.model = build_model(cfg, load_pretrained=not weights) if model is None else model
        if weights:
            load_model_weights(self.model, weights)
        self.model.to(self.device).eval()
        self.depth_on = bool(cfg.MODEL.DEPTH_ON)

    @classmethod
    def from_files(
        cls,
        config_file: str | Path,
        weights: str | Path | None,
        overrides: tuple[str, ...] | list[str] = (),
        **kwargs,
    ) -> Predictor:
        """Build from a YAML config and a local weights file (``.safetensors``, or a ``.pth`` of ours)."""
        if weights and not Path(weights).is_file():
            raise ConfigError(f"weights file not found: {weights}")
        cfg = load_config(config_file, list(overrides))
        return cls(cfg, weights, **kwargs)

    def _autocast(self):
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def predict_batch(self, images: list[np.ndarray]) -> list[Prediction]:
        """Run on several RGB uint8 (H, W, 3) images at once (sizes may differ)."""
        from ..modeling.postprocess import postprocess

        t0 = time.perf_counter()
        tensors, output_sizes, scales = [], [], []
        for image in images:
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                shape = getattr(image, "shape", None)
                raise ValueError(f"expected an RGB uint8 (H, W, 3) array, got {type(image).__name__} {shape}")
            height, width = image.shape[:2]
            scale = resize_scale(height, width, self.min_size, self.max_size)
            tensor = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)  # (3, H, W)
            if scale != 1.0:
                new_size = (max(1, round(height * scale)), max(1, round(width * scale)))
                tensor = F.interpolate(tensor[None].float(), size=new_size, mode="bilinear", align_corners=False)[0]
            tensors.append(tensor)
            output_sizes.append((height, width))
            scales.append(scale)
        self._sync()
        t1 = time.perf_counter()
        with self._autocast():
            head, image_sizes, _ = self.model.predict_heads(tensors)
        head = _head_to_float(head)
        self._sync()
        t2 = time.perf_counter()
        results: list[PanopticResult] = postprocess(
            head, self.model.project_thing, self.model.project_stuff, image_sizes, output_sizes, self.cfg
        )
        self._sync()
        t3 = time.perf_counter()
        predictions = []
        for result, scale in zip(results, scales):
            depth = None
            if result.depth is not None:
                # The network saw the image enlarged by `scale`: things looked `scale` times closer.
                depth = (result.depth.float() * scale).cpu().numpy().astype(np.float32)
            predictions.append(
                Prediction(
                    panoptic=result.panoptic.cpu().numpy().astype(np.int32),
                    semantic=result.semantic.cpu().numpy().astype(np.int32),
                    instance=result.instance.cpu().numpy().astype(np.int32),
                    depth=depth,
                    segments=_scaled_segments(result.segments, scale),
                )
            )
        t4 = time.perf_counter()
        timings = {"preprocess": t1 - t0, "model": t2 - t1, "postprocess": t3 - t2, "to_numpy": t4 - t3}
        for prediction in predictions:
            prediction.timings = dict(timings)
        return predictions

    def __call__(self, image: np.ndarray) -> Prediction:
        """Run on one RGB uint8 (H, W, 3) image."""
        return self.predict_batch([image])[0]


def _scaled_segments(segments: list[Segment], scale: float) -> list[Segment]:
    if scale == 1.0:
        return list(segments)
    return [
        Segment(s.id, s.category_id, s.is_thing, s.score, s.area, s.instance_id, s.mean_depth * scale)
        for s in segments
    ]
