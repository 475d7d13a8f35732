"""Prediction and ground-truth files in the Cityscapes-DVPS layout that the official DVPQ evaluator reads.

Predictions (one pair per input frame, in one folder, as PanopticDepth's ``eval_cityscapes_dvpq.py`` expects):

* ``<stem>_panoptic.png``: 8-bit RGB, R = class (train id), G = instance (0 for stuff, 1..255 for things),
  B = 0. Void is written as R = 19, G = 0: the id both official scripts give to depth-invalidated pixels, so it
  is neither matched nor counted (R = 255 would make them index past their 20-class arrays).
* ``<stem>_depth.png``: 16-bit grey, round(metres * 256), 0 = no depth (so at most 255.996 m).
* for people (in ``vis/``, which the official scripts do not read): ``<stem>_overlay.png``, ``<stem>_depth_color.png``.

``<stem>`` is the input image name without extension and without a ``_leftImg8bit`` suffix, so
``000000_000000_munster_000105_000004_leftImg8bit.png`` gives ``000000_000000_munster_000105_000004_panoptic.png``.

Ground truth (ViP-DeepLab's ``video_sequence/{train,val}``): ``<stem>_gtFine_instanceTrainIds.png`` holding
train id * 1000 + instance (void: class 32, i.e. any class outside the evaluated list), and ``<stem>_depth.png``
in metres * 256 (0 = invalid). Cityscapes-DVPS stems start ``<sequence>_<frame>_``, which gives DVPQ its sequences.

16-bit PNGs are read as integers and converted to float before any difference, so nothing wraps around.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.classes import LABEL_DIVISOR, VOID_CLASS

PANOPTIC_SUFFIX = "_panoptic.png"
DEPTH_SUFFIX = "_depth.png"
GT_PANOPTIC_SUFFIX = "_gtFine_instanceTrainIds.png"
GT_DEPTH_SUFFIX = "_depth.png"
IMAGE_SUFFIX = "_leftImg8bit"
VIS_DIR = "vis"
OVERLAY_SUFFIX = "_overlay.png"
DEPTH_COLOR_SUFFIX = "_depth_color.png"
#: Class written for void prediction pixels (see module docstring); must not be an evaluated class.
PRED_VOID_CLASS = 19
DEPTH_SCALE = 256.0
_KNOWN_SUFFIXES = (IMAGE_SUFFIX, "_gtFine_instanceTrainIds", "_panoptic", "_depth")
_SEQUENCE_PATTERN = re.compile(r"^(\d+)_(\d+)_")


def frame_stem(name: str | Path) -> str:
    """Input, prediction or ground-truth file name -> the frame stem shared by all of them."""
    stem = Path(name).name
    for extension in (".png", ".jpg", ".jpeg", ".ppm", ".bmp"):
        if stem.lower().endswith(extension):
            stem = stem[: -len(extension)]
            break
    for suffix in _KNOWN_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def sequence_and_frame(stem: str) -> tuple[str | None, int | None]:
    """Cityscapes-DVPS stems ``<sequence>_<frame>_...`` -> (sequence, frame); (None, None) for other names."""
    match = _SEQUENCE_PATTERN.match(stem)
    if match is None:
        return None, None
    return match.group(1), int(match.group(2))


def encode_panoptic(semantic: np.ndarray, instance: np.ndarray, num_classes: int = 19) -> np.ndarray:
    """(H, W) class / instance maps -> (H, W, 3) uint8 RGB in the official layout (void -> R = PRED_VOID_CLASS)."""
    semantic = np.asarray(semantic)
    instance = np.asarray(instance)
    if semantic.shape != instance.shape or semantic.ndim != 2:
        raise ValueError(f"semantic {semantic.shape} and instance {instance.shape} must be the same (H, W) shape")
    if num_classes > PRED_VOID_CLASS:
        raise ValueError(f"the official layout marks void with class {PRED_VOID_CLASS}; it cannot hold "
                         f"{num_classes} classes")
    sem = semantic.astype(np.int64)
    void = (sem < 0) | (sem >= num_classes)
    inst = np.where(void, 0, instance.astype(np.int64))
    if inst.size and (inst.min() < 0 or inst.max() > 255):
        raise ValueError(f"instance ids must lie in [0, 255] to fit the PNG's green channel, got "
                         f"[{inst.min()}, {inst.max()}]")
    rgb = np.zeros((*sem.shape, 3), dtype=np.uint8)
    rgb[..., 0] = np.where(void, PRED_VOID_CLASS, sem)
    rgb[..., 1] = inst
    return rgb


def decode_panoptic(rgb: np.ndarray, num_classes: int = 19) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) official-layout RGB -> (semantic int32 with 255 void, instance int32 with 0 on void)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 2:
        raise ValueError(f"a panoptic prediction PNG must be RGB (R = class, G = instance), got shape {rgb.shape}")
    sem = rgb[..., 0].astype(np.int32)
    void = sem >= num_classes
    semantic = np.where(void, VOID_CLASS, sem).astype(np.int32)
    instance = np.where(void, 0, rgb[..., 1].astype(np.int32)).astype(np.int32)
    return semantic, instance


def encode_depth(depth: np.ndarray) -> np.ndarray:
    """(H, W) metres -> uint16 metres * 256 (rounded; invalid, negative or NaN -> 0; clipped at 65535)."""
    depth = np.asarray(depth, dtype=np.float64)
    scaled = np.where(np.isfinite(depth) & (depth > 0), depth * DEPTH_SCALE, 0.0)
    return np.clip(np.round(scaled), 0, 65535).astype(np.uint16)


def read_png(path: str | Path) -> np.ndarray:
    """A PNG as a numpy array with its stored integer type (16-bit grey stays uint16 or int32, never 8-bit)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with Image.open(path) as image:
        return np.array(image)


