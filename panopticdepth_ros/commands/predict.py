"""`panopticdepth predict`: run the model on image files and write what the official evaluator reads.

For each input ``X_leftImg8bit.png`` (or any ``X.png`` / ``X.jpg``) it writes ``OUT/X_panoptic.png`` (R = class,
G = instance) and ``OUT/X_depth.png`` (uint16, metres * 256), plus ``OUT/vis/X_overlay.png`` and
``OUT/vis/X_depth_color.png`` for people. `panopticdepth eval --pred OUT --gt GT` scores them.

Metric depth needs the camera's focal length (the model's depth is for its canonical camera and is scaled by
fx / fx_canonical): ``--focal PX`` for every image, else each image's Cityscapes camera file
(``X_camera.json`` next to it, as `synth`, `extract` and Cityscapes write them), else the model's canonical camera
is assumed (said once).

Video: inputs named in the Cityscapes-DVPS way (``<sequence>_<frame>_...``) are tracked within each sequence
(one tracker per sequence, frames in frame order), so a thing keeps its instance id and `panopticdepth eval`'s
DVPQ at k > 1 rewards it; ``--sequence`` treats all inputs as one sequence in the given order, ``--no-track`` numbers
things per frame. Instance ids stay below 256 (the PNG's green channel): the tracker recycles the id retired
longest ago after 255 things of a class.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .argtypes import positive_number

_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, nargs="+", metavar="PATH",
                        help="image files and/or folders (a folder in the Cityscapes-DPS layout: its "
                             "*_leftImg8bit.png frames; any other folder: its .png/.jpg files)")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the prediction files")
    parser.add_argument("--config", metavar="YAML", help="model config (default: the config stored in the weights "
                        "file; with neither flag, the shipped small model)")
    parser.add_argument("--weights", metavar="FILE", help="model weights, .safetensors, or an .onnx of "
                        "`panopticdepth export` run through onnxruntime (default: the shipped model)")
    parser.add_argument("--providers", default=None, metavar="LIST",
                        help="onnxruntime execution providers for an .onnx --weights: auto (default: TensorRT, "
                             "CUDA, CPU, whichever exist) or a comma-separated list of cpu, cuda, tensorrt")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default cpu)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"),
                        help="network precision; post-processing always runs in fp32 (default fp32)")
    parser.add_argument("--min-size", type=int, default=None, metavar="PX",
                        help="resize the shortest image side to PX before the network (default: the config's "
                             "INPUT.MIN_SIZE_TEST; 0 keeps the native size)")
    parser.add_argument("--focal", type=positive_number, default=None, metavar="PX",
                        help="the camera's focal length fx in pixels at the images' resolution, for metric depth "
                             "(default: each image's X_camera.json when present, else the model's canonical "
                             "camera is assumed)")
    parser.add_argument("--no-vis", action="store_true", help="skip the colour overlay and colour depth images")
    parser.add_argument("--sequence", action="store_true",
                        help="the inputs are one video in the given order: track through all of them (default: "
                             "track within each Cityscapes-DVPS sequence <seq>_<frame>_..., other files alone)")
    parser.add_argument("--no-track", action="store_true",
                        help="number things 1..N per frame, no tracking (instance ids change from frame to frame)")
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


def image_focals(inputs: list[Path], focal: float | None) -> list[float | None]:
    """Each image's fx: ``focal`` if given, else its camera file's (None without one).

    A camera file that cannot be read raises DataError naming it.
    """
    from panopticdepth_core.data.cityscapes_dps import camera_file_for_image, read_camera_json

    if focal is not None:
        return [focal] * len(inputs)
    focals: list[float | None] = []
    for path in inputs:
        camera = camera_file_for_image(path)
        focals.append(None if camera is None else float(read_camera_json(camera)[0, 0]))
    return focals


def depth_scale_note(predictor, focals: list[float | None]) -> str | None:
    """One line on where the depth scale comes from, when it is not the camera of every image."""
    if not predictor.depth_on:
        return None
    if predictor.focal_canonical is None:
        return ("note: the model records no canonical focal length (MODEL.CANONICAL_FOCAL); its depth is scaled by "
                "the resize factor only, which is right for its training camera alone")
    missing = sum(f is None for f in focals)
    if not missing:
        return None
    which = "any image" if missing == len(focals) else f"{missing} of {len(focals)} images"
    return (f"note: no --focal and no X_camera.json for {which}: their depth assumes the model's canonical camera "
            f"(fx = {predictor.focal_canonical:g} px at the network input); pass --focal PX for metric depth")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from panopticdepth_core.checkpoint.io import CheckpointError
    from panopticdepth_core.checkpoint.onnx_metadata import OnnxBackendError
    from panopticdepth_core.config import ConfigError
    from panopticdepth_core.data.cityscapes_dps import camera_file_for_image
    from panopticdepth_core.data.image_io import DataError, read_rgb
    from panopticdepth_core.evaluation.result_io import write_prediction
    from panopticdepth_core.inference.model_files import ModelFilesError, resolve_model
    from panopticdepth_core.inference.predictor import Predictor
    from panopticdepth_core.tracking.sequences import camera_pose, frame_times, sequence_groups
    from panopticdepth_core.tracking.tracker import InstanceTracker

    try:
        inputs = collect_inputs(args.input)
    except FileNotFoundError as exc:
        print(f"panopticdepth predict: {exc}", file=sys.stderr)
        return 2
    try:
        focals = image_focals(inputs, args.focal)
    except DataError as exc:
        print(f"panopticdepth predict: error: {exc}", file=sys.stderr)
        return 1
    try:  # the same rule as `panopticdepth bag` and the node: weights alone bring their own config
        model = resolve_model(args.config, args.weights, args.opts)
        predictor = Predictor(model.cfg, model.weights, device=args.device, precision=args.precision,
                              min_size=args.min_size, providers=args.providers)
    except (ModelFilesError, ConfigError, CheckpointError, OnnxBackendError) as exc:
        print(f"panopticdepth predict: error: {exc}", file=sys.stderr)
        return 1
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    max_depth = predictor.cfg.MODEL.DEPTH_HEAD.MAX_DEPTH
    note = depth_scale_note(predictor, focals)
    if note:
        print(f"panopticdepth predict: {note}", file=sys.stderr)
    groups = sequence_groups([p.name for p in inputs], args.sequence)
    tracked = 0
    with tqdm(total=len(inputs), desc="predict", unit="img", disable=args.quiet) as bar:
        for group in groups:
            track = not args.no_track and (len(group) > 1 or args.sequence)
            tracker = InstanceTracker(_predict_tracker_settings(predictor.cfg)) if track else None
            times = frame_times([p.name for p in inputs], group)
            for index, time in zip(group, times):
                path, focal = inputs[index], focals[index]
                image = read_rgb(path)
                pred = predictor(image, focal=focal)
                instance = pred.instance
                if tracker is not None:
                    camera = camera_file_for_image(path)
                    K = _intrinsics(camera, focal, image.shape[:2])
                    frame = tracker.update(pred.panoptic, pred.segments, pred.depth, K, camera_pose(camera), time,
                                           instance=pred.instance)
                    instance = frame.instance
                    tracked += 1
                write_prediction(out, path.name, pred.semantic, instance, pred.depth,
                                 image=None if args.no_vis else image, max_depth=max_depth)
                bar.update(1)
    sequences = sum(1 for g in groups if len(g) > 1 or args.sequence)
    how = f"; tracked through {sequences} sequence(s)" if tracked else ""
    print(f"wrote predictions for {len(inputs)} image(s) to {out}{how}")
    return 0


def _predict_tracker_settings(cfg):
    """The model config's tracker settings with ids below 256 (the official layout's green channel)."""
    import dataclasses

    from panopticdepth_core.tracking.tracker import TrackerSettings

    settings = TrackerSettings.from_config(cfg) if "TRACKER" in cfg else TrackerSettings()
    return dataclasses.replace(settings, id_limit=min(settings.id_limit, 255))


def _intrinsics(camera_file, focal, size):
    """K for the tracker's 3D positions: the camera file's, else ``focal`` with a centred principal point."""
    import numpy as np

    from panopticdepth_core.data.cityscapes_dps import read_camera_json
    from panopticdepth_core.data.image_io import DataError

    if camera_file is not None:
        try:
            return read_camera_json(camera_file)
        except DataError:
            return None
    if focal is None:
        return None
    height, width = size
    return np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2], [0.0, 0.0, 1.0]])
