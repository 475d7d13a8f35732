"""Post-processing time per frame at camera resolutions, with a trained model on rendered street scenes.

Usage:
    python benchmarks/postprocess_speed.py                          # the shipped model, 720x1280 and 512x1024
    python benchmarks/postprocess_speed.py --sizes 1080x1920 --num 10
    python benchmarks/postprocess_speed.py --native                 # network input = output size (no resampling)
    python benchmarks/postprocess_speed.py --weights W.safetensors [--config CFG.yaml] [--opts KEY VALUE ...]

Renders ``--num`` held-out synthetic scenes (seed 1000000 on) at each size, runs the Predictor with each scene's
focal length and prints, per size, the post-processing time (``postprocess`` + ``to_numpy`` of the Predictor's
own timings: raw head outputs to NumPy maps; best of ``--repeats`` per frame, then median and range over frames)
next to the network's time and the number of segments. ``--native`` sets the network input to the output size
(INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST), the full-resolution path Cityscapes evaluation takes. Not a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import sys


def parse_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 720x1280; got {text!r}") from None
    return height, width


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="model config (default: the one stored with the weights)")
    parser.add_argument("--weights", help="weights file (default: the shipped model)")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[(720, 1280), (512, 1024)])
    parser.add_argument("--num", type=int, default=6, help="scenes per size")
    parser.add_argument("--repeats", type=int, default=3, help="runs per frame (the best counts)")
    parser.add_argument("--seed", type=int, default=1000000)
    parser.add_argument("--native", action="store_true", help="network input = output size")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)

    import torch

    from panopticdepth_core.data.synthetic import render_scene
    from panopticdepth_core.inference.model_files import resolve_model
    from panopticdepth_core.inference.predictor import Predictor, resize_scale

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model: {args.weights or 'shipped'}")
    print("| output | network input | frames | segments (median) | network ms (median) | post-processing ms: median | min | max |")
    print("|---|---|---|---|---|---|---|---|")
    for height, width in args.sizes:
        opts = list(args.opts)
        if args.native:
            opts += ["INPUT.MIN_SIZE_TEST", str(min(height, width)), "INPUT.MAX_SIZE_TEST", str(max(height, width))]
        model = resolve_model(args.config, args.weights, opts)
        predictor = Predictor(model.cfg, model.weights)
        posts, nets, segments = [], [], []
        for index in range(args.num):
            sample = render_scene(args.seed + index, (height, width))
            focal = float(sample.intrinsics[0, 0]) if sample.intrinsics is not None else None
            best = None
            for _ in range(args.repeats):
                prediction = predictor(sample.image, focal=focal)
                timings = prediction.timings
                post = timings["postprocess"] + timings["to_numpy"]
                if best is None or post < best[0]:
                    best = (post, timings["model"])
            posts.append(best[0] * 1e3)
            nets.append(best[1] * 1e3)
            segments.append(len(prediction.segments))
        scale = resize_scale(height, width, predictor.min_size, predictor.max_size)
        network = f"{round(height * scale)}x{round(width * scale)}"
        print(f"| {height}x{width} | {network} | {args.num} | {statistics.median(segments):g} | "
              f"{statistics.median(nets):.1f} | {statistics.median(posts):.1f} | {min(posts):.1f} | {max(posts):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
