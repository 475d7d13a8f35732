"""A recording as the bag tools see it: one or more rosbags readers behind one list of connections.

Why not a plain ``rosbags.rosbag2.Reader``: recordings from the field are not always what rosbags opens as one
bag. Older rosbag2 versions, converters and several recorders write legacy type names (``sensor_msgs/Image``);
a recording that crashed leaves storage files without metadata.yaml; a copied bag can miss some of its splits; a
user may pass one split file. :class:`Recording` reads each storage file that is there (the folder reader of
rosbags when the bag is complete), merges their connections per (topic, ROS 2 type name) and notes in
``notes`` what it assumed or left out, so the commands can say so.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.rosbag2 import Reader

from .errors import BagError

#: zstd frame magic: rosbag2's per-message compression; CDR starts with 0x00, so it is never confused.
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
STORAGE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}
REPAIR_HINT = ("an interrupted recording can often be repaired with `ros2 bag reindex` (sqlite3) or "
               "`mcap recover` (mcap)")


def ros2_type_name(name: str) -> str:
    """The ROS 2 name of a message type: ``sensor_msgs/Image`` (ROS 1 / legacy rosbag2) and
    ``sensor_msgs::msg::Image`` (IDL) -> ``sensor_msgs/msg/Image``; ROS 2 names and anything else unchanged."""
    parts = [part for part in name.strip().replace("::", "/").split("/") if part]
    if len(parts) == 2:
        return f"{parts[0]}/msg/{parts[1]}"
    if len(parts) == 3:
        return "/".join(parts)
    return name


def split_order(path: Path) -> tuple:
    """Sort key of split files: ``bag_2.db3`` before ``bag_10.db3`` (rosbag2 numbers splits from 0)."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name))


@dataclass
class _Part:
    """One opened rosbags reader and which of the recording's connections each of its connections feeds."""

    reader: Reader
    single_file: bool  # a storage file opened on its own: rosbags does not undo per-message compression there
    links: dict[int, Connection] = field(default_factory=dict)  # the part's connection id -> recording connection


class Recording:
    """Opened storage files read as one recording; connections carry ROS 2 type names; close() closes them."""

    def __init__(self, path: Path, storage: str, files: Sequence[Path | None], notes: Sequence[str] = ()) -> None:
        """``files``: storage files to open one by one in that order, or ``[None]`` for rosbags' folder reader."""
        self.path = path
        self.storage = storage
        self.notes: list[str] = list(notes)
        self.connections: list[Connection] = []
        self.current: Path = path  # the file (or folder) being read: errors name it
        self._parts: list[_Part] = []
        try:
            for file in files:
                self._parts.append(self._open_part(path if file is None else file, single_file=file is not None))
        except BaseException:
            self.close()
            raise
        self._merge_connections()

    @staticmethod
    def _open_part(path: Path, single_file: bool) -> _Part:
        try:
            reader = Reader(path)
            reader.open()
        except Exception as exc:  # rosbags raises ReaderError, FileNotFoundError, mcap/sqlite3/yaml/struct errors
            raise BagError(f"{path}: not a readable rosbag2 ({type(exc).__name__}: {exc}); the bag is truncated or "
                           f"corrupt: {REPAIR_HINT}") from exc
        return _Part(reader, single_file)

    def _merge_connections(self) -> None:
        groups: dict[tuple[str, str], list[Connection]] = {}
        legacy: dict[str, str] = {}
        for part in self._parts:
            for conn in part.reader.connections:
                msgtype = ros2_type_name(conn.msgtype)
                if msgtype != conn.msgtype:
                    legacy[conn.msgtype] = msgtype
                groups.setdefault((conn.topic, msgtype), []).append(conn)
        merged = {}
        for number, ((topic, msgtype), conns) in enumerate(groups.items(), start=1):
            msgdef = next((c.msgdef for c in conns if self.has_definitions([c])), conns[0].msgdef)
            merged[(topic, msgtype)] = Connection(number, topic, msgtype, msgdef, conns[0].digest,
                                                  sum(c.msgcount for c in conns), conns[0].ext, self)
        self.connections = list(merged.values())
        for part in self._parts:
            part.links = {c.id: merged[(c.topic, ros2_type_name(c.msgtype))] for c in part.reader.connections}
        if legacy:
            names = ", ".join(f"{old} -> {new}" for old, new in sorted(legacy.items()))
            self.notes.append(f"legacy message type names read as their ROS 2 types: {names}")

    # ------------------------------------------------------------------------------------------ reading
    @property
    def message_count(self) -> int:
        return sum(part.reader.message_count for part in self._parts)

    def has_definitions(self, connections: Collection[Connection] | None = None) -> bool:
        """Whether the bag carries the message definitions of ``connections`` (default: all of them)."""
        conns = self.connections if connections is None else connections
        return all(conn.msgdef.format != MessageDefinitionFormat.NONE and conn.msgdef.data.strip() for conn in conns)

    def messages(self, connections: Collection[Connection] = ()) -> Iterator[tuple[Connection, int, bytes]]:
        """(connection, log time, CDR bytes) of ``connections`` (default: all), file by file in split order."""
        wanted = {conn.id for conn in connections} if connections else None
        for part in self._parts:
            own = [c for c in part.reader.connections if wanted is None or part.links[c.id].id in wanted]
            if not own:
                continue
            links, single = part.links, part.single_file
            self.current = Path(part.reader.path)
            for conn, log_time, data in part.reader.messages(connections=own):
                if single and data[:4] == ZSTD_MAGIC:
                    data = _zstd_decompress(data)
                yield links[conn.id], log_time, data

    def close(self) -> None:
        parts, self._parts = self._parts, []
        for part in parts:
            with suppress(Exception):
                part.reader.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _zstd_decompress(data: bytes) -> bytes:
    """One message of a per-message compressed bag read from its storage file alone."""
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+
    except ImportError:
        try:
            from backports import zstd  # what rosbags 0.11 uses before Python 3.14
        except ImportError:  # rosbags 0.10 used zstandard
            import zstandard

            return zstandard.ZstdDecompressor().decompress(data)
    return zstd.decompress(data)
