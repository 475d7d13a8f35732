"""Index and check a Cityscapes-DPS folder (ViP-DeepLab's cityscapes-dvps/video_sequence) before training.

    python training/prepare_cityscapes_dps.py --root datasets/cityscapes-dvps/video_sequence --split train

The released code's ``datasets/prepare_dvps_cityscapes.py`` only globbed the three file kinds, asserted equal
counts and wrote ``dvps_cityscapes_{split}.json`` (image/seg/depth names and sizes); our reader reads the
ViP-DeepLab folder directly, so this script is a check, not a conversion. It finds missing, orphaned,
mis-sized and wrong-format files from PNG headers, then (unless --no-stats) decodes every frame, which also
finds corrupt files, and prints frames, sequences, classes present and depth coverage. Every problem found is
listed in one error naming the files. The index json keeps the released format (plus sequence/frame).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from panopticdepth_core.data.cityscapes_dps import CityscapesDPSDataset, index_dps_folder
from panopticdepth_core.data.classes import CLASS_NAMES, NUM_CLASSES
from panopticdepth_core.data.image_io import DataError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, type=Path,
                        help="the video_sequence folder holding train/ and val/ (ViP-DeepLab's Cityscapes-DVPS)")
    parser.add_argument("--split", default="train", help="split folder under --root (default: train)")
    parser.add_argument("--out", type=Path, default=None,
                        help="index json to write (default: ROOT/dvps_cityscapes_SPLIT.json, the released name)")
    parser.add_argument("--no-stats", action="store_true",
                        help="check headers only; skip decoding every frame (fast, but corrupt pixel data is missed)")
    return parser.parse_args(argv)


def collect_stats(dataset: CityscapesDPSDataset) -> dict:
    """Decode every frame: class pixel counts, instance counts, depth coverage; corrupt files are collected."""
    from tqdm import tqdm

    pixels = np.zeros(NUM_CLASSES, dtype=np.int64)
    frames_with = np.zeros(NUM_CLASSES, dtype=np.int64)
    instances, coverage, problems = 0, [], []
    for i in tqdm(range(len(dataset)), desc="decoding", unit="frame", file=sys.stderr):
        try:
            sample = dataset.read(i)
        except DataError as exc:
            problems.append(str(exc))
            continue
        valid = sample.semantic[sample.semantic != 255]
        counts = np.bincount(valid, minlength=NUM_CLASSES)[:NUM_CLASSES]
        pixels += counts
        frames_with += counts > 0
        instances += int(sample.instance.max(initial=0))
        if sample.depth is not None:
            coverage.append(float((sample.depth > 0).mean()))
    if problems:
        raise DataError(f"{dataset.root}: {len(problems)} unreadable frame(s):\n  " + "\n  ".join(problems[:50]))
    return {"pixels": pixels, "frames_with": frames_with, "instances": instances, "coverage": coverage}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    split_dir = args.root / args.split
    try:
        frames = index_dps_folder(split_dir)
        stats = None if args.no_stats else collect_stats(CityscapesDPSDataset(split_dir))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sequences = sorted({f.sequence for f in frames})
    sizes = sorted({(f.width, f.height) for f in frames})
    print(f"folder: {split_dir}")
    print(f"frames: {len(frames)}")
    print(f"sequences: {len(sequences)}")
    print(f"image sizes (WxH): {', '.join(f'{w}x{h}' for w, h in sizes)}")
    print(f"frames with camera json: {sum(f.camera is not None for f in frames)}")
    if stats is not None:
        total = max(1, int(stats["pixels"].sum()))
        print(f"thing instances: {stats['instances']}")
        if stats["coverage"]:
            cov = np.array(stats["coverage"])
            print(f"depth coverage: mean {cov.mean():.1%}, min {cov.min():.1%}, max {cov.max():.1%} of pixels")
        print("classes present (share of labelled pixels, frames):")
        for c in range(NUM_CLASSES):
            if stats["frames_with"][c]:
                print(f"  {c:2d} {CLASS_NAMES[c]:<14} {stats['pixels'][c] / total:7.2%} {stats['frames_with'][c]:6d}")
        absent = [CLASS_NAMES[c] for c in range(NUM_CLASSES) if not stats["frames_with"][c]]
        if absent:
            print(f"classes absent: {', '.join(absent)}")
    index = [
        {"height": f.height, "width": f.width, "image": f.image.name, "depth": f.depth.name, "seg": f.label.name,
         "sequence": f.sequence, "frame": f.frame}
        for f in frames
    ]
    out = args.out or args.root / f"dvps_cityscapes_{args.split}.json"
    out.write_text(json.dumps(index, indent=1))
    print(f"index written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
