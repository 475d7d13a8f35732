"""Do ids persist? VPQ / DVPQ (k = 1..4) and the MOT view (motmetrics) of the shipped model on held-out synthetic
drives, with tracking on and off.

Usage:
    python benchmarks/video_tracking.py [--sequences 10] [--frames 30] [--size 128x256] [--seed 1000000]
                                        [--workdir DIR] [--config CFG --weights W]
                                        [--detections model|ground-truth [--min-area PIXELS]]

Renders the drives (`synth --sequences`; seed 1000000 is the shipped model's validation seed, disjoint from its
training scenes), runs the model once per frame and writes two prediction folders from the same outputs: per-frame
numbering (tracking off, what `predict --no-track` writes) and tracked ids (what `predict` writes). Then:

- `panopticdepth eval`'s VPQ and DVPQ at k = 1, 2, 3, 4 for both (things and all classes), and the ratio VPQ(k=4) /
  PQ(k=1) (the goal: >= 0.9 with tracking);
- the MOT view with motmetrics against the ground truth's ids: a predicted thing matches a ground-truth thing of
  the same class with mask IoU >= 0.5; IDF1, ID switches per 100 frames, MOTA (over all drives);
- the tracker's own time per frame on these outputs;
- per thing class (tracking on): PQ at k = 1 and VPQ at k = 4 with their TP / FP / FN, and the ground-truth tubes
  lost at k = 4 by how many frames of their window the thing was matched in alone: where the ratio goes.

``--detections ground-truth`` tracks the ground truth's own segments instead of the model's, each frame's things
numbered afresh in random order (a perfect detector, no kernels): what is left is the tracker's own ability to
hold ids, apart from what the detector finds. ``--min-area A`` with it leaves out each frame's things under A
pixels (a perfect detector that finds things only from that size on).
Not a test: it prints numbers (docs/tracking.md holds a run's output).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np

from panopticdepth_core.data.cityscapes_dps import read_camera_json
from panopticdepth_core.data.classes import FIRST_THING_ID, LABEL_DIVISOR, VOID_CLASS
from panopticdepth_core.data.dps_writer import decode_instance_train_ids
from panopticdepth_core.data.image_io import read_rgb, read_uint16
from panopticdepth_core.data.synthetic import write_synthetic_sequences
from panopticdepth_core.evaluation.evaluator import evaluate_folders
from panopticdepth_core.evaluation.result_io import read_depth, write_prediction
from panopticdepth_core.inference.model_files import resolve_model
from panopticdepth_core.inference.predictor import Predictor
from panopticdepth_core.modeling.types import Segment
from panopticdepth_core.tracking.sequences import camera_pose, frame_times, sequence_groups
from panopticdepth_core.tracking.tracker import InstanceTracker, TrackerSettings

KS = (1, 2, 3, 4)


class Overlaps(NamedTuple):
    """One frame's things: ground-truth and predicted areas by panoptic id, shared pixels by (prediction, truth)."""

    gt: dict[int, int]
    hyp: dict[int, int]
    inter: dict[tuple[int, int], int]


def _size(text: str) -> tuple[int, int]:
    height, width = text.lower().split("x")
    return int(height), int(width)


def _things(semantic: np.ndarray, instance: np.ndarray) -> dict[int, np.ndarray]:
    """class * 1000 + instance -> (H, W) bool mask, for thing pixels with an instance id."""
    codes = np.where(instance > 0, semantic.astype(np.int64) * 1000 + instance, 0)
    return {int(c): codes == c for c in np.unique(codes) if c}


