"""Network speed at equal outputs: forward variants of one seeded model, timed interleaved in one process.

Variants (``--variants``): ``torchvision`` (today's reference before this change: torchvision's
``deform_conv2d`` in every deformable layer, the kernel the released PanopticDepth also uses), ``standard`` (the
standard-operator deformable conv, ``modeling/deform.py``; the default at inference), ``standard+cl`` (plus
channels_last tensors), ``standard+fused`` (plus batch norms folded into the convs before them), ``bf16``
(standard under CPU bf16 autocast). Each iteration runs every variant once, in turn, so a busy machine slows all
alike; the table gives medians. Every variant's panoptic ids and depth are compared with the first variant's
(fraction of equal pixels, largest depth difference in metres).

``--profile`` prints torch.profiler's table (self CPU time per op) for the first and the second variant.

    python benchmarks/network_speed.py [--config CFG] [--weights W] [--size 512x1024] [--iters 3]
        [--variants torchvision standard standard+cl standard+fused] [--threads N] [--profile] [--seed 0]
Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "config" / "cityscapes_dps" / "PanopticDepth-R50-cityscapes-dps.yaml"
VARIANTS = ("torchvision", "standard", "standard+cl", "standard+fused", "bf16")


def build(config: str, weights: str, seed: int):
    """The model: ``weights`` if given, else seeded random weights with calibrated batch norms (seeded_model.py)."""
    from seeded_model import calibrated_model

    from panopticdepth_core.checkpoint.io import load_model_weights

    cfg, model = calibrated_model(config, seed)
    if weights:
        load_model_weights(model, weights)
    return cfg, model


def prepare(model, variant: str):
    from bn_folding import fuse_batch_norms

    if variant == "standard+fused":
        return fuse_batch_norms(copy.deepcopy(model))
    if variant == "standard+cl":
        return copy.deepcopy(model).to(memory_format=torch.channels_last)
    return model


def run(cfg, model, variant: str, image: torch.Tensor):
    """(head outputs, seconds, panoptic results) of one forward + post-processing."""
    from panopticdepth_core.modeling.deform import deform_implementation
    from panopticdepth_core.modeling.postprocess import postprocess

    impl = "torchvision" if variant == "torchvision" else "standard"
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "bf16")
    with torch.inference_mode(), deform_implementation(impl), autocast:
        t0 = time.perf_counter()
        if variant == "standard+cl":
            batch, sizes, _ = model.preprocess([image])
            head = model.forward_features(batch.contiguous(memory_format=torch.channels_last))
        else:
            head, sizes, _ = model.predict_heads([image])
        t1 = time.perf_counter()
    head = _float(head)
    with torch.inference_mode():
        t2 = time.perf_counter()
        results = postprocess(head, model.project_thing, model.project_stuff, sizes, sizes, cfg)
        t3 = time.perf_counter()
    return t1 - t0, t3 - t2, results[0], head


def _float(head):
    from panopticdepth_core.modeling.types import HeadOutputs

    def conv(t):
        if t is None:
            return None
        return [x.float().contiguous() for x in t] if isinstance(t, list) else t.float().contiguous()

    return HeadOutputs(**{k: conv(getattr(head, k)) for k in head.__dataclass_fields__})


def head_difference(reference, head) -> str:
    """Largest difference over every head output, relative to that output's largest magnitude."""
    worst = 0.0
    for name in reference.__dataclass_fields__:
        a, b = getattr(reference, name), getattr(head, name)
        for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            if x is not None:
                worst = max(worst, ((x - y).abs().max() / x.abs().max().clamp(min=1e-6)).item())
    return f"heads max rel diff {worst:.1e}"


def compare(reference, result) -> str:
    equal = (reference.panoptic == result.panoptic).float().mean().item()
    text = f"panoptic equal {100 * equal:.4f} %, segments {len(result.segments)}"
    if reference.depth is not None:
        diff = (reference.depth - result.depth).abs()
        text += f", depth max |diff| {diff.max().item():.2e} m (mean {diff.mean().item():.1e})"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--weights", default="")
    parser.add_argument("--size", default="512x1024")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS[:4]), choices=VARIANTS)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.lower().split("x"))
    cfg, model = build(args.config, args.weights, args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    image = (torch.rand(3, height, width, generator=generator) * 255).to(torch.uint8)
    models = {v: prepare(model, v) for v in args.variants}
    print(f"# {args.config} at {height}x{width}; weights {args.weights or f'random (seed {args.seed}, calibrated)'}; "
          f"torch {torch.__version__}; threads {torch.get_num_threads()}; {args.iters} interleaved iterations "
          "(+1 warm-up), medians")
    times = {v: ([], []) for v in args.variants}
    results = {}
    for i in range(args.iters + 1):
        for v in args.variants:
            net, post, result, head = run(cfg, models[v], v, image)
            if i > 0:
                times[v][0].append(net)
                times[v][1].append(post)
            results[v] = result, head
    first = args.variants[0]
    base = statistics.median(times[first][0])
    for v in args.variants:
        net = statistics.median(times[v][0])
        print(f"{v:16} forward {net:7.2f} s ({net / base:4.2f}x {first})  post-processing "
              f"{statistics.median(times[v][1]):6.3f} s  runs {np.round(times[v][0], 2).tolist()}  "
              f"{compare(results[first][0], results[v][0])}, {head_difference(results[first][1], results[v][1])}")
    if args.profile:
        for v in args.variants[:2]:
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                run(cfg, models[v], v, image)
            print(f"\n## torch.profiler, variant {v} (forward + post-processing), top ops by self CPU time")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
