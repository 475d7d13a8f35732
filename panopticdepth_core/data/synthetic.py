"""Synthetic street scenes with exact metric depth and panoptic labels, rendered on the fly or written to disk.

``render_scene(seed, size, focal)`` ray casts one procedurally generated scene (``synthetic_layout``) through a
pinhole camera (``synthetic_geometry``), textures and lights it (``synthetic_shading``) and returns a ``Sample``:

- image: (H, W, 3) uint8 RGB;
- semantic: Cityscapes train ids (every pixel has a class; sky is 10; there is no void);
- instance: 1..K for the K visible thing instances (in scene order), 0 on stuff;
- depth: float32 **z-depth** in metres (distance along the optical axis, the Cityscapes-DPS convention, not the
  ray length); **0 on sky** (no return, as in real data);
- intrinsics: pinhole K, fx = fy, principal point ((W - 1) / 2, (H - 1) / 2) with pixel centres at integers.

The same seed gives the same sample, bit for bit, on any machine (for a given NumPy). ``SyntheticDataset`` and
``write_synthetic_dataset`` derive scene seeds with ``scene_seed(seed, index)``, so a data set rendered on the
fly in DataLoader workers equals the same data set written to disk.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .classes import CITYSCAPES_CLASSES
from .dps_writer import write_dps_frame
from .sample import Sample
from .synthetic_geometry import cast_rays
from .synthetic_layout import sample_scene
from .synthetic_profiles import get_profile
from .synthetic_scene import HFOV_RANGE_DEG, SKY, SceneParams
from .synthetic_shading import shade_image

GENERATOR_NAME = "panopticdepth-synthetic-streets"
GENERATOR_VERSION = "1.0"  # bump whenever the same seed would render differently
_SEED_MULTIPLIER = 1_000_003
_SEED_MODULUS = 2**63


def scene_seed(seed: int, index: int) -> int:
    """Seed of scene ``index`` of a data set with seed ``seed``: (seed * 1_000_003 + index) mod 2**63."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    return (seed * _SEED_MULTIPLIER + index) % _SEED_MODULUS


def render_scene(seed: int, size: tuple[int, int] = (256, 512), focal: float | None = None,
                 debug: bool = False, profile: str = "streets",
                 hfov_range: tuple[float, float] = HFOV_RANGE_DEG) -> Sample:
    """Render scene ``seed`` at ``size`` = (height, width). ``focal`` (pixels) fixes fx = fy, otherwise the
    horizontal field of view is drawn from ``hfov_range`` degrees (default 60-90). ``profile``: what the scene
    may contain (see ``synthetic_profiles``; "streets" is everything). ``debug`` adds ``meta["scene"]`` (the SceneParams) and
    ``meta["primitive_id"]`` ((H, W) int16 index of the primitive seen at each pixel, -1 on sky)."""
    scene = sample_scene(seed, size, focal, profile, hfov_range)
    sample = render(scene, debug=debug)
    sample.meta["profile"] = profile
    return sample


def render(scene: SceneParams, debug: bool = False, object_ids: bool = False) -> Sample:
    """Render a scene description (see ``render_scene``). ``object_ids``: a thing's instance id is its object
    index + 1 (the same in every frame of a sequence) instead of 1..K over the visible things."""
    camera = scene.camera
    tables = scene.arrays()
    rays = camera.ray_directions()
    depth, prim_map = cast_rays(camera, tables["kinds"], tables["params"], rays)
    image = shade_image(camera, scene.lighting, scene.road, tables, depth, prim_map, rays, scene.seed & 0xFFFFFFFF)

    sky = prim_map < 0
    ids = np.where(sky, 0, prim_map).astype(np.int64)
    semantic = np.where(sky, SKY, tables["class_ids"][ids]).astype(np.int32)
    objects = np.where(sky, -1, tables["object_index"][ids])
    # visible objects get instance ids 1..K in scene order
    visible = np.zeros(len(scene.objects) + 1, dtype=bool)
    visible[objects.reshape(-1) + 1] = True
    visible[0] = False
    renumber = np.zeros(len(scene.objects) + 1, dtype=np.int32)
    renumber[visible] = np.arange(1, int(visible.sum()) + 1, dtype=np.int32)
    if object_ids:
        renumber = np.where(visible, np.arange(len(scene.objects) + 1), 0).astype(np.int32)
    instance = renumber[objects + 1]
    depth = np.where(sky, np.float32(0.0), depth).astype(np.float32)

    p = scene.camera
    meta: dict[str, Any] = {
        "dataset": "synthetic",
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "scene_seed": int(scene.seed),
        "extrinsic": {"x": p.x, "y": p.y, "z": p.mount_height, "pitch": p.pitch, "roll": 0.0, "yaw": p.yaw},
    }
    if debug:
        meta["scene"] = scene
        meta["primitive_id"] = prim_map
    return Sample(image=image, semantic=semantic, instance=instance, depth=depth, intrinsics=camera.intrinsics,
                  name=f"synth_{scene.seed:08d}", sequence=f"synth_{scene.seed:08d}", frame=0, meta=meta)