def read_depth(path: str | Path) -> np.ndarray:
    """A metres * 256 depth PNG -> (H, W) float32 metres, 0 = invalid."""
    raw = read_png(path)
    if raw.ndim != 2:
        raise ValueError(f"{path}: a depth PNG must be single-channel 16-bit (metres * 256), got shape {raw.shape}")
    return (raw.astype(np.float64) / DEPTH_SCALE).astype(np.float32)


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@dataclass
class PredictionPaths:
    panoptic: Path
    depth: Path | None = None
    overlay: Path | None = None
    depth_color: Path | None = None


def write_prediction(out_dir: str | Path, name: str, semantic: np.ndarray, instance: np.ndarray,
                     depth: np.ndarray | None = None, image: np.ndarray | None = None, num_classes: int = 19,
                     max_depth: float = 80.0) -> PredictionPaths:
    """Write one frame's prediction in the official layout; with ``image`` (RGB) also the two colour images.

    ``name`` is the input frame's file name (or its stem); semantic uses 255 for void, instance 0 for stuff.
    """
    from ..inference.visualize import colorize_depth, colorize_panoptic, overlay

    out_dir = Path(out_dir)
    stem = frame_stem(name)
    paths = PredictionPaths(panoptic=out_dir / f"{stem}{PANOPTIC_SUFFIX}")
    write_png(paths.panoptic, encode_panoptic(semantic, instance, num_classes))
    if depth is not None:
        paths.depth = out_dir / f"{stem}{DEPTH_SUFFIX}"
        write_png(paths.depth, encode_depth(depth))
    if image is not None:
        paths.overlay = out_dir / VIS_DIR / f"{stem}{OVERLAY_SUFFIX}"
        labels = np.asarray(semantic).astype(np.int64) * LABEL_DIVISOR + np.asarray(instance)
        write_png(paths.overlay, overlay(np.asarray(image), colorize_panoptic(semantic, instance), labels=labels))
        if depth is not None:
            paths.depth_color = out_dir / VIS_DIR / f"{stem}{DEPTH_COLOR_SUFFIX}"
            write_png(paths.depth_color, colorize_depth(depth, max_depth=max_depth))
    return paths


