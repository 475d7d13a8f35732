"""Synthetic-scene generation speed on one CPU core: images/s for rendering only and for rendering + writing.

Usage: python benchmarks/synth_speed.py [--num 60] [--size 256x512]

Pins the process to one core (where the OS allows) and one BLAS/OpenMP thread. Prints wall-clock rates and CPU-time
rates; on a busy machine the CPU-time rate is the fairer number. Goal: >= 20 images/s at 256x512.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from panopticdepth_core.data.dps_writer import write_dps_frame  # noqa: E402
from panopticdepth_core.data.synthetic import render_scene, scene_seed  # noqa: E402
from panopticdepth_ros.commands.synth import parse_size  # noqa: E402


def _pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity on this OS)"


def _measure(num: int, size: tuple[int, int], write_dir: Path | None) -> tuple[float, float]:
    """-> (images/s wall clock, images/s CPU time)."""
    render_scene(scene_seed(0, 10_000), size)  # warm-up (imports, caches)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(num):
        sample = render_scene(scene_seed(0, i), size)
        if write_dir is not None:
            write_dps_frame(write_dir, sample, seq=i, frame=0)
    return num / (time.perf_counter() - wall), num / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=60, help="images per measurement")
    parser.add_argument("--size", type=parse_size, default=(256, 512), metavar="HxW")
    args = parser.parse_args()
    print(f"synthetic scenes {args.size[0]}x{args.size[1]}, {args.num} images, {_pin_one_core()}")
    wall, cpu = _measure(args.num, args.size, None)
    print(f"render only     : {wall:6.1f} images/s wall, {cpu:6.1f} images/s CPU time")
    tmp = Path(tempfile.mkdtemp(prefix="synth_speed_"))
    try:
        wall, cpu = _measure(args.num, args.size, tmp)
        size_mb = sum(f.stat().st_size for f in tmp.iterdir()) / 1e6
        print(f"render + write  : {wall:6.1f} images/s wall, {cpu:6.1f} images/s CPU time "
              f"({size_mb / args.num:.2f} MB per frame on disk)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
