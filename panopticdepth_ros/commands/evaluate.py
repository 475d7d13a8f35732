"""`panopticdepth eval`: score prediction PNGs (official Cityscapes-DVPS layout) against a ground-truth folder."""

from __future__ import annotations

import argparse
import sys


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, metavar="DIR",
                        help="predictions: <frame>_panoptic.png (R = class, G = instance) and <frame>_depth.png "
                             "(metres * 256), as written by `panopticdepth predict`")
    parser.add_argument("--gt", required=True, metavar="DIR",
                        help="ground truth: <frame>_gtFine_instanceTrainIds.png and <frame>_depth.png "
                             "(Cityscapes-DVPS video_sequence/val layout); searched recursively")
    parser.add_argument("--out", metavar="JSON", default=None, help="also write every number to this JSON file")
    parser.add_argument("--per-class", action="store_true", help="print a table with one row per class")
    parser.add_argument("--dvpq-k", type=int, nargs="+", default=[1, 2, 3, 4], metavar="K",
                        help="DVPQ window lengths in frames (default: 1 2 3 4; k > 1 needs <seq>_<frame>_ names)")
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.5, 0.25, 0.1], metavar="L",
                        help="DPQ relative depth-error thresholds (default: 0.5 0.25 0.1)")
    parser.add_argument("--depth-average", choices=("pixels", "images"), default="pixels",
                        help="depth metrics over all valid pixels of the split (default) or mean of per-image values")
    parser.add_argument("--count-absent-classes", action="store_true",
                        help="average PQ over all classes, scoring classes that never occur as 0 (PanopticDepth's "
                             "script); default: leave them out")


def run(args: argparse.Namespace) -> int:
    from panopticdepth_core.evaluation.evaluator import evaluate_folders
    from panopticdepth_core.evaluation.report import format_report, write_json

    def progress(done: int, total: int, stem: str) -> None:
        if sys.stderr.isatty():
            print(f"\r{done}/{total} {stem}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    try:
        result = evaluate_folders(args.pred, args.gt, lambdas=args.lambdas, dvpq_ks=args.dvpq_k,
                                  depth_reduction=args.depth_average,
                                  count_absent_classes=args.count_absent_classes, progress=progress)
    except (FileNotFoundError, ValueError) as error:
        print(f"panopticdepth eval: error: {error}", file=sys.stderr)
        return 2
    print(format_report(result, per_class=args.per_class))
    if args.out:
        print(f"wrote {write_json(result, args.out)}")
    return 0
