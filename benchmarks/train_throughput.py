"""Training throughput (images/s) and peak memory per device of full training steps (forward, losses, backward,
clipping, optimiser step), as training/loop.py runs them.

Default cases: the small synthetic config on the CPU at its own size (128x256, its IMS_PER_BATCH), and, when CUDA
is present, the R-50 Cityscapes-DPS config at 1024x2048 in fp32 and bf16 autocast. Each case runs in its own
subprocess so the CPU peak (max RSS) belongs to that case. Inputs are rendered synthetic street scenes resized to
the case's size, so the targets hold realistic numbers of things and stuff. Prints a table; asserts nothing.

    python benchmarks/train_throughput.py [--cases cpu-small cuda-r50] [--batch N] [--iters 5] [--warmup 2]
                                          [--threads N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CASES = {
    # name: (config, device, precision, (height, width), default batch per device)
    "cpu-small": (REPO / "config/synthetic/PanopticDepth-R18-synthetic-small.yaml", "cpu", "fp32", (128, 256), 0),
    "cuda-r50": (REPO / "config/cityscapes_dps/PanopticDepth-R50-cityscapes-dps.yaml", "cuda", "fp32",
                 (1024, 2048), 1),
    "cuda-r50-bf16": (REPO / "config/cityscapes_dps/PanopticDepth-R50-cityscapes-dps.yaml", "cuda", "bf16",
                      (1024, 2048), 1),
}


def _batch(size: tuple[int, int], count: int, device: torch.device) -> tuple[list, list]:
    """``count`` synthetic scenes (rendered at 256x512, resized to ``size``) as images and targets."""
    import torch.nn.functional as F

    from panopticdepth_core.data.synthetic import render_scene
    from panopticdepth_core.modeling.types import InstanceTarget

    images, targets = [], []
    for index in range(count):
        sample = render_scene(index, (256, 512), focal=320.0)
        image = torch.from_numpy(sample.image).permute(2, 0, 1)[None].float()  # (1, 3, 256, 512)
        image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)[0]
        labels = torch.stack([torch.from_numpy(sample.semantic).float(), torch.from_numpy(sample.instance).float(),
                              torch.from_numpy(sample.depth)])[None]  # (1, 3, 256, 512)
        labels = F.interpolate(labels, size=size, mode="nearest")[0]
        scale = 256 / size[0]  # an enlarged image looks like a closer scene
        images.append(image.round().clamp(0, 255).to(torch.uint8).to(device))
        targets.append(InstanceTarget(labels[0].long().to(device), labels[1].long().to(device),
                                      (labels[2] * scale).to(device)))
    return images, targets


def run_case(args: dict) -> dict:
    """Time ``iters`` training steps after ``warmup``; images/s and the peak memory of this process/device."""
    from panopticdepth_core.config import load_config
    from panopticdepth_core.engine.solver import build_optimizer, clip_gradients
    from panopticdepth_core.modeling.build import build_model

    if args["threads"]:
        torch.set_num_threads(args["threads"])
    device = torch.device(args["device"])
    cfg = load_config(args["config"], ["MODEL.DEVICE", args["device"], "MODEL.RESNETS.NORM", "BN"])
    torch.manual_seed(0)
    model = build_model(cfg, load_pretrained=False).to(device).train()
    optimizer = build_optimizer(model, cfg)
    batch = args["batch"] or int(cfg.SOLVER.IMS_PER_BATCH)
    images, targets = _batch(tuple(args["size"]), batch, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args["precision"] == "bf16")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args["warmup"] + args["iters"]):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with autocast:
            losses = model(images, targets)
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        clip_gradients(model, cfg)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    measured = times[args["warmup"]:]
    seconds = sum(measured) / len(measured)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
        name = torch.cuda.get_device_name(device)
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        name = f"CPU, {torch.get_num_threads()} threads"
    return {"batch": batch, "step_s": seconds, "images_per_s": batch / seconds, "peak_mb": peak_mb, "device": name}


def _child(args: dict, queue) -> None:
    try:
        queue.put(run_case(args))
    except Exception as exc:  # noqa: BLE001 - reported in the table
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=None,
                        help="default: cpu-small, plus cuda-r50 and cuda-r50-bf16 when CUDA is available")
    parser.add_argument("--batch", type=int, default=0, help="images per step and device (0: the case's default)")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (0: torch's default)")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args(argv)
    cases = args.cases or ["cpu-small"] + (["cuda-r50", "cuda-r50-bf16"] if torch.cuda.is_available() else [])
    ctx = mp.get_context("spawn")
    rows = []
    for name in cases:
        config, device, precision, size, batch = CASES[name]
        if device == "cuda" and not torch.cuda.is_available():
            rows.append({"case": name, "error": "CUDA not available"})
            print(_row(rows[-1]), flush=True)
            continue
        job = {"config": str(config), "device": device, "precision": precision, "size": size,
               "batch": args.batch or batch, "iters": args.iters, "warmup": args.warmup, "threads": args.threads}
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(job, queue))
        proc.start()
        result = queue.get()
        proc.join()
        rows.append({"case": name, "size": f"{size[0]}x{size[1]}", "precision": precision, **result})
        print(_row(rows[-1]), flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


def _row(row: dict) -> str:
    if "error" in row:
        return f"{row['case']:<14} {row['error']}"
    return (f"{row['case']:<14} {row['size']:>9} {row['precision']:>5}  batch {row['batch']:>2}  "
            f"{row['step_s']:7.3f} s/step  {row['images_per_s']:7.2f} images/s  peak {row['peak_mb']:8.0f} MiB  "
            f"({row['device']})")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