class SyntheticDataset:
    """Map-style data set of ``num`` rendered scenes (scene i has seed ``scene_seed(seed, i)``), rendered on demand,
    so DataLoader workers render in parallel. ``transform`` (if given) is applied to each ``Sample``."""

    name = "synthetic"

    def __init__(self, num: int, size: tuple[int, int] = (256, 512), seed: int = 0,
                 transform: Callable[[Sample], Any] | None = None, focal: float | None = None,
                 profile: str = "streets", hfov_range: tuple[float, float] = HFOV_RANGE_DEG) -> None:
        if num < 0:
            raise ValueError(f"num must be >= 0, got {num}")
        get_profile(profile)  # unknown names fail here, not in a DataLoader worker
        sample_scene(0, size, focal, profile, hfov_range)  # so do a bad size, focal or field of view
        self.num, self.size, self.seed, self.transform, self.focal = int(num), tuple(size), int(seed), transform, focal
        self.profile = profile
        self.hfov_range = (float(hfov_range[0]), float(hfov_range[1]))

    def __len__(self) -> int:
        return self.num

    def __getitem__(self, index: int) -> Any:
        if index < 0:
            index += self.num
        if not 0 <= index < self.num:
            raise IndexError(f"index {index} out of range for a synthetic data set of {self.num} scenes")
        sample = render_scene(scene_seed(self.seed, index), self.size, self.focal, profile=self.profile,
                              hfov_range=self.hfov_range)
        sample.sequence, sample.frame = f"{index:06d}", 0
        return sample if self.transform is None else self.transform(sample)


def _write_one(args: tuple[Path, int, tuple[int, int], int, float | None, str, tuple[float, float]]) -> int:
    split_dir, index, size, seed, focal, profile, hfov_range = args
    sample = render_scene(scene_seed(seed, index), size, focal, profile=profile, hfov_range=hfov_range)
    write_dps_frame(split_dir, sample, seq=index, frame=0, city="synth")
    return index


def write_synthetic_dataset(out_dir: str | Path, num: int, size: tuple[int, int] = (256, 512), seed: int = 0,
                            split: str = "train", workers: int = 1, progress: bool = True,
                            focal: float | None = None, profile: str = "streets",
                            hfov_range: tuple[float, float] = HFOV_RANGE_DEG) -> Path:
    """Render ``num`` scenes into ``{out_dir}/{split}/`` in the Cityscapes-DPS layout (see ``dps_writer``).

    Frame i is ``{i:06d}_000000_synth_{i:06d}_000000_*`` (one frame per sequence: scenes are independent).
    Also writes ``{split}/dataset.json`` (generator, version, seed rule, classes) and, for the released
    PanopticDepth loader, ``dvps_cityscapes_{split}.json`` next to the split folder. Output files depend only on
    the arguments (not on ``workers``). Returns the split folder.
    """
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    _check_split(split)
    height, width = int(size[0]), int(size[1])
    hfov_range = (float(hfov_range[0]), float(hfov_range[1]))
    sample_scene(0, (height, width), focal, profile, hfov_range)  # validates the arguments before any work
    split_dir = Path(out_dir) / split
    split_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(split_dir, i, (height, width), seed, focal, profile, hfov_range) for i in range(num)]
    _run_jobs(_write_one, jobs, workers, progress, split)
    _write_index(split_dir, split, [f"{i:06d}_000000_synth_{i:06d}_000000" for i in range(num)], (height, width))
    _write_json(split_dir / "dataset.json",
                dataset_description(num, (height, width), seed, split, focal, profile, hfov_range))
    return split_dir


def _write_drive_frame(args: tuple) -> int:
    split_dir, sequence, frame, size, seed, focal, profile, hfov_range, fps = args
    from .synthetic_sequence import render_drive_frame, sample_motion

    scene = sample_scene(scene_seed(seed, sequence), size, focal, profile, hfov_range)
    sample = render_drive_frame(scene, sample_motion(scene), frame, fps)
    write_dps_frame(split_dir, sample, seq=sequence, frame=frame, city="synth")
    return frame


