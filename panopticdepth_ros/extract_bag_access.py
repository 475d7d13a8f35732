"""Opening the bag of ``panopticdepth extract`` and checking its topics; every read failure becomes an ExtractError."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .bag_reading import guarded_messages
from .extract_errors import ExtractError
from .messages import CAMERA_INFO, COMPRESSED_IMAGE, IMAGE, POINT_CLOUD2

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


def read_messages(reader, path: Path, connections: list) -> Iterator[tuple[Any, int, bytes]]:
    """reader.messages, with read failures (truncated files) turned into ExtractError naming the bag."""
    return guarded_messages(reader, connections, lambda exc, count: _corrupt(path, exc, f"after {count} messages"))
