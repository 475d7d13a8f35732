"""SemKITTI-DPS (ViP-DeepLab's SemKITTI-DVPS) reader: KITTI odometry frames with sparse LiDAR depth.

Layout of a split folder (``{seq}_{frame}``, e.g. ``000008_000000``):

- ``{prefix}_leftImg8bit.png``: 8-bit RGB image (KITTI image_2, about 1241x376);
- ``{prefix}_gtFine_class.png``: 8- or 16-bit, SemanticKITTI train ids 0..18 (things first: car .. motorcyclist
  are 0..7), 255 void;
- ``{prefix}_gtFine_instance.png``: 8- or 16-bit, instance id per thing (0: none);
- ``{prefix}_depth_{focal}.png``: 16-bit, ``metres * 256`` from projected LiDAR (sparse), 0 = no return; the
  number in the name is the camera's focal length in pixels.

Class order: the network's head layout puts thing classes last (see ``classes.py``), so by default the reader
maps SemanticKITTI's ids to ``SEMKITTI_CLASSES`` (11 stuff classes 0..10, then the 8 things 11..18). Pass
``things_last=False`` to keep the file's ids.

Intrinsics (an assumption, documented in docs/datasets.md): fx = fy = the focal length from the depth file's
name, principal point at the image centre ((W - 1) / 2, (H - 1) / 2). KITTI's real principal point is some
tens of pixels off centre; pass ``calib`` (a KITTI ``calib.txt`` with a ``P2:`` line, a Cityscapes camera JSON,
or a folder with ``{seq}/calib.txt`` per sequence) for exact values.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .cityscapes_dps import parse_frame_name, read_camera_json
from .classes import ClassInfo
from .image_io import DataError, read_label, read_png_header, read_rgb, read_uint16
from .sample import Sample

IMAGE_SUFFIX = "_leftImg8bit.png"
CLASS_SUFFIX = "_gtFine_class.png"
INSTANCE_SUFFIX = "_gtFine_instance.png"
_DEPTH_RE = re.compile(r"^(?P<prefix>.+)_depth_(?P<focal>[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)\.png$")
DEPTH_SCALE = 256.0
NUM_SEMKITTI_THINGS = 8

# In our order (stuff first, things last); colours are SemanticKITTI's, in RGB.
SEMKITTI_CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo(0, "road", False, (255, 0, 255)),
    ClassInfo(1, "parking", False, (255, 150, 255)),
    ClassInfo(2, "sidewalk", False, (75, 0, 75)),
    ClassInfo(3, "other-ground", False, (175, 0, 75)),
    ClassInfo(4, "building", False, (255, 200, 0)),
    ClassInfo(5, "fence", False, (255, 120, 50)),
    ClassInfo(6, "vegetation", False, (0, 175, 0)),
    ClassInfo(7, "trunk", False, (135, 60, 0)),
    ClassInfo(8, "terrain", False, (150, 240, 80)),
    ClassInfo(9, "pole", False, (255, 240, 150)),
    ClassInfo(10, "traffic-sign", False, (255, 0, 0)),
    ClassInfo(11, "car", True, (100, 150, 245)),
    ClassInfo(12, "bicycle", True, (100, 230, 245)),
    ClassInfo(13, "motorcycle", True, (30, 60, 150)),
    ClassInfo(14, "truck", True, (80, 30, 180)),
    ClassInfo(15, "other-vehicle", True, (0, 0, 255)),
    ClassInfo(16, "person", True, (255, 30, 30)),
    ClassInfo(17, "bicyclist", True, (255, 40, 200)),
    ClassInfo(18, "motorcyclist", True, (150, 30, 90)),
)


def semkitti_to_ours() -> np.ndarray:
    """Lookup table (256,) from SemanticKITTI train ids (things 0..7, stuff 8..18) to ours; 255 elsewhere."""
    table = np.full(256, 255, dtype=np.int32)
    table[:NUM_SEMKITTI_THINGS] = np.arange(NUM_SEMKITTI_THINGS) + 11
    table[NUM_SEMKITTI_THINGS:19] = np.arange(19 - NUM_SEMKITTI_THINGS)
    return table


def parse_kitti_calib(path: str | Path) -> np.ndarray:
    """The (3, 3) K of camera 2 (left colour) from a KITTI ``calib.txt`` (``P2: 12 numbers``)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the calibration file ({exc})", path) from exc
    for line in lines:
        key, _, values = line.partition(":")
        if key.strip() == "P2":
            try:
                proj = np.array([float(v) for v in values.split()], dtype=np.float64).reshape(3, 4)
            except ValueError as exc:
                raise DataError(f"{path}: the P2 line must hold 12 numbers ({exc})", path) from exc
            return proj[:, :3].copy()
    raise DataError(f"{path}: no 'P2:' line (expected a KITTI calib.txt)", path)


