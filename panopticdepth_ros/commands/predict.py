"""`panopticdepth predict`: run the model on image files and write what the official evaluator reads.

For each input ``X_leftImg8bit.png`` (or any ``X.png`` / ``X.jpg``) it writes ``OUT/X_panoptic.png`` (R = class,
G = instance) and ``OUT/X_depth.png`` (uint16, metres * 256), plus ``OUT/vis/X_overlay.png`` and
``OUT/vis/X_depth_color.png`` for people. `panopticdepth eval --pred OUT --gt GT` scores them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, nargs="+", metavar="PATH",
                        help="image files and/or folders (a folder in the Cityscapes-DPS layout: its "
                             "*_leftImg8bit.png frames; any other folder: its .png/.jpg files)")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the prediction files")
    parser.add_argument("--config", metavar="YAML", help="model config (default: the config stored in the weights "
                        "file; with neither flag, the shipped small model)")
    parser.add_argument("--weights", metavar="FILE", help="model weights, .safetensors (default: the shipped model)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default cpu)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"),
                        help="network precision; post-processing always runs in fp32 (default fp32)")
    parser.add_argument("--min-size", type=int, default=None, metavar="PX",
                        help="resize the shortest image side to PX before the network (default: the config's "
                             "INPUT.MIN_SIZE_TEST; 0 keeps the native size)")
    parser.add_argument("--no-vis", action="store_true", help="skip the colour overlay and colour depth images")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                        help="config overrides as KEY VALUE pairs, e.g. --opts MODEL.INFERENCE.INST_THRES 0.4")


def collect_inputs(paths: list[str]) -> list[Path]:
    """Files named on the command line, and the frames inside folders; an error names a path that has none."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            frames = sorted(path.glob("*_leftImg8bit.png"))
            if not frames:
                frames = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_EXTENSIONS)
            if not frames:
                raise FileNotFoundError(f"--input {path}: the folder holds no .png or .jpg images")
            files.extend(frames)
        else:
            raise FileNotFoundError(f"--input {path}: no such file or folder")
    return files


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from panopticdepth_core.checkpoint.io import CheckpointError
    from panopticdepth_core.config import ConfigError
    from panopticdepth_core.data.image_io import read_rgb
    from panopticdepth_core.evaluation.result_io import write_prediction
    from panopticdepth_core.inference.model_files import ModelFilesError, resolve_model
    from panopticdepth_core.inference.predictor import Predictor

    try:
        inputs = collect_inputs(args.input)
    except FileNotFoundError as exc:
        print(f"panopticdepth predict: {exc}", file=sys.stderr)
        return 2
    try:  # the same rule as `panopticdepth bag` and the node: weights alone bring their own config
        model = resolve_model(args.config, args.weights, args.opts)
        predictor = Predictor(model.cfg, model.weights, device=args.device, precision=args.precision,
                              min_size=args.min_size)
    except (ModelFilesError, ConfigError, CheckpointError) as exc:
        print(f"panopticdepth predict: error: {exc}", file=sys.stderr)
        return 1
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    max_depth = predictor.cfg.MODEL.DEPTH_HEAD.MAX_DEPTH
    for path in tqdm(inputs, desc="predict", unit="img", disable=args.quiet):
        image = read_rgb(path)
        pred = predictor(image)
        write_prediction(out, path.name, pred.semantic, pred.instance, pred.depth,
                         image=None if args.no_vis else image, max_depth=max_depth)
    print(f"wrote predictions for {len(inputs)} image(s) to {out}")
    return 0
