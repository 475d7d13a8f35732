"""Load the model the parameters ask for and wrap it in a FramePipeline, without ROS (node and bag tool share it).

Every failure a user can cause (missing or damaged weights, a config that does not fit, CUDA asked for but
absent) becomes one :class:`ModelLoadError` whose message names the parameter or file, so the node's configure
transition fails cleanly instead of crashing and the bag tool prints one line.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .frame_pipeline import FramePipeline
from .params import NodeParams

#: Blank image for the warm-up pass (the predictor resizes it like any frame).
WARMUP_SIZE = (256, 512)


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message names the parameter or file and what was expected."""


@dataclass
class LoadedModel:
    """A ready predictor and what it was built from (for logs and diagnostics)."""

    predictor: object
    config_source: str  # the config file, or "<weights> (embedded config)"
    weights: Path
    device: str
    label_threshold: float  # MODEL.INFERENCE.INST_THRES after the overrides
    load_seconds: float

    def describe(self) -> str:
        return (f"model {self.weights} (config {self.config_source}) on {self.device}, "
                f"loaded in {self.load_seconds:.1f} s")


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when CUDA is usable, else 'cpu'; anything else unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def model_source(params: NodeParams, extra_roots: Iterable[str | Path] = ()):
    """The config and weights ``params`` ask for, by the rule `panopticdepth predict` follows too
    (``panopticdepth_core.inference.model_files.resolve_model``); errors name the parameter."""
    from panopticdepth_core.checkpoint.io import CheckpointError
    from panopticdepth_core.config import ConfigError
    from panopticdepth_core.inference.model_files import ModelFilesError, resolve_model

    try:
        return resolve_model(params.model_config or None, params.weights or None, params.config_overrides(),
                             extra_roots, names=("parameter 'model_config'", "parameter 'weights'"))
    except ModelFilesError as error:
        raise ModelLoadError(str(error)) from error
    except (ConfigError, CheckpointError) as error:
        raise ModelLoadError(f"cannot load the model {params.weights or '(shipped)'}: {error}") from error


def load_model(params: NodeParams, extra_roots: Iterable[str | Path] = ()) -> LoadedModel:
    """Build the Predictor for ``params`` (model files, overrides, device, precision, resize) and warm it up."""
    from panopticdepth_core.checkpoint.io import CheckpointError
    from panopticdepth_core.checkpoint.onnx_metadata import OnnxBackendError
    from panopticdepth_core.config import ConfigError
    from panopticdepth_core.inference.predictor import Predictor

    start = time.perf_counter()
    source = model_source(params, extra_roots)
    device = resolve_device(params.device)
    if params.cpu_threads:
        import torch

        torch.set_num_threads(params.cpu_threads)  # process-wide: the network's and the post-processing's ops
    try:
        predictor = Predictor(
            source.cfg, source.weights, device=device, precision=params.precision,
            providers=params.onnx_providers if Path(source.weights).suffix == ".onnx" else None,
            threads=params.cpu_threads,
            min_size=None if params.input_min_size < 0 else params.input_min_size,
            max_size=None if params.input_max_size < 0 else params.input_max_size,
        )
        if params.warmup:
            predictor(np.zeros((*WARMUP_SIZE, 3), np.uint8))
    except (ConfigError, CheckpointError, OnnxBackendError) as error:
        raise ModelLoadError(f"cannot load the model {source.weights}: {error}") from error
    except (RuntimeError, OSError, ValueError) as error:  # CUDA missing or out of memory, unreadable files
        raise ModelLoadError(f"cannot load the model {source.weights} on {device}: {type(error).__name__}: "
                             f"{error}") from error
    return LoadedModel(predictor, source.config_source, source.weights, device,
                       float(source.cfg.MODEL.INFERENCE.INST_THRES), time.perf_counter() - start)


def build_pipeline(params: NodeParams, distro: str = "humble",
                   extra_roots: Iterable[str | Path] = ()) -> tuple[FramePipeline, LoadedModel]:
    """The FramePipeline the node (and the bag tool) runs for ``params``."""
    model = load_model(params, extra_roots)
    settings = params.pipeline_settings(distro, model.label_threshold, hardware_id=model.device)
    return FramePipeline(model.predictor, settings), model
