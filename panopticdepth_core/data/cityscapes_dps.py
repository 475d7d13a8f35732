"""Cityscapes-DPS (ViP-DeepLab's Cityscapes-DVPS) reader and folder checks, for any folder in that flat layout.

One split folder holds, per frame (``{seq}_{frame}_{city}_{cs_seq}_{cs_frame}``, e.g.
``000000_000000_munster_000168_000004``):

- ``{prefix}_leftImg8bit.png``: 8-bit RGB image (``.jpg`` accepted too, for bag extracts);
- ``{prefix}_gtFine_instanceTrainIds.png``: 16-bit grayscale, ``train_id * 1000 + instance``; values whose
  train id is above 18 (ViP-DeepLab writes 32000) are void; a thing pixel with instance 0 is a crowd region;
- ``{prefix}_depth.png``: 16-bit grayscale, ``metres * 256``, 0 = no measurement;
- optionally ``{prefix}_camera.json``: Cityscapes camera file, ``{"intrinsic": {"fx", "fy", "u0", "v0"}}``.

A folder-level ``camera.json`` (same format) applies to frames without their own. The same layout is what
``panopticdepth_core/data/dps_writer.py`` writes for synthetic scenes and bag extracts (``dps_folder:`` data sets).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .classes import LABEL_DIVISOR, NUM_CLASSES, THING_IDS, VOID_CLASS
from .image_io import DataError, image_size, read_png_header, read_rgb, read_uint16
from .sample import Sample

IMAGE_SUFFIXES = ("_leftImg8bit.png", "_leftImg8bit.jpg")
LABEL_SUFFIX = "_gtFine_instanceTrainIds.png"
DEPTH_SUFFIX = "_depth.png"
CAMERA_SUFFIX = "_camera.json"
FOLDER_CAMERA_FILE = "camera.json"
DEPTH_SCALE = 256.0  # PNG value = metres * 256
VOID_TRAIN_ID = 32  # what ViP-DeepLab writes for void pixels (as 32 * 1000)
_NAME_RE = re.compile(r"^(?P<seq>[^_]+)_(?P<frame>\d+)(?:_.*)?$")


@dataclass(frozen=True)
class FrameFiles:
    """The files of one frame in a DPS-layout folder (label/depth/camera None where absent)."""

    prefix: str
    image: Path
    label: Path | None
    depth: Path | None
    camera: Path | None
    sequence: str
    frame: int
    height: int
    width: int


def _strip(name: str, suffixes: tuple[str, ...]) -> str | None:
    for suffix in suffixes:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def parse_frame_name(prefix: str) -> tuple[str, int] | None:
    """``{seq}_{frame}_...`` -> (sequence, frame number), None if the name does not follow the layout."""
    match = _NAME_RE.match(prefix)
    if match is None:
        return None
    return match.group("seq"), int(match.group("frame"))


def _list_problems(folder: Path, problems: list[str]) -> DataError:
    shown = problems[:50]
    more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    return DataError(
        f"{folder}: {len(problems)} problem(s) in the Cityscapes-DPS layout:\n  " + "\n  ".join(shown) + more, folder
    )


def index_dps_folder(
    path: str | Path, require_labels: bool = True, require_depth: bool = True, check_headers: bool = True
) -> list[FrameFiles]:
    """Every frame of a DPS-layout folder, sorted by name; one DataError lists every problem found.

    Checks (PNG headers only, so a folder of thousands of frames takes seconds): each image has its label and
    depth (when required; when not, a folder must have them for all frames or for none), no label/depth/camera
    file lacks its image, names follow ``{seq}_{frame}_...``, and files have the expected size, bit depth and
    channels. Pixel data are not decoded: corrupt pixel data is found when a frame is read.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (expected a Cityscapes-DPS split folder of *_leftImg8bit.png files)")
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    depths: dict[str, Path] = {}
    cameras: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        name = entry.name
        if (prefix := _strip(name, IMAGE_SUFFIXES)) is not None:
            if prefix in images:
                raise _list_problems(folder, [f"{name}: a second image for frame {prefix} ({images[prefix].name})"])
            images[prefix] = entry
        elif (prefix := _strip(name, (LABEL_SUFFIX,))) is not None:
            labels[prefix] = entry
        elif (prefix := _strip(name, (DEPTH_SUFFIX,))) is not None:
            depths[prefix] = entry
        elif name != FOLDER_CAMERA_FILE and (prefix := _strip(name, (CAMERA_SUFFIX,))) is not None:
            cameras[prefix] = entry
    if not images:
        raise DataError(f"{folder}: no *_leftImg8bit.png images found (expected the Cityscapes-DPS layout)", folder)

    problems: list[str] = []
    for kind, files in (("label", labels), ("depth", depths), ("camera", cameras)):
        for prefix, file in files.items():
            if prefix not in images:
                problems.append(f"{file.name}: {kind} file without an image ({prefix}_leftImg8bit.png missing)")
    for kind, files, required, suffix in (
        ("label", labels, require_labels, LABEL_SUFFIX),
        ("depth", depths, require_depth, DEPTH_SUFFIX),
    ):
        present = [p for p in images if p in files]
        if required or present:  # required, or optional but then for every frame
            for prefix in images:
                if prefix not in files:
                    problems.append(f"{prefix}{suffix}: missing {kind} file for image {images[prefix].name}")

    frames: list[FrameFiles] = []
    for prefix, image in images.items():
        parsed = parse_frame_name(prefix)
        if parsed is None:
            problems.append(f"{image.name}: name does not follow {{sequence}}_{{frame number}}_..._leftImg8bit.png")
            continue
        height = width = 0
        if check_headers:
            try:
                height, width = _check_headers(image, labels.get(prefix), depths.get(prefix))
            except DataError as exc:
                problems.append(str(exc))
                continue
        frames.append(
            FrameFiles(prefix, image, labels.get(prefix), depths.get(prefix), cameras.get(prefix),
                       parsed[0], parsed[1], height, width)
        )
    if problems:
        raise _list_problems(folder, problems)
    return frames


