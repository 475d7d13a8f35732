"""What `panopticdepth extract` is asked to do (its flags as a dataclass), checked before a bag is opened."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import BagError
from .topics import ROLES


@dataclass
class ExtractOptions:
    """What ``panopticdepth extract`` was asked to do (the command's flags)."""

    bag: Path
    out: Path
    image_topic: str
    camera_info_topic: str | None = None
    depth_topic: str | None = None
    lidar_topic: str | None = None
    semantic_topic: str | None = None
    instance_topic: str | None = None
    panoptic_topic: str | None = None
    class_map: Path | None = None
    every: int = 1
    max_rate: float | None = None
    time_tolerance: float = 0.05
    split: str = "train"
    storage: str = "auto"
    pseudo_labels: tuple[str, str] | None = None
    depth_scale: float | None = None
    device: str = "cpu"
    progress: bool = True
    distro: str = "humble"  # type store for decoding; what matters for bags without message definitions

    def topics(self) -> dict[str, str]:
        """role -> topic of the inputs asked for."""
        return {role: topic for role in ROLES if (topic := getattr(self, f"{role}_topic")) is not None}


def validate_options(opts: ExtractOptions) -> None:
    """Option combinations and values, checked before the bag is opened."""
    if opts.depth_topic and opts.lidar_topic:
        raise BagError("give --depth-topic or --lidar-topic, not both")
    if opts.lidar_topic and not opts.camera_info_topic:
        raise BagError("--lidar-topic needs --camera-info-topic (the projection needs the intrinsics)")
    if bool(opts.semantic_topic) != bool(opts.instance_topic):
        raise BagError("--semantic-topic and --instance-topic go together (or use --panoptic-topic)")
    if opts.panoptic_topic and opts.semantic_topic:
        raise BagError("give --semantic-topic/--instance-topic or --panoptic-topic, not both")
    has_label_topics = bool(opts.panoptic_topic or opts.semantic_topic)
    if opts.pseudo_labels and has_label_topics:
        raise BagError("--pseudo-labels replaces label topics; do not give both")
    if opts.class_map and not has_label_topics:
        raise BagError("--class-map applies to label topics; give --semantic-topic/--instance-topic or "
                       "--panoptic-topic")
    if opts.every < 1:
        raise BagError(f"--every must be at least 1, got {opts.every}")
    if opts.every > 1 and opts.max_rate is not None:
        raise BagError("give --every or --max-rate, not both")
    if opts.max_rate is not None and not (opts.max_rate > 0 and math.isfinite(opts.max_rate)):
        raise BagError(f"--max-rate must be a positive number of Hz, got {opts.max_rate}")
    if not (opts.time_tolerance >= 0 and math.isfinite(opts.time_tolerance)):
        raise BagError(f"--time-tolerance must be 0 or more seconds, got {opts.time_tolerance}")
    if opts.depth_scale is not None and not (opts.depth_scale > 0 and math.isfinite(opts.depth_scale)):
        raise BagError(f"--depth-scale must be a positive number, got {opts.depth_scale}")
    if opts.depth_scale is not None and not opts.depth_topic:
        raise BagError("--depth-scale applies to --depth-topic")
    if not opts.split or opts.split in (".", "..") or any(c in opts.split for c in "/\\"):
        raise BagError(f"--split must be a plain folder name such as train, got {opts.split!r}")
    if opts.storage not in ("auto", "mcap", "sqlite3"):
        raise BagError(f"--storage must be auto, mcap or sqlite3, got {opts.storage!r}")
    if opts.distro not in ("humble", "jazzy"):
        raise BagError(f"--distro must be humble or jazzy, got {opts.distro!r}")
    topics = opts.topics()
    repeated = {t for t in topics.values() if list(topics.values()).count(t) > 1}
    if repeated:
        raise BagError(f"topic(s) {sorted(repeated)} given for more than one input")
    if opts.pseudo_labels:
        for path in opts.pseudo_labels:
            if not Path(path).is_file():
                raise BagError(f"--pseudo-labels: file not found: {path}")
    final = Path(opts.out) / opts.split
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise BagError(f"{final} already exists and is not empty; choose another --out or --split, or remove it")
