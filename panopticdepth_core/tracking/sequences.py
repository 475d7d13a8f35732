"""Which image files form a video: Cityscapes-DVPS names ``<sequence>_<frame>_...`` group frames into sequences.

`panopticdepth predict` runs one tracker per sequence over its frames in frame order; files without such a name
are single frames (not tracked) unless the caller says all inputs are one sequence.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..evaluation.result_io import frame_stem, sequence_and_frame


def sequence_groups(names: Sequence[str | Path], one_sequence: bool = False) -> list[list[int]]:
    """Indices into ``names``, grouped into sequences in frame order (a sequence first seen first); a name outside
    the Cityscapes-DVPS naming is a group of its own. ``one_sequence``: every name, in the given order, is one
    sequence."""
    if one_sequence:
        return [list(range(len(names)))] if names else []
    groups: dict[str, list[tuple[int, int]]] = {}
    singles: list[list[int]] = []
    order: list[str | int] = []
    for index, name in enumerate(names):
        sequence, frame = sequence_and_frame(frame_stem(name))
        if sequence is None:
            singles.append([index])
            order.append(-len(singles))
            continue
        if sequence not in groups:
            groups[sequence] = []
            order.append(sequence)
        groups[sequence].append((frame, index))
    out = []
    for key in order:
        if isinstance(key, int):
            out.append(singles[-key - 1])
        else:
            out.append([index for _, index in sorted(groups[key])])
    return out


def frame_times(names: Sequence[str | Path], group: Sequence[int]) -> list[float]:
    """Tracker time of each frame of a group: its DVPS frame number (velocities per frame), else its position."""
    times = []
    for position, index in enumerate(group):
        _, frame = sequence_and_frame(frame_stem(names[index]))
        times.append(float(position if frame is None else frame))
    return times


def camera_pose(camera_file: str | Path | None) -> np.ndarray | None:
    """(4, 4) optical-frame pose from a Cityscapes camera file's ``extrinsic`` (x, y, z, pitch, yaw; what `synth
    --sequences` records per frame), None without one. Cityscapes' own files hold the fixed mount, the same pose
    in every frame, which then changes nothing."""
    if camera_file is None:
        return None
    try:
        extrinsic = json.loads(Path(camera_file).read_text(encoding="utf-8")).get("extrinsic")
        if not extrinsic:
            return None
        from ..data.synthetic_sequence import camera_to_world

        return camera_to_world({key: float(extrinsic.get(key, 0.0)) for key in ("x", "y", "z", "pitch", "yaw")})
    except (OSError, ValueError, TypeError, AttributeError):
        return None