class SemKittiDPSDataset:
    """A SemKITTI-DPS split folder as a map-style data set of ``Sample``."""

    name = "semkitti_dps"

    def __init__(
        self,
        root_split_dir: str | Path,
        transform: Callable[[Sample], Any] | None = None,
        calib: str | Path | None = None,
        things_last: bool = True,
    ) -> None:
        self.root = Path(root_split_dir)
        self.transform = transform
        self.calib = None if calib is None else Path(calib)
        self.things_last = things_last
        self.classes = SEMKITTI_CLASSES if things_last else None
        self._table = semkitti_to_ours()
        self.frames = self._index()
        self._calib_cache: dict[str, np.ndarray | None] = {}

    def _index(self) -> list[dict[str, Any]]:
        if not self.root.is_dir():
            raise DataError(f"{self.root}: not a folder (expected a SemKITTI-DPS split folder)", self.root)
        names = {p.name for p in self.root.iterdir()}
        depth_of: dict[str, list[tuple[str, float]]] = {}
        for name in names:
            if (m := _DEPTH_RE.match(name)) is not None:
                depth_of.setdefault(m.group("prefix"), []).append((name, float(m.group("focal"))))
        prefixes = sorted(n[: -len(IMAGE_SUFFIX)] for n in names if n.endswith(IMAGE_SUFFIX))
        if not prefixes:
            raise DataError(f"{self.root}: no *{IMAGE_SUFFIX} images found (expected the SemKITTI-DPS layout)", self.root)
        problems: list[str] = []
        prefix_set = set(prefixes)
        for name in sorted(names):
            for suffix in (CLASS_SUFFIX, INSTANCE_SUFFIX):
                if name.endswith(suffix) and name[: -len(suffix)] not in prefix_set:
                    problems.append(f"{name}: label file without an image")
        for prefix in sorted(set(depth_of) - prefix_set):
            problems.append(f"{depth_of[prefix][0][0]}: depth file without an image")
        frames = []
        for prefix in prefixes:
            parsed = parse_frame_name(prefix)
            depth = depth_of.get(prefix, [])
            missing = [prefix + s for s in (CLASS_SUFFIX, INSTANCE_SUFFIX) if prefix + s not in names]
            if parsed is None:
                problems.append(f"{prefix}{IMAGE_SUFFIX}: name does not follow {{sequence}}_{{frame}}_leftImg8bit.png")
            elif missing or len(depth) != 1:
                problems.extend(f"{m}: missing for image {prefix}{IMAGE_SUFFIX}" for m in missing)
                if not depth:
                    problems.append(f"{prefix}_depth_{{focal}}.png: missing for image {prefix}{IMAGE_SUFFIX}")
                elif len(depth) > 1:
                    problems.append(f"{prefix}: several depth files {sorted(d[0] for d in depth)}")
            else:
                try:
                    height, width = self._check_headers(prefix, depth[0][0])
                except DataError as exc:
                    problems.append(str(exc))
                    continue
                frames.append({"prefix": prefix, "sequence": parsed[0], "frame": parsed[1], "depth": depth[0][0],
                               "focal": depth[0][1], "height": height, "width": width})
        if problems:
            shown = "\n  ".join(problems[:50])
            more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
            raise DataError(f"{self.root}: {len(problems)} problem(s) in the SemKITTI-DPS layout:\n  {shown}{more}",
                            self.root)
        return frames

    def _check_headers(self, prefix: str, depth_name: str) -> tuple[int, int]:
        image = read_png_header(self.root / (prefix + IMAGE_SUFFIX))
        if (image.bit_depth, image.color_type) != (8, 2):
            raise DataError(f"{prefix}{IMAGE_SUFFIX}: expected an 8-bit RGB PNG, got {image.kind}")
        for name, depths in ((prefix + CLASS_SUFFIX, (8, 16)), (prefix + INSTANCE_SUFFIX, (8, 16)), (depth_name, (16,))):
            header = read_png_header(self.root / name)
            if header.color_type != 0 or header.bit_depth not in depths:
                want = " or ".join(f"{d}-bit" for d in depths)
                raise DataError(f"{name}: expected a {want} grayscale PNG, got {header.kind}")
            if (header.height, header.width) != (image.height, image.width):
                raise DataError(f"{name}: size {header.width}x{header.height} differs from its image's "
                                f"{image.width}x{image.height}")
        return image.height, image.width

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> Any:
        sample = self.read(index)
        return sample if self.transform is None else self.transform(sample)

    def _intrinsics(self, frame: dict[str, Any]) -> np.ndarray:
        if self.calib is not None:
            k = self._calib_for(frame["sequence"])
            if k is not None:
                return k.copy()
        cx, cy = (frame["width"] - 1) / 2.0, (frame["height"] - 1) / 2.0
        f = frame["focal"]
        return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]], dtype=np.float64)

    def _calib_for(self, sequence: str) -> np.ndarray | None:
        if sequence not in self._calib_cache:
            path = self.calib
            if path.is_dir():
                candidates = [path / sequence / "calib.txt"]
                if sequence.isdigit():
                    candidates.append(path / f"{int(sequence):02d}" / "calib.txt")
                path = next((c for c in candidates if c.is_file()), None)
            if path is None:
                k = None
            elif path.suffix == ".json":
                k = read_camera_json(path)
            else:
                k = parse_kitti_calib(path)
            self._calib_cache[sequence] = k
        return self._calib_cache[sequence]

    def read(self, index: int) -> Sample:
        """The frame as stored (no transform), classes remapped to ``SEMKITTI_CLASSES`` when things_last."""
        frame = self.frames[index]
        prefix = frame["prefix"]
        image = read_rgb(self.root / (prefix + IMAGE_SUFFIX))
        size = image.shape[:2]
        classes = read_label(self.root / (prefix + CLASS_SUFFIX), "SemanticKITTI train ids", expected_size=size)
        inst = read_label(self.root / (prefix + INSTANCE_SUFFIX), "instance ids", expected_size=size)
        depth = read_uint16(self.root / frame["depth"], "depth in metres * 256", expected_size=size)
        if self.things_last:
            semantic = self._table[np.clip(classes, 0, 255)]  # values above 255 (16-bit files) -> void
            is_thing = (semantic >= 11) & (semantic != 255)
        else:
            semantic = np.where((classes >= 0) & (classes < 19), classes, 255).astype(np.int32)
            is_thing = semantic < NUM_SEMKITTI_THINGS
        instance = np.zeros(size, dtype=np.int32)
        has_instance = is_thing & (inst > 0)
        if has_instance.any():
            key = semantic[has_instance].astype(np.int64) * 65536 + inst[has_instance]
            _, dense = np.unique(key, return_inverse=True)
            instance[has_instance] = dense.reshape(-1).astype(np.int32) + 1
        return Sample(
            image=image,
            semantic=semantic.astype(np.int32),
            instance=instance,
            depth=depth.astype(np.float32) / DEPTH_SCALE,
            intrinsics=self._intrinsics(frame),
            name=prefix,
            sequence=frame["sequence"],
            frame=frame["frame"],
            meta={"dataset": self.name, "image_path": str(self.root / (prefix + IMAGE_SUFFIX)),
                  "focal": frame["focal"]},
        )
