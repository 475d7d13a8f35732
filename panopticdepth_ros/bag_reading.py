"""Iterating a rosbag2 reader's messages so that a read failure mid-bag becomes the caller's own error type."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


def guarded_messages(reader, connections: list,
                     error: Callable[[Exception, int], Exception]) -> Iterator[tuple[Any, int, bytes]]:
    """``reader.messages(connections=...)``; a failure while reading (truncated or corrupt file) raises
    ``error(exc, messages_read_so_far)`` instead, so users see which bag broke rather than a rosbags traceback."""
    count = 0
    iterator = reader.messages(connections=connections)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - any reader failure is a broken input bag
            raise error(exc, count) from exc
        count += 1
        yield item
