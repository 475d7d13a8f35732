"""The network as an ONNX file, and ONNX Runtime as a second backend of the ``Predictor``.

What the file holds: the network from the normalised, padded image batch (``PanopticDepth.preprocess``) to the
head outputs the post-processing reads (``HeadOutputs``, one output per pyramid level and map, see
``output_names``) plus the two kernel projections (small constant outputs), so pre- and post-processing stay the
torch code every backend shares. Metadata: ``format=panopticdepth``, the config YAML (``config``), the canonical
focal length (``canonical_focal``), the number of levels and whether depth is on: a ``.onnx`` file is a complete
model wherever weights are accepted, like our ``.safetensors`` files.

Why opset 17 and no ``DeformConv`` op: ROS 2 Humble robots get onnxruntime 1.12, which has neither opset 19 nor
DeformConv; the deformable convs export in their standard-operator form (``modeling/deform.py``: Gather,
MatMul, elementwise ops), which every onnxruntime and TensorRT runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint.onnx_metadata import (
    FORMAT_NAME,
    OnnxBackendError,
    onnxruntime_module,
    read_onnx_metadata,
    write_onnx_metadata,
)
from ..config import CfgNode
from ..modeling.panoptic_depth import Size, normalize_and_pad
from ..modeling.types import HeadOutputs

OPSET = 17
#: Input size the dynamic-size export traces at (small: tracing time grows with it; two non-equal sides).
TRACE_SIZE = (128, 256)
INPUT_NAME = "image"
#: Execution providers tried in this order by ``providers="auto"`` (those this onnxruntime build has).
AUTO_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_PROJECTIONS = ("thing_projection.weight", "thing_projection.bias", "stuff_projection.weight", "stuff_projection.bias")


def output_names(levels: int, depth_on: bool) -> list[str]:
    """The exported outputs in order: per-level maps ``<field>.<level>``, the stride-4 maps, the projections."""
    names = [f"{field}.{i}" for field in ("center_logits", "region_logits", "kernel_features") for i in range(levels)]
    names.append("mask_embedding")
    if depth_on:
        names += [f"depth_kernel_params.{i}" for i in range(levels)] + ["depth_embedding"]
    return names + list(_PROJECTIONS)


class _ExportedNetwork(nn.Module):
    """``forward(batch)`` -> the flat tuple of ``output_names``: what the ONNX graph computes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Tensor) -> tuple[Tensor, ...]:
        head = self.model.forward_features(batch)
        outputs = [*head.center_logits, *head.region_logits, *head.kernel_features, head.mask_embedding]
        if head.depth_kernel_params is not None:
            outputs += [*head.depth_kernel_params, head.depth_embedding]
        for projection in (self.model.thing_projection, self.model.stuff_projection):
            # "+ 0 * batch.sum()" keeps them graph outputs (ONNX outputs cannot be bare initializers everywhere)
            zero = batch.sum() * 0
            outputs += [projection.proj.weight.flatten(1) + zero, projection.proj.bias + zero]  # (E, C), (E,)
        return tuple(outputs)