def _renumbered_ground_truth(semantic: np.ndarray, instance: np.ndarray, depth: np.ndarray,
                             rng: np.random.Generator, min_area: int = 0) -> SimpleNamespace:
    """A frame's ground truth as a prediction whose things are numbered 1..N afresh, in random order (what the
    post-processing does by score), so no id carries over from the previous frame by itself. No kernels: the
    tracker then uses mask overlap and 3D position only. Things under ``min_area`` pixels are missed: void in the
    prediction (a detector that finds things only from that size on)."""
    is_thing = (instance > 0) & (semantic >= FIRST_THING_ID) & (semantic != VOID_CLASS)
    if min_area:
        codes = np.where(is_thing, semantic.astype(np.int64) * LABEL_DIVISOR + instance, 0)
        values, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        small = ((counts < min_area) & (values > 0))[inverse.reshape(codes.shape)]
        semantic = np.where(small, VOID_CLASS, semantic)
        is_thing &= ~small
    codes = np.where(is_thing, semantic.astype(np.int64) * LABEL_DIVISOR + instance, 0)
    things = np.unique(codes[is_thing])
    table = np.zeros(things.size + 1, np.int32)
    table[1:] = rng.permutation(things.size) + 1
    numbered = np.zeros(instance.shape, np.int32)
    numbered[is_thing] = table[np.searchsorted(things, codes[is_thing]) + 1]
    panoptic = np.where(semantic == VOID_CLASS, -1, semantic * LABEL_DIVISOR + numbered).astype(np.int32)
    segments = []
    for pid in np.unique(panoptic[panoptic >= 0]):
        pixels = panoptic == pid
        valid = pixels & (depth > 0)
        segments.append(Segment(int(pid), int(pid) // LABEL_DIVISOR, int(pid) % LABEL_DIVISOR > 0, 1.0,
                                int(pixels.sum()), int(pid) % LABEL_DIVISOR,
                                float(depth[valid].mean()) if valid.any() else float("nan")))
    return SimpleNamespace(panoptic=panoptic, semantic=semantic, instance=numbered, depth=depth, segments=segments)


def _overlaps(gt: dict[int, np.ndarray], hyp: dict[int, np.ndarray]) -> Overlaps:
    """One frame's thing areas and the pixels each same-class (prediction, ground truth) pair shares."""
    inter = {}
    for g, gm in gt.items():
        for h, hm in hyp.items():
            if g // 1000 == h // 1000 and (n := np.count_nonzero(gm & hm)):
                inter[(h, g)] = n
    return Overlaps({g: np.count_nonzero(m) for g, m in gt.items()}, {h: np.count_nonzero(m) for h, m in hyp.items()},
                    inter)


def _matched(o: Overlaps, threshold: float = 0.5) -> set[int]:
    """Ground-truth things that a prediction covers at IoU above ``threshold`` (VPQ's rule) in this frame."""
    return {g for (h, g), n in o.inter.items() if n / (o.gt[g] + o.hyp[h] - n) > threshold}


def _mot_update(acc, o: Overlaps) -> None:
    gt_ids, hyp_ids = list(o.gt), list(o.hyp)
    dist = np.full((len(gt_ids), len(hyp_ids)), np.nan)
    for (h, g), n in o.inter.items():
        iou = n / (o.gt[g] + o.hyp[h] - n)
        if iou >= 0.5:
            dist[gt_ids.index(g), hyp_ids.index(h)] = 1.0 - iou
    acc.update(gt_ids, hyp_ids, dist)


