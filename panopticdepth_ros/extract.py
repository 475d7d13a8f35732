"""Turn a rosbag2 recording into a training set in the Cityscapes-DPS layout (``panopticdepth extract``).

Read with ``rosbags`` (mcap or sqlite3, no ROS install), in two passes: pass 1 reads every header stamp of the
chosen topics (straight from the CDR bytes) and /tf_static + /tf, and matches each camera image with the nearest
message of every other input within ``time_tolerance``; pass 2 decodes only the matched messages and writes
each complete frame with ``write_dps_frame``. Memory therefore holds the transforms and the few messages of the
frames being assembled, not the bag.

Per frame: the image (Image or CompressedImage), intrinsics from camera_info (``{frame}_camera.json``), depth
from a registered depth image (32FC1 metres or 16UC1 millimetres; NaN, Inf and 0 are "no depth") or from a
LiDAR PointCloud2 moved into the camera's optical frame with /tf_static and /tf at the image stamp and projected
with K (nearest point per pixel), and labels from label topics (semantic + instance, or panoptic) mapped to the
Cityscapes train ids by a class map, or pseudo-labels from a trained model. See docs/bag_extraction.md.

Output: ``OUT/SPLIT/`` written as ``OUT/.SPLIT.partial-PID/`` and renamed at the end, so an interrupted or failed
run never leaves a folder that looks complete; ``OUT/SPLIT/dataset.json`` records the source, topics, class map,
label source and the summary (frames written, frames skipped per reason).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from panopticdepth_core.data.classes import CLASS_NAMES, IGNORE_LABEL, NUM_CLASSES, THING_IDS
from panopticdepth_core.data.dps_writer import LABEL_DIVISOR, frame_prefix, write_dps_frame
from panopticdepth_core.data.sample import Sample

from .bag_reading import guarded_messages
from .conversions import FrameError, camera_info_to_K, compressed_msg_to_rgb, image_msg_to_rgb
from .messages import CAMERA_INFO, COMPRESSED_IMAGE, IMAGE, POINT_CLOUD2, deserialize, get_store, pointcloud2_to_array
from .tf_buffer import ExtrapolationError, FrameNotFoundError, TfBuffer, transform_points

TF_MESSAGE = "tf2_msgs/msg/TFMessage"
TF_STATIC_TOPIC = "/tf_static"
TF_TOPIC = "/tf"
CITY = "bag"  # the city field of the frame names: {seq}_{frame}_bag_{seq}_{frame}
MIN_LIDAR_DEPTH = 0.01  # metres: points closer to the image plane than this are dropped
STORAGE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}

#: role -> (command-line flag, accepted message types)
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "image": ("--image-topic", (IMAGE, COMPRESSED_IMAGE)),
    "camera_info": ("--camera-info-topic", (CAMERA_INFO,)),
    "depth": ("--depth-topic", (IMAGE,)),
    "lidar": ("--lidar-topic", (POINT_CLOUD2,)),
    "semantic": ("--semantic-topic", (IMAGE,)),
    "instance": ("--instance-topic", (IMAGE,)),
    "panoptic": ("--panoptic-topic", (IMAGE,)),
}

#: skip reason -> what the summary says
SKIP_REASONS = {
    "no_camera_info": "no camera_info within the time tolerance",
    "no_depth": "no depth image within the time tolerance",
    "no_lidar": "no LiDAR cloud within the time tolerance",
    "no_semantic": "no semantic label image within the time tolerance",
    "no_instance": "no instance label image within the time tolerance",
    "no_panoptic": "no panoptic label image within the time tolerance",
    "no_transform": "no LiDAR -> camera transform on /tf near the image stamp",
    "bad_stamp": "image message without a readable header stamp",
    "bad_image": "image could not be decoded",
    "bad_camera_info": "camera_info invalid for the image",
    "bad_depth": "depth image could not be decoded",
    "bad_lidar": "LiDAR cloud could not be decoded",
    "bad_labels": "label image could not be decoded",
    "too_many_instances": f"more than {LABEL_DIVISOR - 1} thing instances",
}

#: numeric image encodings -> (numpy dtype, channels)
_NUMERIC_ENCODINGS = {
    "mono8": ("u1", 1), "8uc1": ("u1", 1), "8sc1": ("i1", 1), "mono16": ("u2", 1), "16uc1": ("u2", 1),
    "16sc1": ("i2", 1), "32sc1": ("i4", 1), "32fc1": ("f4", 1), "64fc1": ("f8", 1),
    "rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4),
}
_COLOUR_ORDER = {"rgb8": (0, 1, 2), "rgba8": (0, 1, 2), "bgr8": (2, 1, 0), "bgra8": (2, 1, 0)}
_LABEL_ENCODINGS = ("mono8", "8uc1", "mono16", "16uc1", "16sc1", "32sc1")


class ExtractError(RuntimeError):
    """A problem with the bag or the options that stops the extraction; the message says what and where."""


class NoFramesError(ExtractError):
    """Every frame was skipped; ``summary`` says why."""

    def __init__(self, message: str, summary: ExtractSummary) -> None:
        super().__init__(message)
        self.summary = summary


# ------------------------------------------------------------------------------------------------ options, summary
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

    def topics(self) -> dict[str, str]:
        """role -> topic of the inputs asked for."""
        return {role: topic for role in ROLES if (topic := getattr(self, f"{role}_topic")) is not None}


@dataclass
class ExtractSummary:
    """Counts of one extraction (printed, and saved in dataset.json)."""

    bag: str
    output: str | None = None
    image_messages: int = 0
    subsampled: int = 0  # images left out by --every / --max-rate
    selected: int = 0
    written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)  # skip reason -> first detailed message

    def skip(self, reason: str, detail: str = "") -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if detail and reason not in self.examples:
            self.examples[reason] = detail

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self, tolerance: float | None = None) -> str:
        """Human-readable lines."""
        lines = [f"bag {self.bag}: {self.image_messages} images, {self.subsampled} left out by --every/--max-rate, "
                 f"{self.selected} selected, {self.written} written, {sum(self.skipped.values())} skipped"]
        for reason, count in sorted(self.skipped.items(), key=lambda item: -item[1]):
            text = SKIP_REASONS.get(reason, reason)
            if tolerance is not None and "time tolerance" in text:
                text = text.replace("the time tolerance", f"+-{tolerance:g} s")
            example = f" (first: {self.examples[reason]})" if reason in self.examples else ""
            lines.append(f"  skipped {count:6d}: {text}{example}")
        if self.output:
            lines.append(f"output: {self.output}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ class map
@dataclass
class ClassMap:
    """Source label ids -> Cityscapes train ids (0..18, 255 void); see docs/bag_extraction.md for the YAML."""

    mapping: dict[int, int]
    default: int | None = None
    panoptic_divisor: int = LABEL_DIVISOR
    source: str = "identity"  # file path, or "identity"

    @classmethod
    def identity(cls) -> ClassMap:
        return cls({i: i for i in range(NUM_CLASSES)} | {IGNORE_LABEL: IGNORE_LABEL})

    def apply(self, ids: np.ndarray, where: str) -> np.ndarray:
        """Map an id array; negative ids are void. Unknown ids raise ExtractError (unless a default is set)."""
        ids = np.asarray(ids).astype(np.int64, copy=False)
        values, inverse = np.unique(ids, return_inverse=True)
        mapped = np.empty(values.shape, dtype=np.int32)
        unknown = []
        for i, value in enumerate(values.tolist()):
            if value < 0:
                mapped[i] = IGNORE_LABEL
            elif value in self.mapping:
                mapped[i] = self.mapping[value]
            elif self.default is not None:
                mapped[i] = self.default
            else:
                unknown.append(value)
        if unknown:
            hint = ("add them to the class map or set 'default: 255' there" if self.source != "identity" else
                    "ids must be Cityscapes train ids 0..18 or 255; pass --class-map YAML to map them")
            raise ExtractError(f"{where}: class ids {unknown[:20]} are not in the class map ({self.source}); {hint}")
        return mapped[inverse.reshape(ids.shape)]


def _target_id(value: Any, where: str) -> int:
    if isinstance(value, str):
        name = value.strip().lower()
        if name in ("void", "ignore", "unlabeled", "unlabelled"):
            return IGNORE_LABEL
        if name in CLASS_NAMES:
            return CLASS_NAMES.index(name)
        raise ExtractError(f"{where}: unknown class name {value!r}; expected one of {', '.join(CLASS_NAMES)} or void")
    if isinstance(value, bool) or not isinstance(value, int) or not (0 <= value < NUM_CLASSES or value == 255):
        raise ExtractError(f"{where}: target {value!r} must be a train id 0..{NUM_CLASSES - 1}, 255 or a class name")
    return int(value)


def load_class_map(path: str | Path) -> ClassMap:
    """Read a class-map YAML: ``{source_id: train id | class name | 255}``, optionally under ``classes:``, plus
    optional ``default:`` (target of unlisted ids) and ``panoptic_divisor:`` (default 1000)."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExtractError(f"class map not found: {path}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ExtractError(f"{path}: cannot read the class map YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ExtractError(f"{path}: expected a mapping {{source_id: train_id}}, got {type(data).__name__}")
    data = dict(data)
    default = data.pop("default", None)
    divisor = data.pop("panoptic_divisor", LABEL_DIVISOR)
    entries = data.pop("classes", {}) or {}
    if not isinstance(entries, dict):
        raise ExtractError(f"{path}: 'classes' must be a mapping {{source_id: train_id}}")
    entries = {**entries, **data}
    mapping: dict[int, int] = {}
    for key, value in entries.items():
        try:
            source = int(key)
        except (TypeError, ValueError):
            raise ExtractError(f"{path}: key {key!r} is not an integer source id (or default / panoptic_divisor / "
                               "classes)") from None
        if source < 0:
            raise ExtractError(f"{path}: source id {source} is negative (negative ids are always void)")
        mapping[source] = _target_id(value, f"{path}: entry {key}")
    if not mapping and default is None:
        raise ExtractError(f"{path}: the class map is empty")
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 2:
        raise ExtractError(f"{path}: panoptic_divisor must be an integer >= 2, got {divisor!r}")
    return ClassMap(mapping, None if default is None else _target_id(default, f"{path}: default"), divisor,
                    str(path))


# ------------------------------------------------------------------------------------------------ decoding
def header_stamp_ns(data: bytes | memoryview) -> int:
    """Header stamp (ns) of a CDR-serialized message whose first field is a std_msgs/Header, without decoding."""
    if len(data) < 12:
        raise ValueError(f"message of {len(data)} bytes is too short for a header")
    little = data[1] & 1 == 1  # encapsulation kind CDR_LE = 0x0001, PL_CDR_LE = 0x0003
    sec, nanosec = struct.unpack_from("<iI" if little else ">iI", data, 4)
    return sec * 1_000_000_000 + nanosec


def image_array(msg, what: str, encodings: tuple[str, ...] | None = None) -> np.ndarray:
    """A numeric sensor_msgs/Image as an (H, W) or (H, W, C) array (native byte order, row padding removed)."""
    encoding = str(msg.encoding).strip().lower()
    allowed = encodings or tuple(_NUMERIC_ENCODINGS)
    if encoding not in _NUMERIC_ENCODINGS or encoding not in allowed:
        raise FrameError(f"{what}: encoding {msg.encoding!r} not supported here (expected one of "
                         f"{', '.join(allowed)})", "encoding")
    dtype_code, channels = _NUMERIC_ENCODINGS[encoding]
    dtype = np.dtype(dtype_code).newbyteorder(">" if msg.is_bigendian else "<")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if height <= 0 or width <= 0 or step < row_bytes:
        raise FrameError(f"{what}: bad size {width}x{height} with step {step} for {encoding}", "size")
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    if data.size != step * height:
        raise FrameError(f"{what}: {data.size} data bytes, expected step * height = {step * height}", "size")
    rows = np.ascontiguousarray(data.reshape(height, step)[:, :row_bytes])
    array = rows.view(dtype).reshape(height, width, channels).astype(dtype.newbyteorder("="), copy=False)
    return array[:, :, 0] if channels == 1 else array


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resample of an (h, w) map to ``size`` = (H, W) (pixel centres aligned)."""
    height, width = size
    rows = np.minimum(((np.arange(height) + 0.5) * array.shape[0] / height).astype(np.int64), array.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * array.shape[1] / width).astype(np.int64), array.shape[1] - 1)
    return array[rows[:, None], cols[None, :]]


def _fit_to_image(array: np.ndarray, size: tuple[int, int], what: str) -> np.ndarray:
    """``array`` at the image size: equal sizes pass, same aspect ratio is resampled (nearest), else FrameError."""
    if array.shape[:2] == tuple(size):
        return array
    (h, w), (height, width) = array.shape[:2], size
    if abs(w / h - width / height) > 0.01 * (width / height):
        raise FrameError(f"{what} is {w}x{h} but the image is {width}x{height}; expected it registered to the "
                         "camera image (same size or aspect ratio)", "size")
    return resize_nearest(array, size)


def depth_from_image(msg, size: tuple[int, int], scale: float | None = None) -> np.ndarray:
    """A depth image (32FC1/64FC1 metres, or 16UC1/mono16 millimetres) -> (H, W) float32 metres, 0 = no depth.

    ``scale`` multiplies the stored values (default 1 for float images, 0.001 for 16-bit ones). NaN, +-Inf and
    values <= 0 mean no measurement (REP 117/118).
    """
    encoding = str(msg.encoding).strip().lower()
    raw = image_array(msg, "depth image", ("32fc1", "64fc1", "16uc1", "mono16"))
    if scale is None:
        scale = 0.001 if encoding in ("16uc1", "mono16") else 1.0
    with np.errstate(invalid="ignore", over="ignore"):
        metres = raw.astype(np.float64) * scale
        valid = np.isfinite(metres) & (metres > 0)
    depth = np.where(valid, metres, 0.0).astype(np.float32)
    return _fit_to_image(depth, size, "depth image")


def project_points(points: np.ndarray, k: np.ndarray, size: tuple[int, int],
                   min_depth: float = MIN_LIDAR_DEPTH) -> np.ndarray:
    """(N, 3) points in the camera optical frame -> (H, W) float32 z-depth, nearest point per pixel, 0 elsewhere.

    Pixel centres are at integer coordinates (the camera_info convention), so a point lands in pixel
    ``(round(v), round(u))``. Points with z <= ``min_depth`` (behind the camera) or outside the image are dropped.
    """
    height, width = size
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    points = points[np.isfinite(points).all(axis=1) & (points[:, 2] > min_depth)]
    z = points[:, 2]
    uvw = points @ np.asarray(k, dtype=np.float64).T  # (N, 3)
    cols = np.floor(uvw[:, 0] / z + 0.5)
    rows = np.floor(uvw[:, 1] / z + 0.5)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    flat = rows[inside].astype(np.int64) * width + cols[inside].astype(np.int64)
    z = z[inside]
    order = np.lexsort((z, flat))  # by pixel, then nearest first
    flat, z = flat[order], z[order]
    first = np.ones(flat.size, dtype=bool)
    first[1:] = flat[1:] != flat[:-1]
    depth = np.zeros(height * width, dtype=np.float32)
    depth[flat[first]] = z[first]
    return depth.reshape(height, width)


def cloud_xyz(msg) -> np.ndarray:
    """(N, 3) float64 x, y, z of a PointCloud2 (organized or not; NaN points kept, dropped by the projection)."""
    try:
        cloud = pointcloud2_to_array(msg).reshape(-1)
    except (KeyError, ValueError) as exc:
        raise FrameError(f"LiDAR cloud: cannot read its fields ({exc})", "lidar") from exc
    names = cloud.dtype.names or ()
    if not all(axis in names for axis in "xyz"):
        raise FrameError(f"LiDAR cloud: fields {list(names)} lack x, y, z", "lidar")
    return np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1).astype(np.float64)


def renumber_instances(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """Instance ids 1..N for thing pixels (train ids 11..18) with a source id > 0, in order of source id; 0 else.

    A source id shared by two thing classes gives two instances; thing pixels with id 0 stay 0 (crowd).
    """
    out = np.zeros(semantic.shape, dtype=np.int32)
    thing = np.isin(semantic, THING_IDS) & (instance > 0)
    if thing.any():
        keys = instance[thing].astype(np.int64) * 256 + semantic[thing]
        _, dense = np.unique(keys, return_inverse=True)
        out[thing] = dense.reshape(-1).astype(np.int32) + 1
    return out


def decode_panoptic(msg, class_map: ClassMap) -> tuple[np.ndarray, np.ndarray]:
    """A panoptic label image -> (source class ids, source instance ids), void as -1 class.

    Integer encodings (32SC1, 16UC1, mono16): ``class * divisor + instance``, negative = void. Colour encodings
    (rgb8, bgr8, rgba8, bgra8; CARLA's instance segmentation camera): class = R, instance = G + 256 * B.
    """
    encoding = str(msg.encoding).strip().lower()
    array = image_array(msg, "panoptic image", ("32sc1", "16uc1", "mono16", "rgb8", "bgr8", "rgba8", "bgra8"))
    if encoding in _COLOUR_ORDER:
        r, g, b = (array[:, :, c].astype(np.int64) for c in _COLOUR_ORDER[encoding])
        return r, g + 256 * b
    values = array.astype(np.int64)
    divisor = class_map.panoptic_divisor
    void = values < 0
    return np.where(void, -1, values // divisor), np.where(void, 0, values % divisor)


# ------------------------------------------------------------------------------------------------ the bag
def detect_storage(path: Path) -> str:
    """"mcap" or "sqlite3" of a bag folder (its metadata.yaml) or a single .mcap/.db3 file."""
    if path.is_file():
        if path.suffix in STORAGE_SUFFIXES:
            return STORAGE_SUFFIXES[path.suffix]
        raise ExtractError(f"{path}: not a rosbag2 (expected a bag folder, a .mcap or a .db3 file)")
    metadata = path / "metadata.yaml"
    if metadata.is_file():
        import yaml

        try:
            info = yaml.safe_load(metadata.read_text(encoding="utf-8"))["rosbag2_bagfile_information"]
            return str(info["storage_identifier"])
        except Exception as exc:
            raise ExtractError(f"{metadata}: not a readable rosbag2 metadata file ({type(exc).__name__}: {exc})"
                               ) from exc
    files = sorted(p.name for p in path.glob("*") if p.suffix in STORAGE_SUFFIXES) if path.is_dir() else []
    hint = (f"; it holds {', '.join(files)}: run `ros2 bag reindex {path}` to rebuild metadata.yaml, or pass the "
            "file itself" if files else "")
    raise ExtractError(f"{path}: not a rosbag2 folder (no metadata.yaml){hint}")


def _corrupt(path: Path, exc: BaseException, where: str) -> ExtractError:
    return ExtractError(
        f"{path}: cannot read the bag {where} ({type(exc).__name__}: {exc}). The file is truncated or corrupt: "
        "an interrupted recording can often be repaired with `ros2 bag reindex` (sqlite3) or `mcap recover` (mcap)"
    )


def open_bag(path: Path, storage: str = "auto"):
    """(open rosbags Reader, storage name); every failure becomes an ExtractError naming ``path``."""
    from rosbags.rosbag2 import Reader

    if not path.exists():
        raise ExtractError(f"bag not found: {path}")
    detected = detect_storage(path)
    if storage != "auto" and storage != detected:
        raise ExtractError(f"{path}: --storage {storage} given, but the bag is stored as {detected}")
    try:
        reader = Reader(path)
        reader.open()
    except ExtractError:
        raise
    except Exception as exc:  # rosbags raises ReaderError, FileNotFoundError, mcap/sqlite3 errors, struct errors
        raise _corrupt(path, exc, "when opening it") from exc
    return reader, detected


def _describe_topics(reader) -> str:
    topics = {}
    for conn in reader.connections:
        count = topics.get(conn.topic, (conn.msgtype, 0))[1] + conn.msgcount
        topics[conn.topic] = (conn.msgtype, count)
    if not topics:
        return "  (none: the bag has no topics; is it empty?)"
    width = max(len(t) for t in topics)
    return "\n".join(f"  {t:<{width}}  {msgtype}  ({count} messages)" for t, (msgtype, count) in sorted(topics.items()))


def check_topics(reader, path: Path, topics: dict[str, str]) -> dict[str, list]:
    """role -> the bag's connections of its topic; missing topics and wrong types raise ExtractError."""
    by_topic: dict[str, list] = {}
    for conn in reader.connections:
        by_topic.setdefault(conn.topic, []).append(conn)
    missing = [f"{ROLES[role][0]} {topic}" for role, topic in topics.items() if topic not in by_topic]
    if missing:
        raise ExtractError(f"{path}: topic(s) not in the bag: {', '.join(missing)}. The bag has:\n"
                           + _describe_topics(reader))
    out = {}
    for role, topic in topics.items():
        flag, accepted = ROLES[role]
        for conn in by_topic[topic]:
            if conn.msgtype not in accepted:
                raise ExtractError(f"{path}: {flag} {topic} has message type {conn.msgtype}; expected "
                                   f"{' or '.join(accepted)}")
        out[role] = by_topic[topic]
    if sum(c.msgcount for c in out["image"]) == 0:
        raise ExtractError(f"{path}: {ROLES['image'][0]} {topics['image']} has no messages (the bag holds "
                           f"{reader.message_count} messages in all); nothing to extract")
    return out


def _messages(reader, path: Path, connections: list) -> Iterator[tuple[Any, int, bytes]]:
    """reader.messages, with read failures (truncated files) turned into ExtractError naming the bag."""
    return guarded_messages(reader, connections, lambda exc, count: _corrupt(path, exc, f"after {count} messages"))


# ------------------------------------------------------------------------------------------------ matching
@dataclass
class _Frame:
    """A selected image and the message (role -> index within its topic) matched to it."""

    number: int  # frame number in the output names
    stamp_ns: int
    parts: dict[str, int]
    offsets_ns: dict[str, int]


def select_images(stamps: list[int | None], every: int, max_rate: float | None) -> list[int]:
    """Indices of the image messages kept by --every / --max-rate (in bag order)."""
    kept: list[int] = []
    last: int | None = None
    min_gap = None if max_rate is None else int(round(1e9 / max_rate)) - 1_000  # 1 us slack for rounded stamps
    for index, stamp in enumerate(stamps):
        if index % every:
            continue
        if min_gap is not None and stamp is not None:
            if last is not None and stamp - last < min_gap:
                continue
            last = stamp
        kept.append(index)
    return kept


def nearest(sorted_stamps: np.ndarray, order: np.ndarray, stamp: int, tolerance_ns: int) -> tuple[int, int] | None:
    """(message index, offset ns) of the stamp nearest to ``stamp`` within the tolerance, or None."""
    if sorted_stamps.size == 0:
        return None
    pos = int(np.searchsorted(sorted_stamps, stamp))
    best = None
    for cand in (pos - 1, pos):
        if 0 <= cand < sorted_stamps.size:
            offset = int(sorted_stamps[cand]) - stamp
            if best is None or abs(offset) < abs(best[1]):
                best = (int(order[cand]), offset)
    return best if best is not None and abs(best[1]) <= tolerance_ns else None


# ------------------------------------------------------------------------------------------------ the extractor
def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _bar(enabled: bool, total: int, desc: str, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, leave=False)


def validate_options(opts: ExtractOptions) -> None:
    """Option combinations and values, checked before the bag is opened."""
    if opts.depth_topic and opts.lidar_topic:
        raise ExtractError("give --depth-topic or --lidar-topic, not both")
    if opts.lidar_topic and not opts.camera_info_topic:
        raise ExtractError("--lidar-topic needs --camera-info-topic (the projection needs the intrinsics)")
    if bool(opts.semantic_topic) != bool(opts.instance_topic):
        raise ExtractError("--semantic-topic and --instance-topic go together (or use --panoptic-topic)")
    if opts.panoptic_topic and opts.semantic_topic:
        raise ExtractError("give --semantic-topic/--instance-topic or --panoptic-topic, not both")
    has_label_topics = bool(opts.panoptic_topic or opts.semantic_topic)
    if opts.pseudo_labels and has_label_topics:
        raise ExtractError("--pseudo-labels replaces label topics; do not give both")
    if opts.class_map and not has_label_topics:
        raise ExtractError("--class-map applies to label topics; give --semantic-topic/--instance-topic or "
                           "--panoptic-topic")
    if opts.every < 1:
        raise ExtractError(f"--every must be at least 1, got {opts.every}")
    if opts.every > 1 and opts.max_rate is not None:
        raise ExtractError("give --every or --max-rate, not both")
    if opts.max_rate is not None and not (opts.max_rate > 0 and math.isfinite(opts.max_rate)):
        raise ExtractError(f"--max-rate must be a positive number of Hz, got {opts.max_rate}")
    if not (opts.time_tolerance >= 0 and math.isfinite(opts.time_tolerance)):
        raise ExtractError(f"--time-tolerance must be 0 or more seconds, got {opts.time_tolerance}")
    if opts.depth_scale is not None and not (opts.depth_scale > 0 and math.isfinite(opts.depth_scale)):
        raise ExtractError(f"--depth-scale must be a positive number, got {opts.depth_scale}")
    if opts.depth_scale is not None and not opts.depth_topic:
        raise ExtractError("--depth-scale applies to --depth-topic")
    if not opts.split or opts.split in (".", "..") or any(c in opts.split for c in "/\\"):
        raise ExtractError(f"--split must be a plain folder name such as train, got {opts.split!r}")
    if opts.storage not in ("auto", "mcap", "sqlite3"):
        raise ExtractError(f"--storage must be auto, mcap or sqlite3, got {opts.storage!r}")
    topics = opts.topics()
    repeated = {t for t in topics.values() if list(topics.values()).count(t) > 1}
    if repeated:
        raise ExtractError(f"topic(s) {sorted(repeated)} given for more than one input")
    if opts.pseudo_labels:
        for path in opts.pseudo_labels:
            if not Path(path).is_file():
                raise ExtractError(f"--pseudo-labels: file not found: {path}")
    final = Path(opts.out) / opts.split
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise ExtractError(f"{final} already exists and is not empty; choose another --out or --split, or remove it")


class _Extractor:
    """One run of the extraction (state shared by the two passes)."""

    def __init__(self, opts: ExtractOptions) -> None:
        self.opts = opts
        self.bag = Path(opts.bag)
        self.store = get_store("humble")  # every type read here has the same definition in Humble and Jazzy
        self.tolerance_ns = int(round(opts.time_tolerance * 1e9))
        self.tf = TfBuffer(tolerance_ns=self.tolerance_ns)
        self.class_map = load_class_map(opts.class_map) if opts.class_map else ClassMap.identity()
        self.summary = ExtractSummary(bag=str(self.bag))
        self.predictor: Callable | None = None
        self.pseudo_meta: dict[str, Any] | None = None
        self.frames_meta: list[dict[str, Any]] = []
        self._image_type = IMAGE

    # -------------------------------------------------------------------------------------- pass 1
    def index(self, reader, conns: dict[str, list]) -> list[_Frame]:
        """Read stamps and transforms; return the selected frames that have every input."""
        role_of = {conn.id: role for role, cs in conns.items() for conn in cs}
        stamps: dict[str, list[int | None]] = {role: [] for role in conns}
        tf_conns = [c for c in reader.connections if c.topic in (TF_STATIC_TOPIC, TF_TOPIC)
                    and c.msgtype == TF_MESSAGE] if "lidar" in conns else []
        wanted = [c for cs in conns.values() for c in cs] + tf_conns
        total = sum(c.msgcount for c in wanted)
        with _bar(self.opts.progress, total, "index", "msg") as bar:
            for conn, log_time, data in _messages(reader, self.bag, wanted):
                bar.update(1)
                if conn.topic in (TF_STATIC_TOPIC, TF_TOPIC) and conn.id not in role_of:
                    self._add_tf(conn, data)
                    continue
                try:
                    stamp = header_stamp_ns(data)
                except (ValueError, struct.error):
                    stamp = None
                if stamp == 0:  # an unset header stamp: the receive time is the best guess
                    stamp = log_time
                stamps[role_of[conn.id]].append(stamp)
        images = stamps["image"]
        self.summary.image_messages = len(images)
        kept = select_images(images, self.opts.every, self.opts.max_rate)
        self.summary.subsampled = len(images) - len(kept)
        self.summary.selected = len(kept)
        lookup = {}
        for role, values in stamps.items():
            if role == "image":
                continue
            idx = np.array([i for i, s in enumerate(values) if s is not None], dtype=np.int64)
            arr = np.array([s for s in values if s is not None], dtype=np.int64)
            order = np.argsort(arr, kind="stable")
            lookup[role] = (arr[order], idx[order])
        frames = []
        for image_index in kept:
            stamp = images[image_index]
            if stamp is None:
                self.summary.skip("bad_stamp")
                continue
            parts, offsets = {"image": image_index}, {}
            for role in ("camera_info", "depth", "lidar", "semantic", "instance", "panoptic"):
                if role not in lookup:
                    continue
                match = nearest(*lookup[role], stamp, self.tolerance_ns)
                if match is None:
                    self.summary.skip(f"no_{role}")
                    break
                parts[role], offsets[role] = match
            else:
                frames.append(_Frame(len(frames), stamp, parts, offsets))
        return frames

    def _add_tf(self, conn, data: bytes) -> None:
        try:
            msg = deserialize(data, TF_MESSAGE, self.store)
            self.tf.add_tf_message(msg, static=conn.topic == TF_STATIC_TOPIC)
        except Exception as exc:  # rosbags raises assorted errors on malformed CDR
            raise ExtractError(f"{self.bag}: a {conn.topic} message cannot be decoded ({type(exc).__name__}: {exc})"
                               ) from exc

    # -------------------------------------------------------------------------------------- pass 2
    def write(self, reader, conns: dict[str, list], frames: list[_Frame], split_dir: Path) -> None:
        """Decode the matched messages and write each frame as soon as it is complete."""
        role_of = {conn.id: role for role, cs in conns.items() for conn in cs}
        needed: dict[tuple[str, int], list[int]] = {}
        for frame in frames:
            for role, index in frame.parts.items():
                needed.setdefault((role, index), []).append(frame.number)
        remaining = Counter({key: len(users) for key, users in needed.items()})
        missing_parts = {frame.number: len(frame.parts) for frame in frames}
        buffer: dict[tuple[str, int], bytes] = {}
        counters: Counter = Counter()
        with _bar(self.opts.progress, len(frames), "extract", "frame") as bar:
            for conn, _, data in _messages(reader, self.bag, [c for cs in conns.values() for c in cs]):
                role = role_of[conn.id]
                key = (role, counters[role])
                counters[role] += 1
                if key not in needed:
                    continue
                buffer[key] = bytes(data)
                for number in needed[key]:
                    missing_parts[number] -= 1
                    if missing_parts[number] == 0:
                        frame = frames[number]
                        self._write_frame(frame, {r: buffer[(r, i)] for r, i in frame.parts.items()}, split_dir)
                        bar.update(1)
                        for r, i in frame.parts.items():
                            remaining[(r, i)] -= 1
                            if remaining[(r, i)] == 0:
                                buffer.pop((r, i), None)

    def _decode(self, role: str, data: bytes):
        msgtype = self._image_type if role == "image" else ROLES[role][1][0]
        return deserialize(data, msgtype, self.store)

    def _write_frame(self, frame: _Frame, raw: dict[str, bytes], split_dir: Path) -> None:
        try:
            sample = self._sample(frame, raw)
        except FrameError as exc:
            self.summary.skip(getattr(exc, "reason", "bad_image"), f"{frame.stamp_ns / 1e9:.3f} s: {exc}")
            return
        files = write_dps_frame(split_dir, sample, seq=0, frame=frame.number, city=CITY)
        if sample.meta.get("unlabelled"):
            files["label"].unlink()
        self.summary.written += 1
        self.frames_meta.append({"name": frame_prefix(0, frame.number, CITY), "stamp_ns": frame.stamp_ns,
                                 "offsets_ms": {r: round(o / 1e6, 3) for r, o in frame.offsets_ns.items()}})

    @staticmethod
    def _frame_error(exc: FrameError, reason: str) -> FrameError:
        exc.reason = reason  # type: ignore[attr-defined]
        return exc

    def _sample(self, frame: _Frame, raw: dict[str, bytes]) -> Sample:
        """The frame's Sample; FrameError (with ``reason``) when a message is unusable."""
        try:
            msg = self._decode("image", raw["image"])
            rgb = compressed_msg_to_rgb(msg) if self._image_type == COMPRESSED_IMAGE else image_msg_to_rgb(msg)
        except FrameError as exc:
            raise self._frame_error(exc, "bad_image") from exc
        size = rgb.shape[:2]
        k = None
        info = None
        if "camera_info" in raw:
            try:
                info = self._decode("camera_info", raw["camera_info"])
                k = camera_info_to_K(info, size)
            except FrameError as exc:
                raise self._frame_error(exc, "bad_camera_info") from exc
        depth = None
        if "depth" in raw:
            try:
                depth = depth_from_image(self._decode("depth", raw["depth"]), size, self.opts.depth_scale)
            except FrameError as exc:
                raise self._frame_error(exc, "bad_depth") from exc
        elif "lidar" in raw:
            depth = self._lidar_depth(frame, msg, info, raw["lidar"], k, size)
        semantic, instance, meta = self._labels(frame, raw, rgb)
        return Sample(image=rgb, semantic=semantic, instance=instance, depth=depth, intrinsics=k,
                      name=frame_prefix(0, frame.number, CITY), sequence="000000", frame=frame.number, meta=meta)

    def _lidar_depth(self, frame: _Frame, image_msg, info, data: bytes, k: np.ndarray,
                     size: tuple[int, int]) -> np.ndarray:
        try:
            cloud = self._decode("lidar", data)
            xyz = cloud_xyz(cloud)
        except FrameError as exc:
            raise self._frame_error(exc, "bad_lidar") from exc
        camera_frame = str(image_msg.header.frame_id) or str(info.header.frame_id)
        if not camera_frame:
            raise ExtractError(f"{self.bag}: {self.opts.image_topic} and {self.opts.camera_info_topic} have an empty "
                               "header.frame_id; the LiDAR projection needs the camera's optical frame")
        try:
            transform = self.tf.lookup(camera_frame, str(cloud.header.frame_id), frame.stamp_ns)
        except FrameNotFoundError as exc:
            raise ExtractError(f"{self.bag}: {exc}") from exc
        except ExtrapolationError as exc:
            raise self._frame_error(FrameError(str(exc), "transform"), "no_transform") from exc
        return project_points(transform_points(transform, xyz), k, size)

    def _labels(self, frame: _Frame, raw: dict[str, bytes], rgb: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        size = rgb.shape[:2]
        where = f"{self.bag} at {frame.stamp_ns / 1e9:.3f} s"
        if self.predictor is not None:
            prediction = self.predictor(rgb)
            return prediction.semantic.astype(np.int32), prediction.instance.astype(np.int32), {"pseudo_labels": True}
        try:
            if "panoptic" in raw:
                classes, ids = decode_panoptic(self._decode("panoptic", raw["panoptic"]), self.class_map)
                where = f"{self.opts.panoptic_topic} ({where})"
            elif "semantic" in raw:
                classes = image_array(self._decode("semantic", raw["semantic"]), "semantic image", _LABEL_ENCODINGS)
                ids = image_array(self._decode("instance", raw["instance"]), "instance image", _LABEL_ENCODINGS)
                where = f"{self.opts.semantic_topic} ({where})"
            else:
                unlabelled = np.full(size, IGNORE_LABEL, np.int32)
                return unlabelled, np.zeros(size, np.int32), {"unlabelled": True}
            classes = _fit_to_image(np.asarray(classes), size, "label image")
            ids = _fit_to_image(np.asarray(ids), size, "instance image")
        except FrameError as exc:
            raise self._frame_error(exc, "bad_labels") from exc
        semantic = self.class_map.apply(classes, where)
        instance = renumber_instances(semantic, ids.astype(np.int64))
        if instance.max(initial=0) >= LABEL_DIVISOR:
            raise self._frame_error(FrameError(f"{int(instance.max())} thing instances", "labels"),
                                    "too_many_instances")
        return semantic, instance, {}

    # -------------------------------------------------------------------------------------- metadata
    def _load_predictor(self) -> None:
        from panopticdepth_core.inference.predictor import Predictor

        config, weights = self.opts.pseudo_labels
        try:
            predictor = Predictor.from_files(config, weights, device=self.opts.device)
        except Exception as exc:
            raise ExtractError(f"--pseudo-labels {config} {weights}: cannot load the model ({type(exc).__name__}: "
                               f"{exc})") from exc
        self.predictor = predictor
        self.pseudo_meta = {
            "config": str(Path(config).resolve()), "config_sha256": _sha256(config),
            "weights": str(Path(weights).resolve()), "weights_sha256": _sha256(weights),
            "model_config_sha256": hashlib.sha256(predictor.cfg.dump().encode()).hexdigest(),
        }

    def metadata(self, reader, conns: dict[str, list], storage: str) -> dict[str, Any]:
        opts = self.opts
        if self.pseudo_meta is not None:
            label_source = "pseudo-labels"
        elif opts.semantic_topic or opts.panoptic_topic:
            label_source = "topics"
        else:
            label_source = None
        class_map = None
        if label_source == "topics":
            class_map = {"file": self.class_map.source if opts.class_map else None,
                         "sha256": _sha256(opts.class_map) if opts.class_map else None,
                         "map": {str(k): v for k, v in sorted(self.class_map.mapping.items())},
                         "default": self.class_map.default, "panoptic_divisor": self.class_map.panoptic_divisor}
        return {
            "generator": "panopticdepth extract",
            "source_bag": str(self.bag.resolve()),
            "storage": storage,
            "bag_message_count": int(reader.message_count),
            "topics": {role: {"topic": conns[role][0].topic, "type": conns[role][0].msgtype} for role in conns},
            "time_tolerance_s": opts.time_tolerance,
            "every": opts.every,
            "max_rate_hz": opts.max_rate,
            "depth_source": "depth_image" if opts.depth_topic else "lidar" if opts.lidar_topic else None,
            "depth_scale": opts.depth_scale,
            "label_source": label_source,
            "pseudo_labels": self.pseudo_meta,
            "class_map": class_map,
            "split": opts.split,
            "layout": "Cityscapes-DPS (ViP-DeepLab Cityscapes-DVPS), flat per split",
            "frame_naming": "000000_{frame:06d}_bag_000000_{frame:06d}; frame = index among matched images",
            "label_encoding": "16-bit PNG, train_id * 1000 + instance (things), train_id * 1000 (stuff), 32000 void",
            "depth_encoding": "16-bit PNG, round(z-depth metres * 256), 0 = no depth",
            "summary": self.summary.to_dict(),
            "frames": self.frames_meta,
        }

    # -------------------------------------------------------------------------------------- run
    def run(self) -> ExtractSummary:
        opts = self.opts
        reader, storage = open_bag(self.bag, opts.storage)
        try:
            conns = check_topics(reader, self.bag, opts.topics())
            self._image_type = conns["image"][0].msgtype
            frames = self.index(reader, conns)
            if not frames:
                raise NoFramesError(f"{self.bag}: no frame has every input; nothing written (are the sensors' "
                                    "clocks in sync? see --time-tolerance).\n"
                                    + self.summary.format(opts.time_tolerance), self.summary)
            if opts.pseudo_labels:
                self._load_predictor()
            out = Path(opts.out)
            out.mkdir(parents=True, exist_ok=True)
            final = out / opts.split
            partial = out / f".{opts.split}.partial-{os.getpid()}"
            if partial.exists():
                shutil.rmtree(partial)
            try:
                partial.mkdir()
                self.write(reader, conns, frames, partial)
                if self.summary.written == 0:
                    raise NoFramesError(f"{self.bag}: every matched frame was unusable; nothing written.\n"
                                        + self.summary.format(opts.time_tolerance), self.summary)
                self.summary.output = str(final)
                with open(partial / "dataset.json", "w", encoding="utf-8", newline="\n") as f:
                    json.dump(self.metadata(reader, conns, storage), f, indent=2, sort_keys=True)
                    f.write("\n")
                if final.exists():  # validated empty before the run
                    final.rmdir()
                partial.rename(final)
            except BaseException:
                self.summary.output = None
                shutil.rmtree(partial, ignore_errors=True)
                raise
        finally:
            reader.close()
        return self.summary


def extract_bag(opts: ExtractOptions) -> ExtractSummary:
    """Extract ``opts.bag`` into ``opts.out/opts.split``; raises ExtractError (NoFramesError: nothing written)."""
    validate_options(opts)
    return _Extractor(opts).run()
