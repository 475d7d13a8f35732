"""The Predictor: one RGB image in, panoptic labels + metric depth out. The API the node, the bag tool and
`panopticdepth predict` share.

Why a class: it owns the loaded model, the device and precision, and the test-time resize, so callers only pass
images. The network runs under autocast when asked; post-processing always runs in float32 (thresholds and the
argmax combine are sensitive to half precision).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import CfgNode, ConfigError, load_config
from ..modeling.types import HeadOutputs, PanopticResult, Segment

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
#: Predictor(backend=...): ``auto`` picks onnxruntime for ``.onnx`` weights and torch otherwise.
BACKENDS = ("auto", "torch", "onnxruntime")


#: DepthScaling.rule values.
CAMERA, ASSUMED_CANONICAL, LEGACY = "camera", "assumed-canonical", "legacy"


@dataclass(frozen=True)
class DepthScaling:
    """How the network's depth became metres for one image: ``depth = network depth * factor``.

    rule ``camera``: the image's focal length was given; ``factor = focal_effective / focal_canonical``.
    rule ``assumed-canonical``: no focal length was given; the image is assumed to show the canonical camera's
    field of view at the network input (``factor = 1``): right only for such a camera, so callers flag it.
    rule ``legacy``: the model records no canonical focal (MODEL.CANONICAL_FOCAL 0); the released rule
    ``factor = resize scale`` (right only for images from the training camera at its stored resolution).
    """

    rule: str
    factor: float
    focal_canonical: float | None  # the model's canonical fx (pixels at the network input), None if unrecorded
    focal_effective: float | None  # the image's fx after the resize to the network input, None if unknown
    focal: float | None = None  # the image's fx at its own resolution, as given

    @property
    def assumed(self) -> bool:
        """True when the depth scale is a guess (no focal length was used)."""
        return self.rule != CAMERA


@dataclass
class Prediction:
    """Outputs for one image at its original resolution (NumPy, ready for messages and files)."""

    panoptic: np.ndarray  # (H, W) int32: class*1000 + instance, -1 void
    semantic: np.ndarray  # (H, W) int32: class id, 255 void
    instance: np.ndarray  # (H, W) int32: 1..N for things, 0 elsewhere
    depth: np.ndarray | None  # (H, W) float32 metres, 0 where the model gives none; None without a depth head
    segments: list[Segment] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    depth_scaling: DepthScaling | None = None  # how ``depth`` was scaled; None without a depth head


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


def check_focal(focal, what: str = "focal") -> float | None:
    """``focal`` as a float (pixels), None kept; ValueError naming ``what`` for 0, negative, NaN or Inf."""
    if focal is None:
        return None
    try:
        value = float(focal)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a focal length in pixels, got {focal!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{what}: expected a focal length in pixels (finite, > 0), got {focal!r}")
    return value


def model_canonical_focal(cfg: CfgNode, weights: str | Path | None) -> float | None:
    """The model's canonical focal length: MODEL.CANONICAL_FOCAL and the weights file's ``canonical_focal``
    metadata, which must agree when both are set (ConfigError naming both); None when neither records one.

    Why agree rather than one winning: a wrong canonical focal silently scales every depth, so a config and a
    weights file that disagree are a mistake to fix (re-export the weights or correct the config), not a choice.
    """
    from ..checkpoint.io import checkpoint_canonical_focal

    configured = float(cfg.MODEL.CANONICAL_FOCAL) if cfg.MODEL.CANONICAL_FOCAL > 0 else None
    stored = checkpoint_canonical_focal(weights) if weights else None
    if configured is not None and stored is not None and not math.isclose(configured, stored, rel_tol=1e-6):
        raise ConfigError(
            f"MODEL.CANONICAL_FOCAL is {configured:g} px but {weights} was trained for canonical_focal {stored:g} px; "
            "depth would be scaled wrongly. Use the config the weights were trained with (or set "
            f"MODEL.CANONICAL_FOCAL {stored:g})")
    return configured if configured is not None else stored


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
        backend: str = "auto",
        providers: str | Sequence[str] | None = None,
        threads: int = 0,
    ) -> None:
        """``model``: an already built network (training's evaluation passes its own); else one is built.

        ``backend``: ``torch``, ``onnxruntime``, or ``auto`` (onnxruntime for ``.onnx`` weights, else torch).
        ``providers``: onnxruntime execution providers (``auto``: TensorRT, CUDA, CPU, whichever exist; or names
        such as ``cpu``, ``cuda``, ``tensorrt``, comma-separated); only with the onnxruntime backend. ``threads``:
        onnxruntime's intra-op threads (0: its default); torch's are process-wide (``torch.set_num_threads``).
        """
        from ..checkpoint.io import load_model_weights
        from ..modeling.build import build_model

        if backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
        is_onnx = bool(weights) and Path(weights).suffix == ".onnx"
        if backend == "auto":
            backend = "onnxruntime" if is_onnx else "torch"
        if backend == "onnxruntime" and not is_onnx:
            raise ConfigError(f"backend onnxruntime needs an .onnx model (write one with `panopticdepth export`), "
                              f"got weights {weights!r}")
        if backend == "torch" and is_onnx:
            raise ConfigError(f"{weights} is an ONNX model: use backend onnxruntime (or auto)")
        if providers not in (None, "", "auto") and backend != "onnxruntime":
            raise ConfigError("providers (onnxruntime execution providers) only apply to .onnx models")
        self.backend = backend
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
        if backend == "onnxruntime":
            from .onnx_backend import OnnxNetwork

            if precision != "fp32":
                raise ConfigError(f"precision {precision} is for the torch backend; an .onnx model runs as exported")
            self.model = OnnxNetwork(weights, cfg, providers=providers or None, device=self.device, threads=threads)
        else:
            # With trained weights about to be loaded, reading the ImageNet backbone file first is wasted start-up.
            self.model = build_model(cfg, load_pretrained=not weights) if model is None else model
            if weights:
                load_model_weights(self.model, weights)
            self.model.to(self.device).eval()
        self.depth_on = bool(cfg.MODEL.DEPTH_ON)
        #: fx (pixels at the network input) the network's depth is expressed for; None: not recorded (legacy)
        self.focal_canonical = model_canonical_focal(cfg, weights)

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

    def depth_scaling(self, focal: float | None, width: int, input_width: int) -> DepthScaling:
        """The scaling of one image's depth: ``focal`` its fx (pixels, at ``width``) or None, ``input_width`` its
        width at the network input (see ``DepthScaling``)."""
        resize = input_width / width
        fx_canonical = self.focal_canonical
        fx_effective = None if focal is None else focal * resize
        if fx_canonical is None:
            return DepthScaling(LEGACY, resize, None, fx_effective, focal)
        if focal is None:
            return DepthScaling(ASSUMED_CANONICAL, 1.0, fx_canonical, fx_canonical, None)
        return DepthScaling(CAMERA, fx_effective / fx_canonical, fx_canonical, fx_effective, focal)

    @torch.inference_mode()
    def predict_batch(self, images: list[np.ndarray],
                      focals: Sequence[float | None] | None = None) -> list[Prediction]:
        """Run on several RGB uint8 (H, W, 3) images at once (sizes may differ).

        ``focals``: each image's focal length fx in pixels at the image's own resolution (e.g. camera_info's
        K[0, 0] for that image size), or None where unknown; see ``DepthScaling`` for what depth then means.
        """
        from ..modeling.postprocess import postprocess

        if focals is None:
            focals = [None] * len(images)
        if len(focals) != len(images):
            raise ValueError(f"got {len(images)} images but {len(focals)} focal lengths")
        focals = [check_focal(f, f"focal of image {i}") for i, f in enumerate(focals)]
        t0 = time.perf_counter()
        tensors, output_sizes, scalings = [], [], []
        for image, focal in zip(images, focals):
            if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                shape = getattr(image, "shape", None)
                raise ValueError(f"expected an RGB uint8 (H, W, 3) array, got {type(image).__name__} {shape}")
            height, width = image.shape[:2]
            scale = resize_scale(height, width, self.min_size, self.max_size)
            tensor = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)  # (3, H, W)
            new_size = (height, width)
            if scale != 1.0:
                new_size = (max(1, round(height * scale)), max(1, round(width * scale)))
                tensor = F.interpolate(tensor[None].float(), size=new_size, mode="bilinear", align_corners=False)[0]
            tensors.append(tensor)
            output_sizes.append((height, width))
            scalings.append(self.depth_scaling(focal, width, new_size[1]))
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
        for result, scaling in zip(results, scalings):
            depth = None
            if result.depth is not None:
                # An object at z metres looks as large to this camera (fx_effective at the network input) as it
                # would to the canonical camera at z * fx_canonical / fx_effective, which is what the network
                # estimates: z = network depth * fx_effective / fx_canonical.
                depth = result.depth.float()
                depth = (depth * scaling.factor if scaling.factor != 1.0 else depth).cpu().numpy()
            predictions.append(
                Prediction(
                    panoptic=result.panoptic.cpu().numpy().astype(np.int32, copy=False),
                    semantic=result.semantic.cpu().numpy().astype(np.int32, copy=False),
                    instance=result.instance.cpu().numpy().astype(np.int32, copy=False),
                    depth=depth,
                    segments=_scaled_segments(result.segments, scaling.factor),
                    depth_scaling=scaling if result.depth is not None else None,
                )
            )
        t4 = time.perf_counter()
        timings = {"preprocess": t1 - t0, "model": t2 - t1, "postprocess": t3 - t2, "to_numpy": t4 - t3}
        for prediction in predictions:
            prediction.timings = dict(timings)
        return predictions

    def __call__(self, image: np.ndarray, focal: float | None = None) -> Prediction:
        """Run on one RGB uint8 (H, W, 3) image; ``focal``: its fx in pixels at its own resolution, if known."""
        return self.predict_batch([image], [focal])[0]


def _scaled_segments(segments: list[Segment], scale: float) -> list[Segment]:
    if scale == 1.0:
        return list(segments)
    return [dataclasses.replace(s, mean_depth=s.mean_depth * scale) for s in segments]