def export_onnx(model: nn.Module, cfg: CfgNode, path: str | Path, size: Size | None = None,
                canonical_focal: float | None = None, opset: int = OPSET) -> Path:
    """Write ``model`` (a PanopticDepth, any weights) to ``path`` as ONNX.

    ``size``: fixed network input (H, W), rounded up to the size divisibility; None: height and width (and the
    batch) are dynamic.
    """
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"{path}: ONNX files are written with the .onnx suffix")
    model = model.eval()
    div = model.size_divisibility
    if size is None:
        trace_size = TRACE_SIZE  # any size works: the trace records shapes symbolically
    else:
        trace_size = size
    padded = tuple(-(-int(v) // div) * div for v in trace_size)
    device = model.pixel_mean.device
    batch = torch.zeros(1, 3, *padded, device=device)
    levels = len(model.in_features)
    names = output_names(levels, model.depth_on)
    dynamic = None
    if size is None:
        dynamic = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
        for name in names:
            if name not in _PROJECTIONS:
                dynamic[name] = {0: "batch", 2: f"{name}_height", 3: f"{name}_width"}
    path.parent.mkdir(parents=True, exist_ok=True)
    # The wrapper in eval mode: the exporter restores the wrapper's mode afterwards, recursively, and a new module is
    # in training mode, which would leave ``model``'s batch norms training.
    with torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(_ExportedNetwork(model).eval(), (batch,), str(path), input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True, dynamo=False)
    write_onnx_metadata(path, {
        "format": FORMAT_NAME, "config": cfg.dump(), "levels": str(levels), "depth_on": str(bool(model.depth_on)),
        "size_divisibility": str(div), "fixed_size": f"{padded[0]}x{padded[1]}" if size is not None else "",
        **({"canonical_focal": repr(float(canonical_focal))} if canonical_focal else {}),
    })
    return path


def choose_providers(providers: str | Sequence[str] | None) -> list[str]:
    """``auto``/None: the available ones of AUTO_PROVIDERS; else the names given (a comma-separated string or a
    list; ``cpu``, ``cuda``, ``tensorrt`` are short for the ExecutionProvider names), each of which must exist."""
    available = onnxruntime_module().get_available_providers()
    if providers is None or providers == "auto" or providers == ["auto"]:
        return [p for p in AUTO_PROVIDERS if p in available]
    if isinstance(providers, str):
        providers = [p.strip() for p in providers.split(",") if p.strip()]
    short = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
    chosen = [short.get(p.lower(), p) for p in providers]
    missing = [p for p in chosen if p not in available]
    if missing or not chosen:
        raise OnnxBackendError(f"onnxruntime execution providers {missing or providers} are not available; this "
                               f"onnxruntime has {available}")
    return chosen


class OnnxNetwork:
    """The network through an onnxruntime session, with the torch model's interface the Predictor uses
    (``predict_heads``, ``project_thing``, ``project_stuff``)."""

    def __init__(self, path: str | Path, cfg: CfgNode, providers: str | Sequence[str] | None = None,
                 device: torch.device | str = "cpu", threads: int = 0) -> None:
        ort = onnxruntime_module()
        self.path = Path(path)
        meta = read_onnx_metadata(self.path)
        self.levels, self.depth_on = int(meta["levels"]), meta["depth_on"] == "True"
        if self.depth_on != bool(cfg.MODEL.DEPTH_ON):
            raise OnnxBackendError(f"{path} was exported with depth_on={self.depth_on} but the config has "
                                   f"MODEL.DEPTH_ON {cfg.MODEL.DEPTH_ON}")
        self.size_divisibility = int(meta["size_divisibility"])
        fixed = meta.get("fixed_size", "")
        self.fixed_size = tuple(int(v) for v in fixed.split("x")) if fixed else None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # onnxruntime's idle threads spin after each run by default, taking the cores the (torch) post-processing
        # and the rest of the frame need right then.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.providers = choose_providers(providers)
        self.session = ort.InferenceSession(str(self.path), options, providers=self.providers)
        self.names = output_names(self.levels, self.depth_on)
        self.device = torch.device(device)
        self.input_format = cfg.INPUT.FORMAT
        self.pixel_mean = torch.tensor(cfg.MODEL.PIXEL_MEAN, dtype=torch.float32).view(3, 1, 1)
        self.pixel_std = torch.tensor(cfg.MODEL.PIXEL_STD, dtype=torch.float32).view(3, 1, 1)
        self._projections: dict[str, Tensor] = {}

    def eval(self) -> OnnxNetwork:
        return self

    def predict_heads(self, images: Sequence[Tensor]) -> tuple[HeadOutputs, list[Size], Size]:
        """Same contract as ``PanopticDepth.predict_heads``: (HeadOutputs, image sizes, padded size)."""
        batch, sizes, padded = normalize_and_pad(images, self.pixel_mean, self.pixel_std, self.input_format,
                                                 self.size_divisibility, torch.device("cpu"), self.fixed_size)
        values = self.session.run(self.names, {INPUT_NAME: batch.numpy()})
        out = {name: torch.from_numpy(np.asarray(v)).to(self.device) for name, v in zip(self.names, values)}
        self._projections = {name: out[name] for name in _PROJECTIONS}

        def levels(field: str) -> list[Tensor]:
            return [out[f"{field}.{i}"] for i in range(self.levels)]

        head = HeadOutputs(
            center_logits=levels("center_logits"), region_logits=levels("region_logits"),
            kernel_features=levels("kernel_features"), mask_embedding=out["mask_embedding"],
            depth_kernel_params=levels("depth_kernel_params") if self.depth_on else None,
            depth_embedding=out["depth_embedding"] if self.depth_on else None,
        )
        return head, sizes, padded

    def project_thing(self, kernels: Tensor) -> Tensor:
        """Thing kernels (..., C_kernel) -> (..., E), with the weights the last run returned."""
        return F.linear(kernels, self._projections["thing_projection.weight"],
                        self._projections["thing_projection.bias"])

    def project_stuff(self, kernels: Tensor) -> Tensor:
        return F.linear(kernels, self._projections["stuff_projection.weight"],
                        self._projections["stuff_projection.bias"])
