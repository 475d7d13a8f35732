"""Time the node's per-frame path at 1280x720: each stage, and the labeled cloud against a plain memory copy.

Usage:
    python benchmarks/node_pipeline.py                                  # fake predictor (no model): the ROS side
    python benchmarks/node_pipeline.py --shipped                        # the shipped model (config from its file)
    python benchmarks/node_pipeline.py --weights W.safetensors|W.onnx [--config CFG.yaml] --device cuda

The frame is a rendered street scene (the synthetic data's held-out seed 1000000) with its own camera. Stages
(milliseconds, median over --iterations frames): decode (CDR -> RGB), preprocess / model / postprocess
(the predictor's own split; postprocess also holds colouring and the overlay), cloud (back-projection straight
into the serialized PointCloud2 + instance boxes), messages (building + serializing the other outputs, 2D boxes
included). Then the labeled PointCloud2 alone: build + serialize next to np.copy and bytes() of the same number
of bytes; the goal is within 3x of the copy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from types import SimpleNamespace

import numpy as np

from panopticdepth_core.inference.pointcloud import CLOUD_DTYPE, depth_to_cloud
from panopticdepth_ros import messages as m
from panopticdepth_ros.diagnostics import STAGES
from panopticdepth_ros.frame_pipeline import OUTPUTS, FramePipeline, PipelineSettings


class FakePredictor:
    """Returns fixed, plausible maps instantly so the benchmark measures the ROS side only."""

    def __init__(self, height: int, width: int) -> None:
        rng = np.random.default_rng(0)
        semantic = np.zeros((height, width), np.int32)
        semantic[: height // 3] = 10  # sky
        semantic[height // 3: height // 2] = 2  # building
        instance = np.zeros((height, width), np.int32)
        for index in range(12):  # twelve cars and people
            top, left = rng.integers(height // 3, height - 80), rng.integers(0, width - 120)
            semantic[top:top + 80, left:left + 120] = 13 if index % 2 else 11
            instance[top:top + 80, left:left + 120] = index + 1
        v = np.arange(height, dtype=np.float32)[:, None]
        self.result = SimpleNamespace(
            panoptic=np.where(instance > 0, semantic * 1000 + instance, semantic * 1000).astype(np.int32),
            semantic=semantic,
            instance=instance,
            depth=np.broadcast_to(np.clip(2000.0 / (np.maximum(v - height / 3, 0) + 25), 1.0, 80.0),
                                  (height, width)).astype(np.float32),  # far at the horizon, near at the bottom
            segments=[],
        )

    def __call__(self, image: np.ndarray, focal: float | None = None):
        return self.result


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def _time(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def _frame(store, height: int, width: int) -> tuple[bytes, bytes]:
    """A rendered street scene (held-out seed) and its camera: a model finds the things it would on the road."""
    from panopticdepth_core.data.synthetic import render_scene

    scene = render_scene(1000000, (height, width))
    rgb = np.ascontiguousarray(scene.image, dtype=np.uint8)
    header = m.make_header(store, 1, 0, "camera_color_optical_frame")
    image = m.serialize(m.image_message(store, header, rgb, "rgb8"), m.IMAGE, store)
    types = store.types
    k = np.asarray(scene.intrinsics, dtype=np.float64).reshape(-1)
    info = types[m.CAMERA_INFO](
        header=header, height=height, width=width, distortion_model="plumb_bob", d=np.zeros(5), k=k,
        r=np.eye(3).reshape(-1), p=np.concatenate([k[:3], [0], k[3:6], [0], k[6:], [0]]), binning_x=0, binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    return image, m.serialize(info, m.CAMERA_INFO, store)


def _predictor(args, height: int, width: int):
    if not (args.weights or args.shipped):
        print("predictor: FAKE (no --weights/--shipped given): model stages are ~0; the ROS-side stages are real")
        return FakePredictor(height, width)
    from panopticdepth_core.inference.model_files import resolve_model
    from panopticdepth_core.inference.predictor import Predictor

    model = resolve_model(args.config, args.weights)  # no weights: the shipped model; no config: the file's own
    print(f"predictor: {model.weights} (config {model.config_source}) device={args.device} "
          f"precision={args.precision}")
    return Predictor(model.cfg, model.weights, device=args.device, precision=args.precision,
                     providers=args.providers if str(model.weights).endswith(".onnx") else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="weights (.safetensors or .onnx; without it or --shipped a fake "
                                          "predictor is used)")
    parser.add_argument("--config", help="model config YAML (default: the one the weights file carries)")
    parser.add_argument("--shipped", action="store_true", help="the shipped model")
    parser.add_argument("--providers", default="auto", help="onnxruntime providers for a .onnx model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--stride", type=int, default=1, help="cloud stride")
    parser.add_argument("--distro", default="humble", choices=sorted(m.DISTROS))
    args = parser.parse_args(argv)

    height, width = args.height, args.width
    settings = PipelineSettings(distro=args.distro, cloud_stride=args.stride)
    store = m.get_store(args.distro)
    image, info = _frame(store, height, width)
    pipeline = FramePipeline(_predictor(args, height, width), settings)
    for _ in range(2):  # warm-up: caches, allocator, lazy imports
        pipeline.process(image, info)
    per_stage: dict[str, list[float]] = {stage: [] for stage in STAGES}
    totals = []
    for _ in range(args.iterations):
        start = time.perf_counter()
        result = pipeline.process(image, info, OUTPUTS)
        totals.append(time.perf_counter() - start)
        if result.skipped:
            print(f"frame skipped: {result.reason}")
            return 1
        for stage in STAGES:
            per_stage[stage].append(result.timings.get(stage, 0.0))
    sizes = {suffix: len(data) for suffix, (_, data) in result.outputs.items()}
    print(f"\nper-frame stages, {width}x{height}, all {len(OUTPUTS)} outputs, median of {args.iterations} (ms):")
    for stage in STAGES:
        print(f"  {stage:12s} {_median_ms(per_stage[stage]):8.2f}")
    print(f"  {'total':12s} {_median_ms(totals):8.2f}")
    print("output sizes (bytes): " + ", ".join(f"{k}={v}" for k, v in sizes.items()))

    # The labeled cloud alone, against a plain copy of the same bytes.
    prediction = pipeline.predictor(np.zeros((height, width, 3), np.uint8))
    depth, semantic, instance = (np.asarray(x) for x in (prediction.depth, prediction.semantic, prediction.instance))
    colors = np.random.default_rng(2).integers(0, 256, (height, width, 3), dtype=np.uint8)
    K = np.array([[0.8 * width, 0, (width - 1) / 2], [0, 0.8 * width, (height - 1) / 2], [0, 0, 1]])
    header = m.make_header(store, 1, 0, "camera_color_optical_frame")
    repeats = max(10, args.iterations)

    buffer = np.empty(height * width, dtype=CLOUD_DTYPE)

    def build():  # into a plain buffer
        return depth_to_cloud(depth, K, colors, semantic, instance, stride=args.stride, out=buffer)

    def build_and_serialize():  # straight into the message's bytes: FramePipeline's own path
        return pipeline.cloud_bytes(depth, K, colors, semantic, instance, header)

    cloud = build()
    raw = cloud.view(np.uint8).reshape(-1)
    reference = m.serialize(m.pointcloud2_message(store, header, cloud), m.POINT_CLOUD2, store)
    if build_and_serialize() != reference:
        print("ERROR: the cloud built into its message differs from rosbags' serialization")
        return 1
    rows = {
        "build": _time(build, repeats),
        "build + serialize": _time(build_and_serialize, repeats),
        "np.copy of the bytes": _time(lambda: np.copy(raw), repeats),
        "bytes() of the bytes": _time(lambda: bytes(raw), repeats),
    }
    print(f"\nlabeled cloud ({cloud.size} points x {cloud.dtype.itemsize} B = {raw.nbytes / 2**20:.1f} MiB), "
          f"{repeats} runs (ms):")
    for name, samples in rows.items():
        print(f"  {name:22s} median {_median_ms(samples):7.2f}   best {min(samples) * 1e3:7.2f}")
    built = rows["build + serialize"]
    for name in ("bytes() of the bytes", "np.copy of the bytes"):  # both allocate afresh, as each frame does
        print(f"  ratio (build + serialize) / {name.split()[0]}: median {_median_ms(built) / _median_ms(rows[name]):.1f}x,"
              f" best {min(built) / min(rows[name]):.1f}x (goal: within 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
