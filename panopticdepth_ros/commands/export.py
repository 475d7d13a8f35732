"""`panopticdepth export`: the network as an ONNX file (config and canonical focal length inside) for onnxruntime
and TensorRT; `predict`, `bag` and the node take the .onnx wherever they take weights."""

from __future__ import annotations

import argparse
import sys


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 512x1024, got {text!r}") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"expected positive HxW, got {text!r}")
    return height, width


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, metavar="FILE.onnx", help="the ONNX file to write")
    parser.add_argument("--config", metavar="YAML", default=None,
                        help="model config (default: the config stored in the weights)")
    parser.add_argument("--weights", metavar="FILE", default=None,
                        help="model weights, .safetensors (default: the shipped model)")
    parser.add_argument("--size", type=_size, default=None, metavar="HxW",
                        help="fixed network input size (after the test-time resize; rounded up to a multiple of "
                             "128); default: dynamic height and width")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE", help="config overrides")


def run(args: argparse.Namespace) -> int:
    from panopticdepth_core.checkpoint.io import CheckpointError
    from panopticdepth_core.checkpoint.onnx_metadata import OnnxBackendError
    from panopticdepth_core.config import ConfigError
    from panopticdepth_core.inference.model_files import ModelFilesError, resolve_model
    from panopticdepth_core.inference.onnx_backend import export_onnx
    from panopticdepth_core.inference.predictor import Predictor

    try:
        model = resolve_model(args.config, args.weights, args.opts)
        if model.weights.suffix == ".onnx":
            raise ModelFilesError(f"--weights {model.weights} is already an ONNX model")
        predictor = Predictor(model.cfg, model.weights, backend="torch")
        path = export_onnx(predictor.model, model.cfg, args.output, size=args.size,
                           canonical_focal=predictor.focal_canonical)
    except ImportError as exc:
        print(f"panopticdepth export: error: needs the onnx package (pip install onnx; the `onnx` extra): {exc}",
              file=sys.stderr)
        return 1
    except (ModelFilesError, CheckpointError, ConfigError, OnnxBackendError, ValueError) as exc:
        print(f"panopticdepth export: error: {exc}", file=sys.stderr)
        return 1
    size = f"{args.size[0]}x{args.size[1]} (fixed)" if args.size else "dynamic"
    print(f"exported {model.weights} ({model.config_source}) -> {path}; input size {size}")
    return 0
