"""The one rosbag2 layer of the bag tools: open a recording, list its topics, read its messages, write a new bag.

Everything goes through ``rosbags`` (no ROS install). Every failure a user can cause (a missing or damaged bag,
an unknown storage or distro) becomes a :class:`BagError` that names the bag and, where it helps, how to repair
it. The offline twin, the extraction and the synthetic recordings all open, read and write bags through here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from .errors import BagError

#: Output storage name -> rosbags plugin.
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
#: A single bag file's suffix -> storage name.
STORAGE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}
#: rosbag2 metadata version per distro (Humble's rosbag2 reads the version-8 layout, Jazzy writes 9).
BAG_VERSIONS = {"humble": 8, "jazzy": 9}
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"
REPAIR_HINT = ("an interrupted recording can often be repaired with `ros2 bag reindex` (sqlite3) or "
               "`mcap recover` (mcap)")


def detect_storage(path: Path) -> str:
    """"mcap" or "sqlite3" of a bag folder (from its metadata.yaml) or of a single .mcap / .db3 file."""
    if path.is_file():
        if path.suffix in STORAGE_SUFFIXES:
            return STORAGE_SUFFIXES[path.suffix]
        raise BagError(f"{path}: not a readable rosbag2: expected a rosbag2 folder (with metadata.yaml), an .mcap "
                       "or a .db3 file")
    metadata = path / "metadata.yaml"
    if metadata.is_file():
        import yaml

        try:
            info = yaml.safe_load(metadata.read_text(encoding="utf-8"))["rosbag2_bagfile_information"]
            return str(info["storage_identifier"])
        except Exception as exc:  # yaml errors, a missing key, a file that is not a mapping
            raise BagError(f"{metadata}: not a readable rosbag2 metadata file ({type(exc).__name__}: {exc})") from exc
    files = sorted(p.name for p in path.glob("*") if p.suffix in STORAGE_SUFFIXES) if path.is_dir() else []
    hint = (f"; it holds {', '.join(files)}: run `ros2 bag reindex {path}` to rebuild metadata.yaml, or pass the "
            "file itself" if files else "")
    raise BagError(f"{path}: not a readable rosbag2 folder (no metadata.yaml){hint}")


def open_reader(path: str | Path, storage: str = "auto") -> Reader:
    """An opened rosbags Reader of a rosbag2 folder, .mcap or .db3 file; ``storage`` other than "auto" must match.

    The caller closes it (``reader.close()``, or use it as a context manager).
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    detected = detect_storage(path)
    if storage not in ("auto", detected):
        raise BagError(f"{path}: --storage {storage} given, but the bag is stored as {detected}")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises ReaderError, FileNotFoundError, mcap/sqlite3/yaml/struct errors
        raise BagError(f"{path}: not a readable rosbag2 ({type(exc).__name__}: {exc}); the bag is truncated or "
                       f"corrupt: {REPAIR_HINT}") from exc
    return reader


def connections_by_topic(reader: Reader) -> dict[str, list]:
    """topic -> the bag's connections on it (a topic recorded twice has two)."""
    topics: dict[str, list] = {}
    for connection in reader.connections:
        topics.setdefault(connection.topic, []).append(connection)
    return topics


def describe_topics(reader: Reader) -> str:
    """The bag's topics, one per line with type and message count (for errors that ask the user to pick one)."""
    topics: dict[str, tuple[str, int]] = {}
    for conn in reader.connections:
        count = topics.get(conn.topic, (conn.msgtype, 0))[1] + conn.msgcount
        topics[conn.topic] = (conn.msgtype, count)
    if not topics:
        return "  (none: the bag has no topics; is it empty?)"
    width = max(len(t) for t in topics)
    return "\n".join(f"  {t:<{width}}  {msgtype}  ({count} messages)" for t, (msgtype, count) in sorted(topics.items()))


def read_messages(reader: Reader, connections: list) -> Iterator[tuple[Any, int, bytes]]:
    """``reader.messages(connections=...)``; a failure while reading (a truncated or corrupt file) raises one
    BagError naming the bag and how many messages were read, so users see which bag broke, not a traceback."""
    count = 0
    iterator = reader.messages(connections=connections)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - any reader failure is a broken input bag
            raise BagError(f"{reader.path}: reading failed after {count} messages ({type(exc).__name__}: {exc}); the "
                           f"bag is truncated or corrupt: {REPAIR_HINT}") from exc
        count += 1
        yield item


def offered_qos(transient_local: bool = False) -> Qos:
    """The QoS a bag records for a topic: reliable, keep last 1; transient local for latched topics
    (~/label_info, /tf_static), so `ros2 bag play` republishes them the way late subscribers expect."""
    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE,
               QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


def check_writer_options(storage: str, distro: str) -> None:
    if storage not in STORAGES:
        raise BagError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
    if distro not in BAG_VERSIONS:
        raise BagError(f"distro must be one of {sorted(BAG_VERSIONS)}, got {distro!r}")


def open_writer(path: str | Path, storage: str = "mcap", distro: str = "humble") -> Writer:
    """A rosbags Writer for a new bag at ``path`` in ``distro``'s layout; enter it with ``with``."""
    check_writer_options(storage, distro)
    return Writer(Path(path), version=BAG_VERSIONS[distro], storage_plugin=STORAGES[storage])
