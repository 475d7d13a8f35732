"""Forward latency and peak memory of PanopticDepth (network and post-processing timed separately).

Default: the R-50 Cityscapes-DPS config at 512x1024 and 1024x2048, on the CPU and, when available, on CUDA in
fp32, bf16 and fp16 autocast (``--compile`` adds torch.compile cases). Each case runs in its own subprocess so the
CPU peak (max RSS) belongs to that case. Random weights unless --weights is given (post-processing time depends on
how many things are detected, so use a trained checkpoint for representative post-processing numbers). Prints a
table; asserts nothing.

    python benchmarks/forward.py [--config CFG] [--weights W.safetensors] [--sizes 512x1024 1024x2048]
                                 [--iters 3] [--warmup 1] [--devices cpu cuda] [--threads N] [--compile]

``--compare-backends``: torch against onnxruntime (every execution provider this onnxruntime has: CPU, and CUDA /
TensorRT on a GPU machine) through the same ``Predictor`` (pre- and post-processing shared), for the shipped
small model and the R-50 Cityscapes-DPS config (or ``--config/--weights``), interleaved in one process, with the
agreement of their outputs (panoptic ids, depth). The ONNX files are exported to a temporary folder first
(fixed input size). Needs onnx and onnxruntime (the ``onnx`` extra).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "config" / "cityscapes_dps" / "PanopticDepth-R50-cityscapes-dps.yaml"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_case(args: dict) -> dict:
    """One (device, precision, size) case; returns timings in ms and the peak memory in MiB."""
    from panopticdepth_core.checkpoint.io import load_model_weights
    from panopticdepth_core.config import load_config
    from panopticdepth_core.modeling.build import build_model

    if args["threads"]:
        torch.set_num_threads(args["threads"])
    device = torch.device(args["device"])
    cfg = load_config(args["config"], ["MODEL.DEVICE", args["device"]])
    torch.manual_seed(0)
    model = build_model(cfg, load_pretrained=False).eval()
    if args["weights"]:
        load_model_weights(model, args["weights"])
    height, width = args["size"]
    image = (torch.rand(3, height, width) * 255).to(torch.uint8)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args["precision"].split("+")[0])
    autocast = torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
    forward = model.predict_heads
    if args.get("compile"):
        compiled = torch.compile(model.forward_features)

        def forward(images):
            batch, sizes, padded = model.preprocess(images)
            return compiled(batch), sizes, padded
    try:
        from panopticdepth_core.modeling.postprocess import postprocess
    except ImportError:
        postprocess = None
    net_ms, post_ms = [], []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(args["warmup"] + args["iters"]):
        with torch.inference_mode(), autocast:
            _sync(device)
            t0 = time.perf_counter()
            head, sizes, _ = forward([image.to(device)])
            _sync(device)
            t1 = time.perf_counter()
            if postprocess is not None:
                postprocess(head, model.project_thing, model.project_stuff, sizes, sizes, cfg)
                _sync(device)
            t2 = time.perf_counter()
        if i >= args["warmup"]:
            net_ms.append((t1 - t0) * 1e3)
            post_ms.append((t2 - t1) * 1e3)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"net_ms": statistics.median(net_ms), "net_p99_ms": _p99(net_ms),
            "post_ms": statistics.median(post_ms) if postprocess else None, "peak_mib": peak}


def _p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank); with fewer than 100 runs, the slowest run."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def _child(args: dict, queue: mp.Queue) -> None:
    try:
        queue.put(run_case(args))
    except Exception as exc:  # noqa: BLE001 - report any failure in the table instead of dying
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--weights", default="")
    parser.add_argument("--sizes", nargs="+", default=["512x1024", "1024x2048"])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd networks (CUDA cases)")
    parser.add_argument("--compare-backends", action="store_true",
                        help="torch vs onnxruntime (all its execution providers) on the shipped and the R-50 model")
    args = parser.parse_args()
    if args.compare_backends:
        from compare_backends import compare_backends

        return compare_backends(args)

    cases = []
    for dev in args.devices:
        if dev.startswith("cuda") and not torch.cuda.is_available():
            print(f"# {dev}: not available, skipped")
            continue
        for precision in (["fp32"] if dev == "cpu" else ["fp32", "bf16", "fp16"]):
            for compiled in ([False, True] if args.compile and dev != "cpu" else [False]):
                for size in args.sizes:
                    h, w = (int(v) for v in size.lower().split("x"))
                    cases.append({"device": dev, "precision": precision + ("+compile" if compiled else ""),
                                  "size": (h, w), "config": args.config, "weights": args.weights,
                                  "iters": args.iters, "warmup": args.warmup, "threads": args.threads,
                                  "compile": compiled})
    print(f"# config {args.config}; torch {torch.__version__}; CPU threads {args.threads or torch.get_num_threads()};"
          f" {args.warmup} warm-up + {args.iters} timed iterations, median; weights: {args.weights or 'random'}")
    header = (f"{'device':8} {'precision':17} {'size':>10} {'network ms':>11} {'net p99 ms':>11} {'postproc ms':>12} "
              f"{'peak MiB':>9}")
    print(header)
    print("-" * len(header))
    ctx = mp.get_context("spawn")
    results = []
    for case in cases:
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(case, queue))
        proc.start()
        res = queue.get()
        proc.join()
        size = f"{case['size'][0]}x{case['size'][1]}"
        if "error" in res:
            print(f"{case['device']:8} {case['precision']:17} {size:>10}  failed: {res['error']}")
        else:
            post = f"{res['post_ms']:12.1f}" if res["post_ms"] is not None else f"{'n/a':>12}"
            print(f"{case['device']:8} {case['precision']:17} {size:>10} {res['net_ms']:11.1f} "
                  f"{res['net_p99_ms']:11.1f} {post} {res['peak_mib']:9.0f}")
        sys.stdout.flush()
        results.append({**case, **res})
    print("# CPU peak = max RSS of the case's process (model + activations); CUDA peak = max allocated.")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
