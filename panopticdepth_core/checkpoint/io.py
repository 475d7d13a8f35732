"""Save and load model weights safely: safetensors files with the config YAML in their metadata.

Our checkpoints are ``.safetensors`` files holding the model's state dict; the metadata carries
``format=panopticdepth``, the config the weights belong to (``config`` = YAML text, readable back with
:func:`checkpoint_config`), the model's canonical focal length (``canonical_focal``, pixels at the network input,
the camera its depth is expressed for: MODEL.CANONICAL_FOCAL, readable with :func:`checkpoint_canonical_focal`
without parsing the config) and any extra strings the caller adds (e.g. the training iteration). Plain PyTorch
``.pth`` / ``.pt`` state dicts are accepted on load, read with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..config import CfgNode, get_default_config
from ..config.loading import validate_config

FORMAT_NAME = "panopticdepth"
#: Metadata key of the canonical focal length (MODEL.CANONICAL_FOCAL), a decimal string in pixels.
CANONICAL_FOCAL_KEY = "canonical_focal"
_D2_PREFIXES = ("backbone.bottom_up.", "backbone.fpn_lateral", "position_head.position_head.")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or does not fit the model; the message says which and why."""


@dataclass
class LoadReport:
    """What :func:`load_model_weights` did (with ``strict=False`` the lists may be non-empty)."""

    path: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)


def save_checkpoint(model: nn.Module | Mapping[str, Tensor], path: str | Path, cfg: CfgNode | None = None,
                    metadata: Mapping[str, str] | None = None) -> Path:
    """Write the model's weights (or a state dict) to ``path`` (.safetensors), with ``cfg`` as YAML metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: checkpoints are written as .safetensors; use that suffix")
    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    tensors = {}
    storages: set[int] = set()
    for name, value in state.items():
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{path}: state entry {name!r} is a {type(value).__name__}, not a tensor")
        t = value.detach().to("cpu")
        ptr = t.untyped_storage().data_ptr() if t.numel() else 0
        if ptr and ptr in storages:  # safetensors refuses shared storage; store an independent copy
            t = t.clone()
            ptr = t.untyped_storage().data_ptr()
        storages.add(ptr)
        tensors[name] = t.contiguous()
    meta = {"format": FORMAT_NAME}
    if cfg is not None:
        meta["config"] = cfg.dump()
        if cfg.MODEL.CANONICAL_FOCAL > 0:
            meta[CANONICAL_FOCAL_KEY] = repr(float(cfg.MODEL.CANONICAL_FOCAL))
    for k, v in (metadata or {}).items():
        if not isinstance(v, str):
            raise CheckpointError(f"metadata value for {k!r} must be a string, got {type(v).__name__}")
        if k == CANONICAL_FOCAL_KEY and k in meta and _focal_value(v, path) != float(meta[k]):
            raise CheckpointError(f"{path}: canonical_focal {v} disagrees with the config's MODEL.CANONICAL_FOCAL "
                                  f"{meta[k]}")
        meta[k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)  # never leave a half-written checkpoint under the final name
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The state dict and metadata of a .safetensors file, or the state dict of a .pth/.pt (empty metadata)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = dict(f.metadata() or {})
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a damaged file
            raise CheckpointError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from exc
        return state, meta
    if path.suffix in (".pth", ".pt", ".ckpt", ".bin"):
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(
                f"{path}: cannot be read with torch.load(weights_only=True) ({type(exc).__name__}: {exc}). "
                f"Released Detectron2 checkpoints must first go through `panopticdepth convert`.") from exc
        for wrapper in ("model", "state_dict"):
            if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
        if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
            raise CheckpointError(f"{path}: expected a state dict (names -> tensors), found {_describe(obj)}")
        return dict(obj), {}
    raise CheckpointError(f"{path}: unknown checkpoint type {path.suffix!r}; expected .safetensors, .pth or .pt")


def checkpoint_config(path: str | Path) -> CfgNode | None:
    """The (frozen, validated) config stored in a checkpoint's metadata, or None if it has none."""
    if Path(path).suffix not in (".safetensors", ".onnx"):
        read_checkpoint(path)  # a .pth is still checked for existence and readability
        return None
    meta = _read_metadata(path)
    text = meta.get("config")
    if not text:
        return None
    import yaml

    cfg = get_default_config()
    try:
        cfg.merge_from_dict(yaml.safe_load(text) or {}, source=f"{path} (embedded config)")
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{path}: embedded config is not valid YAML: {exc}") from exc
    validate_config(cfg, source=f"{path} (embedded config)")
    return cfg.freeze()


