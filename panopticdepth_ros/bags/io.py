"""The one rosbag2 layer of the bag tools: open a recording, list its topics, read its messages, write a new bag.

Everything goes through ``rosbags`` (no ROS install). Every failure a user can cause (a missing or damaged bag,
an unknown storage or distro) becomes a :class:`BagError` that names the bag and, where it helps, how to repair
it. The offline twin, the extraction and the synthetic recordings all open, read and write bags through here.

Reading takes recordings as they come from the field (:func:`plan_reading`, ``recording.Recording``): legacy
type names, folders without metadata.yaml or with missing splits, one split file. Writing records the ROS distro
the bag is for (``--distro``), which ``ros2 bag info`` shows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer

from .errors import BagError
from .recording import REPAIR_HINT, STORAGE_SUFFIXES, Recording, split_order

#: Output storage name -> rosbags plugin.
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
#: rosbag2 metadata version per distro (Humble's rosbag2 reads the version-8 layout, Jazzy writes 9).
BAG_VERSIONS = {"humble": 8, "jazzy": 9}
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"


def _metadata(metadata: Path) -> dict[str, Any]:
    """The ``rosbag2_bagfile_information`` mapping of a metadata.yaml; BagError naming it if unreadable."""
    import yaml

    try:
        info = yaml.safe_load(metadata.read_text(encoding="utf-8"))["rosbag2_bagfile_information"]
        str(info["storage_identifier"])
        return info
    except Exception as exc:  # yaml errors, a missing key, a file that is not a mapping
        raise BagError(f"{metadata}: not a readable rosbag2 metadata file ({type(exc).__name__}: {exc})") from exc


def _storage_of_file(path: Path) -> str:
    if path.suffix == ".zstd":
        raise BagError(f"{path}: a storage file compressed as a whole (rosbag2 compression mode 'file'); decompress "
                       f"it first (`zstd -d {path.name}`) or pass the complete bag folder")
    if path.suffix not in STORAGE_SUFFIXES:
        raise BagError(f"{path}: not a readable rosbag2: expected a rosbag2 folder (with metadata.yaml), an .mcap "
                       "or a .db3 file")
    return STORAGE_SUFFIXES[path.suffix]


def plan_reading(path: Path) -> tuple[str, list[Path | None], list[str]]:
    """(storage, files, notes) for reading ``path``: a complete bag folder is ``[None]`` (rosbags' folder reader);
    otherwise the storage files that are there, in split order, with notes saying what was assumed or is missing.

    Handles: a folder with metadata.yaml, one whose metadata.yaml lists splits that are missing, a folder of
    storage files without metadata.yaml (a crashed recording), and a single .mcap / .db3 file (a split or a
    whole bag)."""
    if path.is_file():
        storage = _storage_of_file(path)
        notes = []
        metadata = path.parent / "metadata.yaml"
        if metadata.is_file():
            listed = [PurePath(name).name for name in _metadata(metadata).get("relative_file_paths") or []]
            if path.name in listed and len(listed) > 1:
                notes.append(f"read {path.name} only: one of the {len(listed)} files of the bag in {path.parent} "
                             "(pass the folder to read them all)")
        return storage, [path], notes
    metadata = path / "metadata.yaml"
    if metadata.is_file():
        info = _metadata(metadata)
        storage = str(info["storage_identifier"])
        listed = [path / PurePath(name).name for name in info.get("relative_file_paths") or []]
        missing = [p.name for p in listed if not p.exists()]
        if not missing:
            return storage, [None], []
        present = [p for p in listed if p.exists()]
        if not present:
            raise BagError(f"{path}: none of the files that metadata.yaml lists exists (missing: "
                           f"{', '.join(missing)}); nothing to read")
        for file in present:
            _storage_of_file(file)
        note = (f"metadata.yaml lists {len(listed)} files, {len(missing)} missing ({', '.join(missing)}): read the "
                f"{len(present)} that are there ({', '.join(p.name for p in present)})")
        return storage, list(present), [note]
    files = sorted((p for p in path.glob("*") if p.suffix in STORAGE_SUFFIXES), key=split_order) if path.is_dir() \
        else []
    if not files:
        raise BagError(f"{path}: not a readable rosbag2 folder (no metadata.yaml and no .mcap or .db3 file in it)")
    storages = sorted({STORAGE_SUFFIXES[p.suffix] for p in files})
    if len(storages) > 1:
        raise BagError(f"{path}: no metadata.yaml, and the folder holds both .mcap and .db3 files "
                       f"({', '.join(p.name for p in files)}); pass one file, or keep one bag per folder")
    note = (f"no metadata.yaml: read the {len(files)} {storages[0]} file(s) in the folder in split order "
            f"({', '.join(p.name for p in files)}); `ros2 bag reindex {path}` would rebuild metadata.yaml")
    return storages[0], list(files), [note]


def detect_storage(path: Path) -> str:
    """"mcap" or "sqlite3" of a bag folder (from its metadata.yaml or its files) or of a single .mcap / .db3."""
    return plan_reading(Path(path))[0]


def open_reader(path: str | Path, storage: str = "auto") -> Recording:
    """An opened :class:`Recording` of a rosbag2 folder, .mcap or .db3 file (see :func:`plan_reading`);
    ``storage`` other than "auto" must match. Its ``notes`` say what was assumed or left out.

    The caller closes it (``reader.close()``, or use it as a context manager).
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    detected, files, notes = plan_reading(path)
    if storage not in ("auto", detected):
        raise BagError(f"{path}: --storage {storage} given, but the bag is stored as {detected}")
    return Recording(path, detected, files, notes)


def types_line(reader: Recording, connections: list, distro: str) -> str:
    """Which type store decodes ``connections``, and whether that was assumed (the bag has no definitions:
    sqlite3 bags before Iron and converted bags), for the commands' output."""
    line = f"message types: decoded as ROS 2 {distro}'s (--distro)"
    missing = sorted({c.msgtype for c in connections if not reader.has_definitions([c])})
    if missing:
        line += (f"; assumed: the bag has no message definitions of {', '.join(missing)} (an older rosbag2 or a "
                 "converter wrote it)")
    return line


def connections_by_topic(reader: Recording) -> dict[str, list]:
    """topic -> the bag's connections on it (one per message type; a topic recorded with two types has two)."""
    topics: dict[str, list] = {}
    for connection in reader.connections:
        topics.setdefault(connection.topic, []).append(connection)
    return topics


def describe_topics(reader: Recording) -> str:
    """The bag's topics, one per line with type and message count (for errors that ask the user to pick one)."""
    topics: dict[str, tuple[str, int]] = {}
    for conn in reader.connections:
        count = topics.get(conn.topic, (conn.msgtype, 0))[1] + conn.msgcount
        topics[conn.topic] = (conn.msgtype, count)
    if not topics:
        return "  (none: the bag has no topics; is it empty?)"
    width = max(len(t) for t in topics)
    return "\n".join(f"  {t:<{width}}  {msgtype}  ({count} messages)" for t, (msgtype, count) in sorted(topics.items()))


def read_messages(reader: Recording, connections: list) -> Iterator[tuple[Any, int, bytes]]:
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
            raise BagError(f"{reader.current}: reading failed after {count} messages ({type(exc).__name__}: {exc}); "
                           f"the bag is truncated or corrupt: {REPAIR_HINT}") from exc
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
    return _DistroWriter(Path(path), version=BAG_VERSIONS[distro], storage_plugin=STORAGES[storage], distro=distro)


def _with_distro(metadata: str, distro: str) -> str:
    return re.sub(r"^(\s*ros_distro:).*$", rf"\1 {distro}", metadata, count=1, flags=re.MULTILINE)


class _DistroWriter(Writer):
    """rosbags records ``ros_distro: rosbags``, which ``ros2 bag info`` shows as the bag's ROS distro; this
    writer records the distro the bag is written for, in metadata.yaml and in the copy inside the storage file."""

    def __init__(self, path: Path, *, version: int, storage_plugin: StoragePlugin, distro: str) -> None:
        super().__init__(path, version=version, storage_plugin=storage_plugin)  # type: ignore[arg-type]
        self.distro = distro

    def close(self) -> None:
        storage = self.storage
        if storage is not None:
            close_storage = storage.close
            storage.close = lambda version, metadata: close_storage(version, _with_distro(metadata, self.distro))
            if isinstance(storage, Sqlite3Writer):  # its schema table records the distro too
                storage.cursor.execute("UPDATE schema SET ros_distro = ?", (self.distro,))
        super().close()
        text = self.metapath.read_text(encoding="utf-8")
        fixed = self.metapath.with_suffix(".yaml.distro")
        fixed.write_text(_with_distro(text, self.distro), encoding="utf-8")
        fixed.replace(self.metapath)
