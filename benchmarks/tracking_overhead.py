"""What tracking adds per frame: ``InstanceTracker.update`` (observations, cost matrix, assignment, relabelled
maps) at N moving instances, on the CPU. The goal: at most 5 ms per frame at 30 instances.

Usage:
    python benchmarks/tracking_overhead.py [--instances 30] [--size 512x1024] [--frames 200] [--embedding 64]

Frames are made by hand: N boxes of two classes moving on their own straight paths over a road, each with a
depth and a fixed random mask-kernel embedding of E channels, numbered in a new random order every frame as the
post-processing numbers them; the instance map is passed along and the maps relabelled in place, as the node's pipeline does. CPU time
(process_time) is printed next to wall time: on a machine shared with other jobs it is the better estimate. Prints the median and 95th percentile of update() in milliseconds, and checks that
every box kept its id. Timings vary with the machine's load: run it on an idle machine for figures to quote.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from panopticdepth_core.modeling.types import Segment
from panopticdepth_core.tracking.tracker import InstanceTracker


def _bounce(position: np.ndarray, limits: tuple[int, int]) -> tuple[int, int]:
    """A position moving on a straight line, reflected at 0 and ``limits`` (boxes bounce off the image edges)."""
    out = []
    for value, limit in zip(position, limits):
        value = abs(value) % (2 * limit)
        out.append(int(2 * limit - value if value > limit else value))
    return out[0], out[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=30)
    parser.add_argument("--size", default="512x1024")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--embedding", type=int, default=64)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    rng = np.random.default_rng(0)
    n = args.instances
    start = np.stack([rng.uniform(0, width - 60, n), rng.uniform(height * 0.4, height - 50, n)], axis=1)
    velocity = rng.uniform(-3, 3, (n, 2))
    sizes = rng.integers(20, 60, (n, 2))
    classes = np.where(np.arange(n) % 3 == 0, 11, 13)
    depths = rng.uniform(5, 40, n)
    embeddings = rng.normal(size=(n, args.embedding)).astype(np.float32)
    K = np.array([[width * 0.6, 0, (width - 1) / 2], [0, width * 0.6, (height - 1) / 2], [0, 0, 1.0]])
    tracker = InstanceTracker()
    times, cpu_times, first_ids, kept = [], [], None, 0
    for f in range(args.frames):
        panoptic = np.zeros((height, width), np.int32)
        depth = np.full((height, width), 50.0, np.float32)
        numbers = rng.permutation(n) + 1
        order = np.argsort(-depths)  # far first: near boxes drawn on top
        for i in order:
            x0, y0 = _bounce(start[i] + velocity[i] * f, (width - 60, height - 50))
            panoptic[y0:y0 + sizes[i, 1], x0:x0 + sizes[i, 0]] = classes[i] * 1000 + numbers[i]
            depth[y0:y0 + sizes[i, 1], x0:x0 + sizes[i, 0]] = depths[i]
        segments = [Segment(int(classes[i] * 1000 + numbers[i]), int(classes[i]), True, 0.9, 1, int(numbers[i]),
                            embedding=embeddings[i]) for i in range(n)]
        instance = np.where(panoptic > 0, panoptic % 1000, 0).astype(np.int32)  # as the predictor gives it
        t0, c0 = time.perf_counter(), time.process_time()
        result = tracker.update(panoptic, segments, depth, K, time=f / 10.0, instance=instance, in_place=True)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
        ids = {i: result.ids.get(int(classes[i] * 1000 + numbers[i])) for i in range(n)}
        if first_ids is None:
            first_ids = ids
        kept += sum(ids[i] == first_ids[i] for i in range(n) if ids[i] is not None)
    ms, cpu = np.array(times[5:]) * 1e3, np.array(cpu_times[5:]) * 1e3
    print(f"{n} instances at {height}x{width}, {args.frames} frames (first 5 not timed): update() wall median "
          f"{np.median(ms):.2f} ms, p95 {np.percentile(ms, 95):.2f} ms, max {ms.max():.2f} ms; CPU time median "
          f"{np.median(cpu):.2f} ms (wall time includes waiting for a core on a busy machine)")
    print(f"ids kept from the first frame: {kept / (n * args.frames) * 100:.1f} % of instance-frames (boxes cross, "
          "hide each other and bounce off the image edges)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