def _focal_value(text: str, path: str | Path) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise CheckpointError(f"{path}: metadata {CANONICAL_FOCAL_KEY!r} must be a focal length in pixels, "
                              f"got {text!r}")
    return value


def checkpoint_canonical_focal(path: str | Path) -> float | None:
    """The canonical focal length (pixels at the network input) a weights file records, or None.

    Read from the ``canonical_focal`` metadata, else from MODEL.CANONICAL_FOCAL of the embedded config; plain
    ``.pth`` state dicts record none.
    """
    if Path(path).suffix not in (".safetensors", ".onnx"):
        return None
    meta = _read_metadata(path)
    if CANONICAL_FOCAL_KEY in meta:
        return _focal_value(meta[CANONICAL_FOCAL_KEY], path)
    cfg = checkpoint_config(path) if meta.get("config") else None
    if cfg is not None and cfg.MODEL.CANONICAL_FOCAL > 0:
        return float(cfg.MODEL.CANONICAL_FOCAL)
    return None


def _read_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    if Path(path).suffix == ".onnx":  # `panopticdepth export` writes the same keys into the ONNX metadata
        from .onnx_metadata import OnnxBackendError, read_onnx_metadata

        try:
            return read_onnx_metadata(path)
        except OnnxBackendError as exc:
            raise CheckpointError(str(exc)) from exc

    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from exc


def load_model_weights(model: nn.Module, path: str | Path, strict: bool = True) -> LoadReport:
    """Load ``path`` into ``model``; with ``strict`` any missing, unexpected or mis-shaped key is an error."""
    state, _ = read_checkpoint(path)
    own = model.state_dict()
    report = LoadReport(path=str(path))
    report.missing = [k for k in own if k not in state]
    report.unexpected = [k for k in state if k not in own]
    report.mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                         for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = report.mismatched or (strict and (report.missing or report.unexpected))
    if problems:
        hint = ""
        if any(k.startswith(_D2_PREFIXES) for k in report.unexpected):
            hint = " It looks like a released Detectron2 checkpoint: convert it with `panopticdepth convert` first."
        elif report.missing or report.unexpected:
            hint = " Was it saved from a model with a different config (MODEL.DEPTH_ON, RESNETS.DEPTH, NORM, dims)?"
        raise CheckpointError(
            f"{path} does not fit the model: missing {_some(report.missing)}; unexpected {_some(report.unexpected)}; "
            f"different shape {_some(report.mismatched)}.{hint}")
    usable = {k: v for k, v in state.items() if k in own}
    model.load_state_dict(usable, strict=False)
    report.loaded = len(usable)
    return report


def _some(items: list[str], n: int = 5) -> str:
    if not items:
        return "0"
    more = f", ... ({len(items) - n} more)" if len(items) > n else ""
    return f"{len(items)} ({', '.join(items[:n])}{more})"


def _describe(obj: object) -> str:
    if isinstance(obj, dict):
        odd = [k for k, v in obj.items() if not isinstance(v, Tensor)][:3]
        return f"a dict with non-tensor entries {odd}"
    return f"a {type(obj).__name__}"


#: Storage types of :func:`export_weights`.
EXPORT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def export_weights(source: str | Path, target: str | Path, dtype: str = "fp16",
                   config: str | Path | None = None) -> Path:
    """Write ``source``'s model weights to ``target`` (.safetensors) with floating tensors cast to ``dtype``.

    Why: a ResNet-18 PanopticDepth holds ~12 M parameters, 46 MB in float32; float16 halves that with no
    measurable change of the scores (loading casts back to the model's dtype). Integer buffers (BN batch counters)
    stay as they are. ``source``: a training checkpoint (``model_*.pth``) or a ``.safetensors`` file; the config
    stored with the result is ``config`` if given, else the source's.
    """
    from ..config import load_config

    if dtype not in EXPORT_DTYPES:
        raise CheckpointError(f"dtype must be one of {sorted(EXPORT_DTYPES)}, got {dtype!r}")
    state, _ = read_checkpoint(source)
    cast = {k: v.to(EXPORT_DTYPES[dtype]) if v.is_floating_point() else v for k, v in state.items()}
    cfg = load_config(config) if config else (checkpoint_config(source) if Path(source).suffix == ".safetensors"
                                             else None)
    metadata = {"dtype": dtype, "source": Path(source).name}
    stored = checkpoint_canonical_focal(source)
    if stored is not None:  # kept even when the config given has none; a different one is refused
        metadata[CANONICAL_FOCAL_KEY] = repr(stored)
    return save_checkpoint(cast, target, cfg, metadata=metadata)