def write_synthetic_sequences(out_dir: str | Path, sequences: int, frames: int, size: tuple[int, int] = (256, 512),
                              seed: int = 0, fps: float = 10.0, split: str = "train", workers: int = 1,
                              progress: bool = True, focal: float | None = None, profile: str = "streets",
                              hfov_range: tuple[float, float] = HFOV_RANGE_DEG) -> Path:
    """Render ``sequences`` drives of ``frames`` frames each (``synthetic_sequence``) into ``{out_dir}/{split}/``:
    frame f of drive s is ``{s:06d}_{f:06d}_synth_{s:06d}_{f:06d}_*`` (Cityscapes-DVPS naming), the thing ids
    persist through a drive, each frame's ``_camera.json`` holds the camera pose. Drive s is the scene of index s
    of a single-frame data set with the same seed, set in motion. Returns the split folder."""
    if sequences < 0 or frames < 1:
        raise ValueError(f"need sequences >= 0 and frames >= 1, got {sequences} and {frames}")
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number of frames per second, got {fps}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    _check_split(split)
    height, width = int(size[0]), int(size[1])
    hfov_range = (float(hfov_range[0]), float(hfov_range[1]))
    sample_scene(0, (height, width), focal, profile, hfov_range)  # validates the arguments before any work
    split_dir = Path(out_dir) / split
    split_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(split_dir, s, f, (height, width), seed, focal, profile, hfov_range, float(fps))
            for s in range(sequences) for f in range(frames)]
    _run_jobs(_write_drive_frame, jobs, workers, progress, split)
    names = [f"{s:06d}_{f:06d}_synth_{s:06d}_{f:06d}" for s in range(sequences) for f in range(frames)]
    _write_index(split_dir, split, names, (height, width))
    description = dataset_description(sequences * frames, (height, width), seed, split, focal, profile, hfov_range)
    description.update({"sequences": sequences, "frames": frames, "fps": float(fps),
                        "motion": "drives: see panopticdepth_core/data/synthetic_sequence.py; instance ids persist "
                                  "through a sequence; camera pose in each frame's _camera.json extrinsic"})
    _write_json(split_dir / "dataset.json", description)
    return split_dir


def _check_split(split: str) -> None:
    """A split names one folder under out_dir, never a path."""
    if not split or "/" in split or "\\" in split or split in (".", ".."):
        raise ValueError(f"split must be a plain folder name such as 'train', got {split!r}")


def _run_jobs(write: Callable[[tuple], object], jobs: list[tuple], workers: int, progress: bool, split: str) -> None:
    """Run ``write`` on every job, in this process or a pool; output files never depend on ``workers``."""
    with contextlib.ExitStack() as stack:
        if workers == 1 or len(jobs) <= 1:
            done = map(write, jobs)
        else:
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers))
            done = pool.map(write, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers))))
        if progress:
            from tqdm import tqdm

            done = stack.enter_context(tqdm(done, total=len(jobs), desc=f"synth {split}", unit="img"))
        for _ in done:
            pass


def _write_index(split_dir: Path, split: str, names: list[str], size: tuple[int, int]) -> None:
    """The released PanopticDepth loader's frame list, ``dvps_cityscapes_{split}.json`` next to the split."""
    index = [{"height": size[0], "width": size[1], "image": f"{n}_leftImg8bit.png", "depth": f"{n}_depth.png",
              "seg": f"{n}_gtFine_instanceTrainIds.png"} for n in names]
    _write_json(split_dir.parent / f"dvps_cityscapes_{split}.json", index)


def dataset_description(num: int, size: tuple[int, int], seed: int, split: str, focal: float | None,
                        profile: str = "streets", hfov_range: tuple[float, float] = HFOV_RANGE_DEG) -> dict:
    """What ``{split}/dataset.json`` says (no timestamps: identical arguments give identical files)."""
    extra = {} if focal is not None else {"hfov_range_deg": [float(hfov_range[0]), float(hfov_range[1])]}
    return {
        **extra,
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "scene_seed_rule": "scene i uses seed (seed * 1000003 + i) mod 2**63",
        "num": num,
        "size": [size[0], size[1]],
        "focal": focal,
        "profile": profile,
        "split": split,
        "layout": "Cityscapes-DPS (ViP-DeepLab Cityscapes-DVPS), flat per split",
        "label_encoding": "16-bit PNG, train_id * 1000 + instance (things), train_id * 1000 (stuff), 32000 void",
        "depth_encoding": "16-bit PNG, round(z-depth metres * 256), 0 = no depth (sky)",
        "depth_convention": "z-depth along the optical axis (not ray length), metres",
        "classes": [{"train_id": c.train_id, "name": c.name, "is_thing": c.is_thing} for c in CITYSCAPES_CLASSES],
    }


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")