def read_prediction(panoptic_path: str | Path, depth_path: str | Path | None = None,
                    num_classes: int = 19) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read a ``*_panoptic.png`` (and optional ``*_depth.png``) -> (semantic, instance, depth metres or None)."""
    semantic, instance = decode_panoptic(read_png(panoptic_path), num_classes)
    depth = read_depth(depth_path) if depth_path is not None else None
    return semantic, instance, depth


def decode_ground_truth(ids: np.ndarray, num_classes: int = 19) -> tuple[np.ndarray, np.ndarray]:
    """train id * 1000 + instance -> (semantic int32 with 255 void, instance int32 with 0 on void)."""
    ids = np.asarray(ids).astype(np.int64)
    if ids.ndim != 2:
        raise ValueError(f"a ground-truth id map must be single-channel, got shape {ids.shape}")
    cls = ids // LABEL_DIVISOR
    void = (ids < 0) | (cls >= num_classes)
    semantic = np.where(void, VOID_CLASS, cls).astype(np.int32)
    instance = np.where(void, 0, ids % LABEL_DIVISOR).astype(np.int32)
    return semantic, instance


def read_ground_truth(panoptic_path: str | Path, depth_path: str | Path | None = None,
                      num_classes: int = 19) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read ``*_gtFine_instanceTrainIds.png`` (and optional ``*_depth.png``) -> (semantic, instance, depth)."""
    path = Path(panoptic_path)
    raw = read_png(path)
    if raw.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel id map (train id * 1000 + instance), got {raw.shape}")
    semantic, instance = decode_ground_truth(raw, num_classes)
    depth = read_depth(depth_path) if depth_path is not None else None
    return semantic, instance, depth


@dataclass
class FramePair:
    """The files of one evaluated frame."""

    stem: str
    gt_panoptic: Path
    gt_depth: Path | None
    pred_panoptic: Path
    pred_depth: Path | None
    sequence: str | None
    frame: int | None


def _index(folder: Path, suffix: str, what: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob(f"*{suffix}")):
        if VIS_DIR in path.relative_to(folder).parts[:-1]:
            continue
        stem = path.name[: -len(suffix)]
        if stem in found:
            raise ValueError(f"two {what} files for frame {stem!r}: {found[stem]} and {path}")
        found[stem] = path
    return found


def pair_frames(pred_dir: str | Path, gt_dir: str | Path) -> list[FramePair]:
    """Match every ground-truth frame under gt_dir with its prediction under pred_dir (by frame stem)."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for folder, flag in ((pred_dir, "--pred"), (gt_dir, "--gt")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{flag} folder does not exist: {folder}")
    if pred_dir.resolve() == gt_dir.resolve():
        raise ValueError(f"--pred and --gt are the same folder ({pred_dir}); both layouts use *{DEPTH_SUFFIX}")
    gt_index = _index(gt_dir, GT_PANOPTIC_SUFFIX, "ground-truth")
    if not gt_index:
        raise FileNotFoundError(f"no ground truth '*{GT_PANOPTIC_SUFFIX}' under {gt_dir}")
    pred_index = _index(pred_dir, PANOPTIC_SUFFIX, "prediction")
    missing = [stem for stem in gt_index if stem not in pred_index]
    if missing:
        shown = ", ".join(f"{s}{PANOPTIC_SUFFIX}" for s in missing[:3])
        raise FileNotFoundError(f"{len(missing)} of {len(gt_index)} ground-truth frames have no prediction in "
                                f"{pred_dir} (e.g. {shown})")
    pairs = []
    for stem, gt_path in gt_index.items():
        pred_path = pred_index[stem]
        gt_depth = gt_path.with_name(f"{stem}{GT_DEPTH_SUFFIX}")
        pred_depth = pred_path.with_name(f"{stem}{DEPTH_SUFFIX}")
        sequence, frame = sequence_and_frame(stem)
        pairs.append(FramePair(stem, gt_path, gt_depth if gt_depth.is_file() else None, pred_path,
                               pred_depth if pred_depth.is_file() else None, sequence, frame))
    return pairs
