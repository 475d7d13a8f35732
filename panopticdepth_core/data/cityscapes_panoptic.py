"""Cityscapes panoptic reader (Detectron2's "separated" layout), for the panoptic-only training stages.

Layout under the Cityscapes root (what cityscapesscripts' ``createPanopticImgs`` produces)::

    leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    gtFine/cityscapes_panoptic_{split}.json          # COCO-panoptic style: annotations[].segments_info
    gtFine/cityscapes_panoptic_{split}/{city}_{seq}_{frame}_gtFine_panoptic.png
    camera/{split}/{city}/{city}_{seq}_{frame}_camera.json   # optional: intrinsics

Each panoptic PNG is RGB, segment id = R + 256 G + 256^2 B; pixels in no listed segment are void. Category ids
are Cityscapes label ids (7 = road ... 33 = bicycle); they are mapped to the 19 train ids through the json's
category names (or the label-id table when the json has no categories). Crowd segments keep their class with
instance 0. Depth is None.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cityscapes_dps import read_camera_json
from .classes import CLASS_NAMES, THING_IDS
from .image_io import DataError, read_png_header, read_rgb
from .sample import Sample

# Cityscapes label id -> train id for the 19 evaluated classes (cityscapesscripts' labels.py).
LABEL_ID_TO_TRAIN_ID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
IMAGE_SUFFIX = "_leftImg8bit.png"


@dataclass(frozen=True)
class PanopticFrame:
    image_id: str
    image: Path
    label: Path
    camera: Path | None
    segments: tuple[tuple[int, int, bool], ...]  # (segment id, train id or 255, is crowd)


def category_map(json_info: dict) -> dict[int, int]:
    """Category id -> train id, through the json's category names when it lists categories."""
    categories = json_info.get("categories")
    if not categories:
        return dict(LABEL_ID_TO_TRAIN_ID)
    by_name = {name: i for i, name in enumerate(CLASS_NAMES)}
    return {int(c["id"]): by_name[c["name"]] for c in categories if c.get("name") in by_name}


class CityscapesPanopticDataset:
    """Cityscapes fine panoptic annotations as a map-style data set of ``Sample`` (no depth)."""

    name = "cityscapes_panoptic"

    def __init__(self, root: str | Path, split: str, transform: Callable[[Sample], Any] | None = None) -> None:
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.frames = self._index()

    def _index(self) -> list[PanopticFrame]:
        json_path = self.root / "gtFine" / f"cityscapes_panoptic_{self.split}.json"
        label_dir = self.root / "gtFine" / f"cityscapes_panoptic_{self.split}"
        image_dir = self.root / "leftImg8bit" / self.split
        try:
            with open(json_path, encoding="utf-8") as f:
                info = json.load(f)
            annotations = info["annotations"]
        except FileNotFoundError:
            raise DataError(
                f"{json_path}: not found (expected Detectron2's Cityscapes panoptic layout; create it with "
                "cityscapesscripts' createPanopticImgs)", json_path) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{json_path}: not a panoptic annotation json with 'annotations' ({exc})",
                            json_path) from exc
        if not image_dir.is_dir():
            raise DataError(f"{image_dir}: not a folder (expected leftImg8bit/{self.split}/{{city}}/*.png)", image_dir)
        images = {p.name[: -len(IMAGE_SUFFIX)]: p for p in image_dir.glob(f"*/*{IMAGE_SUFFIX}")}
        to_train = category_map(info)
        frames: list[PanopticFrame] = []
        problems: list[str] = []
        for ann in annotations:
            image_id = str(ann.get("image_id", ""))
            image = images.get(image_id)
            label = label_dir / str(ann.get("file_name", f"{image_id}_gtFine_panoptic.png"))
            if image is None:
                problems.append(f"{label.name}: annotation without an image ({image_id}{IMAGE_SUFFIX} not found)")
                continue
            if not label.is_file():
                problems.append(f"{label}: missing panoptic PNG for image {image.name}")
                continue
            try:
                self._check_headers(image, label)
            except DataError as exc:
                problems.append(str(exc))
                continue
            segments = tuple(
                (int(s["id"]), to_train.get(int(s["category_id"]), 255), bool(s.get("iscrowd", 0)))
                for s in ann.get("segments_info", [])
            )
            city = image.parent.name
            camera = self.root / "camera" / self.split / city / f"{image_id}_camera.json"
            frames.append(PanopticFrame(image_id, image, label, camera if camera.is_file() else None, segments))
        if problems:
            shown = "\n  ".join(problems[:50])
            raise DataError(f"{json_path}: {len(problems)} problem(s):\n  {shown}", json_path)
        if not frames:
            raise DataError(f"{json_path}: no annotated images", json_path)
        return sorted(frames, key=lambda fr: fr.image_id)

    @staticmethod
    def _check_headers(image: Path, label: Path) -> None:
        img, lab = read_png_header(image), read_png_header(label)
        for path, header in ((image, img), (label, lab)):
            if (header.bit_depth, header.color_type) != (8, 2):
                raise DataError(f"{path}: expected an 8-bit RGB PNG, got {header.kind}", path)
        if (img.height, img.width) != (lab.height, lab.width):
            raise DataError(f"{label}: size {lab.width}x{lab.height} differs from its image's {img.width}x{img.height}",
                            label)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> Any:
        sample = self.read(index)
        return sample if self.transform is None else self.transform(sample)

    def has_annotations(self, index: int) -> bool:
        """Whether the json lists any labelled segment for the frame (cheap: no image is read)."""
        return any(train_id != 255 for _, train_id, _ in self.frames[index].segments)

    def read(self, index: int) -> Sample:
        """The frame as stored (no transform)."""
        frame = self.frames[index]
        image = read_rgb(frame.image)
        rgb = read_rgb(frame.label, expected_size=image.shape[:2]).astype(np.int64)
        ids = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]  # (H, W) segment ids
        unique, inverse = np.unique(ids, return_inverse=True)
        sem_of = np.full(len(unique), 255, dtype=np.int32)
        inst_of = np.zeros(len(unique), dtype=np.int32)
        position = {int(v): i for i, v in enumerate(unique)}
        next_instance = 1
        for segment_id, train_id, crowd in frame.segments:
            i = position.get(segment_id)
            if i is None or train_id == 255:
                continue
            sem_of[i] = train_id
            if train_id in THING_IDS and not crowd:
                inst_of[i] = next_instance
                next_instance += 1
        inverse = inverse.reshape(ids.shape)
        parts = frame.image_id.rsplit("_", 1)
        sequence, frame_number = (parts[0], int(parts[1])) if len(parts) == 2 and parts[1].isdigit() else (
            frame.image_id, 0)
        return Sample(
            image=image,
            semantic=sem_of[inverse],
            instance=inst_of[inverse],
            depth=None,
            intrinsics=None if frame.camera is None else read_camera_json(frame.camera),
            name=frame.image_id,
            sequence=sequence,
            frame=frame_number,
            meta={"dataset": self.name, "image_path": str(frame.image)},
        )
