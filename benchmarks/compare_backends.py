"""torch vs onnxruntime through the same Predictor: ``python benchmarks/forward.py --compare-backends``.

For each model (the shipped small model, and the R-50 Cityscapes-DPS config with seeded random weights, or
``--config/--weights``) and each size: export an ONNX file at that fixed size into a temporary folder, then run
the torch Predictor and one onnxruntime Predictor per available execution provider, in turn, ``--iters`` times
after a warm-up; print median network and post-processing times and how the outputs agree with torch's (panoptic
ids equal, largest relative depth difference). Asserts nothing.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
R50 = REPO / "config" / "cityscapes_dps" / "PanopticDepth-R50-cityscapes-dps.yaml"


def _models(args, folder: Path) -> list[tuple[str, Path]]:
    """(label, weights file with its config embedded) of each model to compare."""
    from panopticdepth_core.checkpoint.io import save_checkpoint
    from panopticdepth_core.inference.model_files import default_model_files

    if args.weights:
        return [(Path(args.weights).name, Path(args.weights))]
    models = []
    try:
        _, shipped = default_model_files()
        models.append(("shipped small", shipped))
    except FileNotFoundError as exc:
        print(f"# shipped model skipped: {exc}")
    from seeded_model import calibrated_model

    cfg, model = calibrated_model(args.config, seed=0)
    r50 = save_checkpoint(model, folder / "r50_seed0.safetensors", cfg)
    models.append((f"{Path(args.config).stem} (random, seed 0, calibrated)", r50))
    return models


def _agreement(reference, prediction) -> str:
    equal = (reference.panoptic == prediction.panoptic).mean()
    text = f"ids equal {100 * equal:8.4f} %"
    if reference.depth is not None:
        scale = np.maximum(np.abs(reference.depth), 1e-6)
        text += f", depth max rel diff {(np.abs(prediction.depth - reference.depth) / scale).max():.1e}"
    return text


def compare_backends(args) -> int:
    from panopticdepth_core.checkpoint.onnx_metadata import onnxruntime_module
    from panopticdepth_core.inference.model_files import resolve_model
    from panopticdepth_core.inference.onnx_backend import AUTO_PROVIDERS, export_onnx
    from panopticdepth_core.inference.predictor import Predictor

    if args.threads:
        torch.set_num_threads(args.threads)
    ort = onnxruntime_module()
    providers = [p for p in AUTO_PROVIDERS if p in ort.get_available_providers()]
    print(f"# torch {torch.__version__} ({torch.get_num_threads()} threads) vs onnxruntime {ort.__version__} "
          f"({', '.join(providers)}); {args.warmup} warm-up + {args.iters} interleaved runs, medians")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, weights in _models(args, folder):
            model = resolve_model(None, weights)
            for size in args.sizes:
                height, width = (int(v) for v in size.lower().split("x"))
                reference = Predictor(model.cfg, weights, min_size=0)  # native resolution: the size is the input
                onnx_file = export_onnx(reference.model, model.cfg, folder / f"model_{height}x{width}.onnx",
                                        size=(height, width), canonical_focal=reference.focal_canonical)
                runners = {"torch": reference}
                for provider in providers:
                    runners[f"onnxruntime {provider.replace('ExecutionProvider', '')}"] = Predictor(
                        model.cfg, onnx_file, min_size=0, providers=provider)
                image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
                times = {name: ([], []) for name in runners}
                outputs = {}
                for i in range(args.warmup + args.iters):
                    for name, predictor in runners.items():
                        prediction = predictor(image)
                        outputs[name] = prediction
                        if i >= args.warmup:
                            times[name][0].append(prediction.timings["model"])
                            times[name][1].append(prediction.timings["postprocess"])
                print(f"\n{label} at {height}x{width}")
                for name in runners:
                    net, post = statistics.median(times[name][0]), statistics.median(times[name][1])
                    print(f"  {name:28} network {1e3 * net:9.1f} ms  post-processing {1e3 * post:8.1f} ms  "
                          f"{_agreement(outputs['torch'], outputs[name])}, "
                          f"segments {len(outputs[name].segments)}")
    return 0
