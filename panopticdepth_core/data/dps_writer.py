"""Writes one ``Sample`` as a frame of the Cityscapes-DPS layout (ViP-DeepLab's Cityscapes-DVPS, flat per split).

Files of frame ``{seq:06d}_{frame:06d}_{city}_{seq:06d}_{frame:06d}`` in the split folder:

- ``..._leftImg8bit.png``: 8-bit RGB PNG;
- ``..._gtFine_instanceTrainIds.png``: 16-bit grayscale PNG, per pixel ``train_id * 1000 + instance`` for thing
  pixels with an instance (instance 1..999), ``train_id * 1000`` for stuff (and for thing pixels without an
  instance, i.e. crowd), and ``32000`` for void (semantic 255), the value ViP-DeepLab's data and the released
  PanopticDepth mapper use (train ids above 18 read as void);
- ``..._depth.png``: 16-bit grayscale PNG, ``round(depth_metres * 256)`` clipped to 65535 (255.996 m),
  ``0`` = no depth (sky, no return, invalid); written only when the sample has depth;
- ``..._camera.json``: Cityscapes camera file ``{"intrinsic": {"fx", "fy", "u0", "v0"}, "extrinsic": {...}}``,
  written when the sample has intrinsics; ``extrinsic`` (Cityscapes vehicle frame: x forward, y left, z up;
  pitch positive looking down, radians) is copied from ``sample.meta["extrinsic"]`` when present.

PNGs are written by Pillow with fixed settings (zlib level 1, no optimisation, no metadata chunks), so the same
sample gives the same bytes with the same Pillow/zlib build; decoded pixels are always identical.
``decode_instance_train_ids`` and ``decode_depth`` invert the encodings exactly (up to depth quantisation).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from .classes import LABEL_DIVISOR, NUM_CLASSES, THING_IDS, VOID_CLASS
from .sample import Sample

VOID_VALUE = 32 * LABEL_DIVISOR
DEPTH_SCALE = 256.0
MAX_DEPTH_VALUE = 65535
PNG_COMPRESS_LEVEL = 1
SUFFIXES = {
    "image": "_leftImg8bit.png",
    "label": "_gtFine_instanceTrainIds.png",
    "depth": "_depth.png",
    "camera": "_camera.json",
}


def frame_prefix(seq: int, frame: int, city: str = "synth") -> str:
    """``{seq:06d}_{frame:06d}_{city}_{seq:06d}_{frame:06d}``: Cityscapes-DVPS file naming."""
    if seq < 0 or frame < 0:
        raise ValueError(f"seq and frame must be non-negative, got seq={seq}, frame={frame}")
    if not city or "_" in city or "/" in city or "\\" in city:
        raise ValueError(f"city must be a non-empty name without '_' or path separators, got {city!r}")
    return f"{seq:06d}_{frame:06d}_{city}_{seq:06d}_{frame:06d}"


def encode_instance_train_ids(semantic: np.ndarray, instance: np.ndarray, name: str = "") -> np.ndarray:
    """(H, W) semantic train ids (255 void) + instance ids -> (H, W) uint16 ``train_id * 1000 + instance``."""
    semantic = np.asarray(semantic)
    instance = np.asarray(instance)
    void = semantic == VOID_CLASS
    known = (semantic >= 0) & (semantic < NUM_CLASSES)
    if not (void | known).all():
        bad = np.unique(semantic[~(void | known)])[:10].tolist()
        raise ValueError(f"sample {name!r}: semantic ids must be 0..{NUM_CLASSES - 1} or {VOID_CLASS}, found {bad}")
    thing = np.isin(semantic, THING_IDS)
    if (instance < 0).any() or (instance >= LABEL_DIVISOR).any():
        raise ValueError(f"sample {name!r}: instance ids must be 0..{LABEL_DIVISOR - 1} to fit train_id * "
                         f"{LABEL_DIVISOR} + instance, found {int(instance.min())}..{int(instance.max())}")
    if (instance[~thing] != 0).any():
        raise ValueError(f"sample {name!r}: instance ids must be 0 on stuff and void pixels")
    out = np.where(void, VOID_VALUE, semantic.astype(np.int64) * LABEL_DIVISOR + instance)
    return out.astype(np.uint16)


def decode_instance_train_ids(encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``encode_instance_train_ids``: -> (semantic int32 with 255 void, instance int32 as stored)."""
    encoded = np.asarray(encoded).astype(np.int64)
    semantic = encoded // LABEL_DIVISOR
    void = semantic >= NUM_CLASSES
    return (np.where(void, VOID_CLASS, semantic).astype(np.int32),
            np.where(void, 0, encoded % LABEL_DIVISOR).astype(np.int32))


