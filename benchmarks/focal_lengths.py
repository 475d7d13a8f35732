"""Does metric depth follow the camera? PQ, DPQ and depth metrics of a model per camera (focal length and size).

Usage:
    python benchmarks/focal_lengths.py                                # the shipped model, 100 scenes per camera
    python benchmarks/focal_lengths.py --weights W.safetensors --num 50 --cameras 128x256@80 256x512@320
    python benchmarks/focal_lengths.py --no-focal                     # what a caller without intrinsics gets

Renders held-out synthetic scenes (``DATASETS.SYNTHETIC.VAL_SEED`` 1000000 by default: scene seeds training never
uses) once per camera ``HxW@FX`` (fx = fy = FX pixels), runs the Predictor with each image's focal length (as the
node does from camera_info and ``panopticdepth predict`` from ``X_camera.json``) and scores the predictions at the
image's resolution, all valid pixels. Scenes of one seed hold the same street whatever the camera, so the rows
differ only by the camera. The default cameras are the acceptance check of the camera-aware depth (fx 80, 160,
320 at 128x256: fields of view of 116, 77 and 44 degrees) plus the README's sample bag camera (256x512 at fx 320,
the 77-degree field of view at twice the resolution). Prints one markdown table; not a timed test.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def parse_camera(text: str) -> tuple[int, int, float]:
    """``HxW@FX`` -> (height, width, fx)."""
    try:
        size, focal = text.split("@")
        height, width = (int(v) for v in size.lower().split("x"))
        fx = float(focal)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW@FX, e.g. 128x256@160; got {text!r}") from None
    if height < 8 or width < 8 or not fx > 0:
        raise argparse.ArgumentTypeError(f"expected a size of at least 8x8 and a focal length > 0; got {text!r}")
    return height, width, fx


def evaluate_camera(predictor, camera: tuple[int, int, float], num: int, seed: int, profile: str,
                    give_focal: bool) -> dict:
    """Scores of ``predictor`` on ``num`` scenes seen by ``camera``."""
    from panopticdepth_core.data.synthetic import render_scene, scene_seed
    from panopticdepth_core.evaluation.evaluator import DPSEvaluator

    height, width, fx = camera
    evaluator = DPSEvaluator()
    ratios = []
    for index in range(num):
        sample = render_scene(scene_seed(seed, index), (height, width), fx, profile=profile)
        pred = predictor(sample.image, focal=fx if give_focal else None)
        evaluator.process(sample.name, pred.semantic, pred.instance, pred.depth, sample.semantic, sample.instance,
                          sample.depth)
        valid = (sample.depth > 0) & (pred.depth > 0)
        if valid.any():
            ratios.append(float(np.median(pred.depth[valid] / sample.depth[valid])))
    summary = evaluator.summarize()
    summary["median_ratio"] = float(np.median(ratios)) if ratios else float("nan")
    summary["rule"] = pred.depth_scaling.rule if pred.depth_scaling else "-"
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=None, help="model config (default: the one stored in the weights)")
    parser.add_argument("--weights", default=None, help="weights (default: the shipped model)")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE", help="config overrides")
    parser.add_argument("--cameras", nargs="+", type=parse_camera, metavar="HxW@FX",
                        default=[parse_camera(c) for c in ("128x256@80", "128x256@160", "128x256@320", "256x512@320")])
    parser.add_argument("--num", type=int, default=100, help="scenes per camera (default 100)")
    parser.add_argument("--seed", type=int, default=1_000_000, help="data set seed (default: VAL_SEED 1000000)")
    parser.add_argument("--profile", default="streets", help="synthetic scene profile (default streets)")
    parser.add_argument("--no-focal", action="store_true",
                        help="do not give the predictor the focal length (the canonical camera is then assumed)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)

    import torch

    from panopticdepth_core.inference.model_files import resolve_model
    from panopticdepth_core.inference.predictor import Predictor

    torch.set_num_threads(args.threads)
    model = resolve_model(args.config, args.weights, args.opts)
    predictor = Predictor(model.cfg, model.weights)
    canonical = predictor.focal_canonical
    print(f"model {model.weights} (config {model.config_source}); canonical focal "
          f"{'not recorded (legacy rule)' if canonical is None else f'{canonical:g} px'}; "
          f"{args.num} scenes per camera from seed {args.seed}; focal length given to the predictor: "
          f"{'no' if args.no_focal else 'yes'}", flush=True)
    header = ("| camera | HFOV | PQ | DPQ | AbsRel | RMSE (m) | d<1.25 | median pred/gt | depth rule |\n"
              "|---|---|---|---|---|---|---|---|---|")
    rows = []
    for camera in args.cameras:
        start = time.perf_counter()
        result = evaluate_camera(predictor, camera, args.num, args.seed, args.profile, not args.no_focal)
        height, width, fx = camera
        hfov = np.degrees(2 * np.arctan(width / 2 / fx))
        depth = result["depth"]
        rows.append(f"| {height}x{width} @ fx {fx:g} | {hfov:.0f} deg | {result['pq']['all']['pq']:.1f} | "
                    f"{result['dpq']['mean']['all']:.1f} | {depth['abs_rel']:.3f} | {depth['rmse']:.2f} | "
                    f"{depth['delta1']:.3f} | {result['median_ratio']:.2f} | {result['rule']} |")
        print(f"  {height}x{width}@{fx:g}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    print(header)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
