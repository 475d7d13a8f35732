"""The metadata of our ``.onnx`` files: the same keys as our ``.safetensors`` files (``format``, ``config``,
``canonical_focal``) plus the export's shape facts, read through onnxruntime (what a robot has installed; the
``onnx`` package is needed only to write them).
"""

from __future__ import annotations

import functools
from pathlib import Path

FORMAT_NAME = "panopticdepth"


class OnnxBackendError(RuntimeError):
    """onnxruntime is missing, a provider is unavailable, or an .onnx file is not one of ours; says which."""


def onnxruntime_module():
    """``import onnxruntime``, or OnnxBackendError saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise OnnxBackendError("running an .onnx model needs onnxruntime: pip install onnxruntime (CPU) or "
                               "onnxruntime-gpu (CUDA / TensorRT); it is the `onnx` extra of this package") from exc
    return onnxruntime


@functools.lru_cache(maxsize=8)
def _metadata_cached(path: str, mtime: float, size: int) -> dict[str, str]:
    ort = onnxruntime_module()
    try:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # metadata only: load fast
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise OnnxBackendError(f"{path}: not a readable ONNX model: {exc}") from exc
    return dict(session.get_modelmeta().custom_metadata_map)


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of one of our ``.onnx`` files (read through onnxruntime, cached per file version)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise OnnxBackendError(f"ONNX model not found: {path}")
    stat = path.stat()
    meta = _metadata_cached(str(path), stat.st_mtime, stat.st_size)
    if meta.get("format") != FORMAT_NAME:
        raise OnnxBackendError(f"{path}: not a PanopticDepth ONNX export (no format={FORMAT_NAME} metadata); "
                               "write it with `panopticdepth export`")
    return meta


def write_onnx_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Replace the metadata of the ONNX file at ``path`` (needs the ``onnx`` package, an export-time need only)."""
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