def encode_depth(depth: np.ndarray) -> np.ndarray:
    """(H, W) metres (0 / negative / non-finite = invalid) -> (H, W) uint16 ``round(m * 256)``, 0 invalid."""
    depth = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    scaled = np.where(valid, np.rint(np.where(valid, depth, 0.0) * DEPTH_SCALE), 0.0)
    # a valid depth below 1/512 m would round to 0 (= invalid): keep it valid at the smallest step
    scaled = np.where(valid & (scaled < 1), 1.0, scaled)
    return np.clip(scaled, 0, MAX_DEPTH_VALUE).astype(np.uint16)


def decode_depth(encoded: np.ndarray) -> np.ndarray:
    """Inverse of ``encode_depth``: -> float32 metres, 0 = invalid."""
    return (np.asarray(encoded).astype(np.float32) / np.float32(DEPTH_SCALE)).astype(np.float32)


def camera_json(sample: Sample) -> dict:
    """Cityscapes camera file contents for a sample with intrinsics."""
    k = np.asarray(sample.intrinsics, dtype=np.float64)
    data: dict = {"intrinsic": {"fx": float(k[0, 0]), "fy": float(k[1, 1]), "u0": float(k[0, 2]),
                                "v0": float(k[1, 2])}}
    extrinsic = sample.meta.get("extrinsic") if sample.meta else None
    if extrinsic:
        data["extrinsic"] = {str(key): float(value) for key, value in extrinsic.items()}
    return data


def _save_png(array: np.ndarray, path: Path) -> None:
    image = _gray16(array) if array.dtype == np.uint16 else Image.fromarray(array)
    image.save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)


def _gray16(array: np.ndarray) -> Image.Image:
    """A 16-bit grayscale Pillow image from a uint16 array (independent of the machine's byte order)."""
    data = np.ascontiguousarray(array, dtype="<u2")
    return Image.frombytes("I;16", (data.shape[1], data.shape[0]), data.tobytes())


def write_dps_frame(split_dir: Path, sample: Sample, seq: int, frame: int, city: str = "synth") -> dict[str, Path]:
    """Write ``sample`` into ``split_dir`` (created if needed) -> {"image", "label", "depth"?, "camera"?: path}."""
    split_dir = Path(split_dir)
    prefix = frame_prefix(seq, frame, city)
    split_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: split_dir / f"{prefix}{suffix}" for key, suffix in SUFFIXES.items()}
    label = encode_instance_train_ids(sample.semantic, sample.instance, sample.name)
    written: dict[str, Path] = {}
    _save_png(np.ascontiguousarray(sample.image), paths["image"])
    written["image"] = paths["image"]
    _save_png(label, paths["label"])
    written["label"] = paths["label"]
    if sample.depth is not None:
        _save_png(encode_depth(sample.depth), paths["depth"])
        written["depth"] = paths["depth"]
    if sample.intrinsics is not None:
        with open(paths["camera"], "w", encoding="utf-8", newline="\n") as f:
            json.dump(camera_json(sample), f, indent=2, sort_keys=True)
            f.write("\n")
        written["camera"] = paths["camera"]
    return written
