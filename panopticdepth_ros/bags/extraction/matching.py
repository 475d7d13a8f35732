"""Choosing the images of ``panopticdepth extract`` and matching other topics' messages to them by header stamp."""

from __future__ import annotations

import struct

import numpy as np


def header_stamp_ns(data: bytes | memoryview) -> int:
    """Header stamp (ns) of a CDR-serialized message whose first field is a std_msgs/Header, without decoding."""
    if len(data) < 12:
        raise ValueError(f"message of {len(data)} bytes is too short for a header")
    little = data[1] & 1 == 1  # encapsulation kind CDR_LE = 0x0001, PL_CDR_LE = 0x0003
    sec, nanosec = struct.unpack_from("<iI" if little else ">iI", data, 4)
    return sec * 1_000_000_000 + nanosec


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