def _check_headers(image: Path, label: Path | None, depth: Path | None) -> tuple[int, int]:
    if image.suffix.lower() == ".png":
        header = read_png_header(image)
        if (header.bit_depth, header.color_type) != (8, 2):
            raise DataError(f"{image.name}: expected an 8-bit RGB PNG, got {header.kind}", image)
        height, width = header.height, header.width
    else:
        height, width = image_size(image)
    for file, what in ((label, "train_id * 1000 + instance"), (depth, "depth in metres * 256")):
        if file is None:
            continue
        header = read_png_header(file)
        if (header.bit_depth, header.color_type) != (16, 0):
            raise DataError(f"{file.name}: expected a 16-bit grayscale PNG ({what}), got {header.kind}", file)
        if (header.height, header.width) != (height, width):
            raise DataError(
                f"{file.name}: size {header.width}x{header.height} differs from its image's {width}x{height}", file
            )
    return height, width


def decode_instance_train_ids(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``train_id * 1000 + instance`` map -> (semantic int32 with 255 void, instance int32 unique per frame).

    Train ids above 18 (ViP-DeepLab's 32 and anything else unknown) are void. Thing instances get ids 1..N in
    the order of their encoded values; thing pixels with instance 0 (crowd regions) keep their class and get
    instance 0, as do stuff and void pixels.
    """
    label = label.astype(np.int64, copy=False)
    semantic = label // LABEL_DIVISOR
    semantic = np.where((semantic >= 0) & (semantic < NUM_CLASSES), semantic, 255).astype(np.int32)
    is_instance = np.isin(semantic, THING_IDS) & (label % LABEL_DIVISOR > 0)
    instance = np.zeros(label.shape, dtype=np.int32)
    if is_instance.any():
        _, dense = np.unique(label[is_instance], return_inverse=True)
        instance[is_instance] = dense.reshape(-1).astype(np.int32) + 1
    return semantic, instance


def read_camera_json(path: str | Path) -> np.ndarray:
    """Cityscapes camera file -> (3, 3) float64 pinhole K."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        intr = data["intrinsic"]
        fx, fy, u0, v0 = (float(intr[k]) for k in ("fx", "fy", "u0", "v0"))
    except FileNotFoundError:
        raise DataError(f"{path}: camera file not found", path) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{path}: expected a Cityscapes camera JSON {{\"intrinsic\": {{\"fx\", \"fy\", \"u0\", \"v0\"}}}} "
            f"({type(exc).__name__}: {exc})",
            path,
        ) from exc
    if not (fx > 0 and fy > 0 and np.isfinite([fx, fy, u0, v0]).all()):
        raise DataError(f"{path}: focal lengths must be positive and finite, got fx={fx}, fy={fy}", path)
    return np.array([[fx, 0.0, u0], [0.0, fy, v0], [0.0, 0.0, 1.0]], dtype=np.float64)


def camera_file_for_image(image: str | Path) -> Path | None:
    """The Cityscapes camera file of an image file, or None: ``{stem}_camera.json`` next to it (what `synth`,
    `extract` and Cityscapes-DPS folders hold; ``stem`` without ``_leftImg8bit``), the same name in Cityscapes'
    ``camera/`` tree for a ``leftImg8bit/`` image, else the folder's ``camera.json``."""
    image = Path(image)
    stem = image.stem.removesuffix("_leftImg8bit")
    candidates = [image.with_name(stem + CAMERA_SUFFIX)]
    parts = image.parts
    if "leftImg8bit" in parts[:-1]:
        at = len(parts) - 1 - parts[::-1].index("leftImg8bit")
        candidates.append(Path(*parts[:at], "camera", *parts[at + 1:-1], stem + CAMERA_SUFFIX))
    candidates.append(image.with_name(FOLDER_CAMERA_FILE))
    return next((c for c in candidates if c.is_file()), None)


class CityscapesDPSDataset:
    """A Cityscapes-DPS split folder (or any folder in its layout) as a map-style data set of ``Sample``.

    ``camera_file``: intrinsics for frames without their own ``{prefix}_camera.json``; by default the folder's
    ``camera.json`` if there is one. ``require_labels``/``require_depth`` False accept folders without labels
    (frames read as all void) or depth (``depth`` None), e.g. images extracted from a bag.
    """

    name = "cityscapes_dps"

    def __init__(
        self,
        root_split_dir: str | Path,
        transform: Callable[[Sample], Any] | None = None,
        camera_file: str | Path | None = None,
        require_labels: bool = True,
        require_depth: bool = True,
    ) -> None:
        self.root = Path(root_split_dir)
        self.transform = transform
        self.frames = index_dps_folder(self.root, require_labels=require_labels, require_depth=require_depth)
        if camera_file is None and (self.root / FOLDER_CAMERA_FILE).is_file():
            camera_file = self.root / FOLDER_CAMERA_FILE
        self.folder_intrinsics = None if camera_file is None else read_camera_json(camera_file)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> Any:
        sample = self.read(index)
        return sample if self.transform is None else self.transform(sample)

    def read(self, index: int) -> Sample:
        """The frame as stored (no transform)."""
        files = self.frames[index]
        image = read_rgb(files.image)
        size = image.shape[:2]
        if files.label is not None:
            encoded = read_uint16(files.label, "train_id * 1000 + instance", expected_size=size)
            semantic, instance = decode_instance_train_ids(encoded)
        else:
            semantic = np.full(size, VOID_CLASS, dtype=np.int32)
            instance = np.zeros(size, dtype=np.int32)
        depth = None
        if files.depth is not None:
            depth = read_uint16(files.depth, "depth in metres * 256", expected_size=size).astype(np.float32)
            depth /= DEPTH_SCALE
        if files.camera is not None:
            intrinsics = read_camera_json(files.camera)
        else:
            intrinsics = None if self.folder_intrinsics is None else self.folder_intrinsics.copy()
        return Sample(
            image=image,
            semantic=semantic,
            instance=instance,
            depth=depth,
            intrinsics=intrinsics,
            name=files.prefix,
            sequence=files.sequence,
            frame=files.frame,
            meta={"dataset": self.name, "image_path": str(files.image), "has_labels": files.label is not None},
        )