def _lost_tubes(frames: list[Overlaps], k: int) -> Counter:
    """Ground-truth tubes that fail VPQ's match in the k-frame windows of one drive, by (class, frames of the window
    in which the thing alone was matched). Void pixels are not set aside here, so a count can differ from the
    evaluator's by a tube whose prediction lies partly on void."""
    lost: Counter = Counter()
    matched = [_matched(o) for o in frames]  # per frame, once
    for start in range(len(frames) - k + 1):
        window = frames[start:start + k]
        gt_area, hyp_area, inter = Counter(), Counter(), Counter()
        for o in window:
            gt_area.update(o.gt)
            hyp_area.update(o.hyp)
            inter.update(o.inter)
        tubes = {g for (h, g), n in inter.items() if n / (gt_area[g] + hyp_area[h] - n) > 0.5}
        for g in set(gt_area) - tubes:
            lost[(g // 1000, sum(g in hits for hits in matched[start:start + k]))] += 1
    return lost


def _print_per_class(dvpq: dict, lost: Counter) -> None:
    """Where the things' ratio goes, tracking on: each thing class's PQ at k = 1 and VPQ at k = 4 with their counts
    (a k = 4 count is over windows), and its ground-truth tubes lost at k = 4 by how many of their window's frames
    the thing was matched in alone (0: missed throughout; more: found in part of the window, e.g. as it comes into
    view, and the tube still failed)."""
    last = KS[-1]
    print(f"\nThings per class, tracking on: k = 1 against k = {last}. Last columns: the ground-truth tubes lost at "
          f"k = {last}, by the frames of their window in which the thing was matched alone")
    print(f"{'':12s}{'PQ1':>7s}{'VPQ' + str(last):>7s}{'TP/FP/FN k=1':>16s}{'TP/FP/FN k=' + str(last):>16s}"
          + "".join(f"{n:6d}" for n in range(last)))
    for one, four in zip(dvpq["1"]["vpq"]["per_class"], dvpq[str(last)]["vpq"]["per_class"]):
        if not one["is_thing"] or not one["present"]:
            continue
        counts = [f"{e['tp']}/{e['fp']}/{e['fn']}" for e in (one, four)]
        print(f"{one['name']:12s}{one['pq']:7.2f}{four['pq']:7.2f}{counts[0]:>16s}{counts[1]:>16s}"
              + "".join(f"{lost[(one['id'], n)]:6d}" for n in range(last)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=10)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--size", type=_size, default=(128, 256))
    parser.add_argument("--seed", type=int, default=1_000_000)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--workdir", default=None, help="keep the drives and predictions here (default: a temp dir)")
    parser.add_argument("--config", default=None)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--detections", choices=("model", "ground-truth"), default="model",
                        help="whose segments are tracked: the model's (default), or the ground truth's with each "
                             "frame's things numbered afresh in random order (a perfect detector: the tracker alone)")
    parser.add_argument("--min-area", type=int, default=0, metavar="PIXELS",
                        help="with --detections ground-truth: leave out things under this many pixels in each frame "
                             "(a perfect detector that finds things only from that size on)")
    args = parser.parse_args()
    if args.min_area and args.detections != "ground-truth":
        parser.error("--min-area goes with --detections ground-truth")
    import motmetrics as mm

    work = Path(args.workdir or tempfile.mkdtemp(prefix="video_tracking_"))
    t0 = time.perf_counter()
    gt_dir = write_synthetic_sequences(work / "gt", args.sequences, args.frames, args.size, args.seed, args.fps,
                                       split="val", progress=False)
    print(f"rendered {args.sequences} drives x {args.frames} frames at {args.size[0]}x{args.size[1]} "
          f"(seed {args.seed}) in {time.perf_counter() - t0:.0f} s -> {gt_dir}")
    model = resolve_model(args.config, args.weights)
    predictor = Predictor(model.cfg, model.weights) if args.detections == "model" else None
    rng = np.random.default_rng(0)
    settings = TrackerSettings.from_config(model.cfg) if "TRACKER" in model.cfg else TrackerSettings()
    settings = TrackerSettings(**{**settings.__dict__, "id_limit": min(settings.id_limit, 255)})
    frames = sorted(gt_dir.glob("*_leftImg8bit.png"))
    names = [f.name for f in frames]
    accs = {"off": [], "on": []}
    lost: Counter = Counter()
    track_times, model_time = [], 0.0
    for group in sequence_groups(names):
        tracker = InstanceTracker(settings)
        acc = {"off": mm.MOTAccumulator(auto_id=True), "on": mm.MOTAccumulator(auto_id=True)}
        drive: list[Overlaps] = []
        for index, when in zip(group, frame_times(names, group)):
            path = frames[index]
            stem = path.name[: -len("_leftImg8bit.png")]
            camera = gt_dir / f"{stem}_camera.json"
            K = read_camera_json(camera)
            gt_sem, gt_inst = decode_instance_train_ids(read_uint16(gt_dir / f"{stem}_gtFine_instanceTrainIds.png", "label"))
            gt = _things(gt_sem, gt_inst)
            start = time.perf_counter()
            if predictor is not None:
                pred = predictor(read_rgb(path), focal=float(K[0, 0]))
            else:
                pred = _renumbered_ground_truth(gt_sem, gt_inst, read_depth(gt_dir / f"{stem}_depth.png"), rng,
                                                args.min_area)
            model_time += time.perf_counter() - start
            start = time.perf_counter()
            tracked = tracker.update(pred.panoptic, pred.segments, pred.depth, K, camera_pose(camera), when,
                                     instance=pred.instance)
            track_times.append(time.perf_counter() - start)
            overlaps = {}
            for mode, instance in (("off", pred.instance), ("on", tracked.instance)):
                write_prediction(work / mode, path.name, pred.semantic, instance, pred.depth)
                overlaps[mode] = _overlaps(gt, _things(pred.semantic, instance))
                _mot_update(acc[mode], overlaps[mode])
            drive.append(overlaps["on"])
        lost.update(_lost_tubes(drive, KS[-1]))
        for mode in accs:
            accs[mode].append(acc[mode])
    print(f"detections ({args.detections}) {model_time / len(frames) * 1e3:.0f} ms/frame; tracker mean {np.mean(track_times) * 1e3:.2f} ms, "
          f"max {np.max(track_times) * 1e3:.2f} ms per frame ({len(frames)} frames)")

    results = {mode: evaluate_folders(work / mode, gt_dir, dvpq_ks=KS) for mode in ("off", "on")}
    print("\nVPQ and DVPQ (mean over lambda 0.5, 0.25, 0.1), %   [PQ at k = 1 is the per-frame PQ]")
    print(f"{'':26s}" + "".join(f"{'k=' + str(k):>8s}" for k in KS) + f"{'VPQ4/PQ1':>10s}")
    for mode in ("off", "on"):
        dvpq = results[mode]["dvpq"]
        for group in ("all", "things"):
            vpq = [dvpq[str(k)]["vpq"][group]["pq"] for k in KS]
            mean = [(dvpq[str(k)].get("mean") or {}).get(group) for k in KS]
            label = f"tracking {mode}, {group}"
            print(f"{'VPQ ' + label:26s}" + "".join(f"{v:8.2f}" for v in vpq) + f"{vpq[3] / max(vpq[0], 1e-9):10.3f}")
            if all(v is not None for v in mean):
                print(f"{'DVPQ ' + label:26s}" + "".join(f"{v:8.2f}" for v in mean))

    print("\nMOT view (motmetrics; match = same class and mask IoU >= 0.5), all drives")
    mh = mm.metrics.create()
    print(f"{'':14s}{'IDF1':>8s}{'ID sw.':>8s}{'sw./100 fr.':>13s}{'MOTA':>8s}{'frames':>8s}")
    for mode in ("off", "on"):
        summary = mh.compute_many(accs[mode], metrics=["idf1", "num_switches", "mota", "num_frames"],
                                  names=[str(i) for i in range(len(accs[mode]))], generate_overall=True)
        row = summary.loc["OVERALL"]
        frames_count = int(row["num_frames"])
        print(f"{'tracking ' + mode:14s}{row['idf1'] * 100:8.1f}{int(row['num_switches']):8d}"
              f"{row['num_switches'] * 100 / max(frames_count, 1):13.2f}{row['mota'] * 100:8.1f}{frames_count:8d}")
    _print_per_class(results["on"]["dvpq"], lost)
    print(f"\nfiles under {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
