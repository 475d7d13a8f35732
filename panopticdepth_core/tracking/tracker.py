"""Ids that persist across video frames: each frame's things are matched to the tracks of earlier frames.

Why these cues: the network already gives, per thing, its mask, its mask kernel (an appearance embedding: the
same car yields a similar kernel from frame to frame) and its metric depth, so a thing's 3D position. A pair
(track, thing) costs the weighted mean of (1 - mask IoU), the kernels' cosine distance and the distance between
the track's predicted and the thing's position, each in [0, 1]; cues a frame lacks (no depth, no kernels) drop
out of the mean. Tracks predict with a constant velocity (image and 3D), so crossing things keep their ids. The
assignment is scipy's ``linear_sum_assignment``; pairs of different classes, pairs outside the gates (no mask
overlap and farther than the position gate) and pairs above ``max_cost`` are never matched. A track unseen for
more than ``max_missing`` frames retires and its id goes to the retired list (``ids.py``). Stuff is not tracked.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..data.classes import LABEL_DIVISOR
from .ids import MAX_INSTANCE_ID, IdAllocator, IdsExhausted
from .observations import FrameThings, observe_things

_INFEASIBLE = 1e6


@dataclass(frozen=True)
class TrackerSettings:
    """Tracker behaviour (config keys TRACKER.*, see docs/tracking.md)."""

    max_missing: int = 5  # frames a track may stay unseen (occluded, missed) and still take its thing back
    iou_weight: float = 1.0
    embedding_weight: float = 0.5
    position_weight: float = 1.0
    max_cost: float = 0.7  # pairs dearer than this are not matched
    min_iou: float = 0.05  # gate: a pair needs this mask IoU (after the motion prediction) ...
    position_gate_m: float = 2.0  # ... or a 3D distance below this + position_gate_rel * the thing's distance
    position_gate_rel: float = 0.1
    pixel_gate: float = 0.1  # without depth: 2D gate as a fraction of the image diagonal
    missing_penalty: float = 0.02  # added cost per frame a track was unseen: a present track wins a tie
    embedding_momentum: float = 0.7  # weight of the old embedding in the running mean
    occluded_ratio: float = 0.6  # a mask below this share of the track's area is taken as partly hidden
    iou_full_area: int = 64  # grid cells: masks smaller than this count their IoU less (a 2-cell shift of a tiny
    #                          mask leaves no overlap although it is the same thing)
    grid_size: int = 160  # masks compared on a grid whose longer side has at most this many cells
    id_limit: int = MAX_INSTANCE_ID  # ids per class, below the panoptic label divisor

    def __post_init__(self) -> None:
        checks = [
            (self.max_missing >= 0, "max_missing must be >= 0"),
            (min(self.iou_weight, self.embedding_weight, self.position_weight) >= 0, "weights must be >= 0"),
            (self.iou_weight + self.embedding_weight + self.position_weight > 0, "some weight must be > 0"),
            (0 < self.max_cost <= 1, "max_cost must lie in (0, 1]"),
            (0 <= self.min_iou <= 1, "min_iou must lie in [0, 1]"),
            (self.position_gate_m > 0 and self.position_gate_rel >= 0, "position gates must be > 0 and >= 0"),
            (self.pixel_gate > 0, "pixel_gate must be > 0"),
            (0 <= self.embedding_momentum < 1, "embedding_momentum must lie in [0, 1)"),
            (0 <= self.occluded_ratio < 1, "occluded_ratio must lie in [0, 1)"),
            (self.iou_full_area >= 1, "iou_full_area must be >= 1"),
            (self.grid_size >= 8, "grid_size must be >= 8"),
            (1 <= self.id_limit <= MAX_INSTANCE_ID, f"id_limit must lie in 1..{MAX_INSTANCE_ID}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"tracker settings: {message}")

    @classmethod
    def from_config(cls, cfg) -> TrackerSettings:
        """From a config's TRACKER node (keys in upper case, as in defaults.py)."""
        node = cfg.TRACKER
        return cls(**{f.name: type(f.default)(node[f.name.upper()]) for f in dataclasses.fields(cls)})


@dataclass
class Track:
    """One tracked thing."""

    category: int
    instance: int  # the tracked instance id, 1..id_limit
    mask: np.ndarray  # (h, w) bool on the grid, as last seen
    center: np.ndarray  # (2,) grid cells, as last seen
    velocity: np.ndarray  # (2,) grid cells per time unit
    position: np.ndarray  # (3,) metres, NaN when unknown
    velocity3d: np.ndarray  # (3,) metres per time unit
    embedding: np.ndarray | None  # (E,) unit vector, None when never seen with one
    last_time: float
    area: float = 0.0  # grid cells of the mask when last seen whole (not partly hidden)
    missing: int = 0  # frames since last seen
    hits: int = 1

    @property
    def panoptic_id(self) -> int:
        return self.category * LABEL_DIVISOR + self.instance


@dataclass
class TrackedFrame:
    """A frame with tracked ids: maps and segments relabelled, and how."""

    panoptic: np.ndarray  # (H, W) int32 class * 1000 + tracked instance, -1 void (stuff unchanged)
    instance: np.ndarray  # (H, W) int32 tracked instance id for things, 0 elsewhere
    segments: list = field(default_factory=list)  # the frame's segments with tracked ids
    ids: dict[int, int] = field(default_factory=dict)  # the frame's panoptic id -> tracked panoptic id
    new: list[int] = field(default_factory=list)  # tracked panoptic ids first seen in this frame
    reset: bool = False  # the tracker started over at this frame (time went back, or the image size changed)


class InstanceTracker:
    """Gives the things of consecutive frames persistent ids. One tracker per camera (or sequence)."""

    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self.reset()

    def reset(self) -> None:
        """Forget every track; ids start over at 1 (a new recording, a jump back in time, a new camera)."""
        self.tracks: list[Track] = []
        self.ids = IdAllocator(self.settings.id_limit)
        self.last_time: float | None = None
        self.frames = 0
        self._grid_shape: tuple[int, int] | None = None
        self._posed: bool | None = None  # whether positions are in a world frame (camera poses given)

    # ------------------------------------------------------------------------------------------------ update
    def update(
        self,
        panoptic: np.ndarray,
        segments: Sequence | None = None,
        depth: np.ndarray | None = None,
        K: np.ndarray | None = None,
        camera_to_world: np.ndarray | None = None,
        time: float | None = None,
        instance: np.ndarray | None = None,
        in_place: bool = False,
    ) -> TrackedFrame:
        """Track one frame: ``panoptic`` (H, W) ``class * 1000 + instance`` as the frame numbered its things.

        ``segments``: the frame's segments (scores, ``embedding`` = mask kernels) and ``depth`` (H, W) metres with
        ``K`` (3, 3): the appearance and 3D cues; ``camera_to_world`` (4, 4): the camera pose, when known (a
        frame without one in a stream that has them goes without the 3D cue; a stream that gains poses after its
        first frames moves to the world frame, the tracks' old positions forgotten);
        ``time``: seconds (e.g. the header stamp; None: one unit per frame). Time going back resets the tracker.
        ``instance``: the frame's instance map (non-zero exactly on thing pixels, as the predictor returns it):
        only those pixels are then relabelled, which is cheaper at camera resolutions; the returned maps are the same.
        ``in_place`` (with ``instance``): the tracked ids are written into ``panoptic`` and ``instance`` themselves
        when they are writable int32 maps, and those are returned (for a caller that owns the maps).
        """
        st = self.settings
        reset = False
        now = float(self.frames if time is None else time)
        if self.last_time is not None and now < self.last_time:
            self.reset()
            reset = True
        posed = camera_to_world is not None
        if posed and self._posed is False:
            # Poses became known after the first frames (a live robot's /tf arrives after its first images):
            # switch to the world frame for good. The tracks' camera-frame positions mean nothing there, so they
            # are forgotten; each track's 3D cue returns when it is next seen. Ids carry on.
            for track in self.tracks:
                track.position, track.velocity3d = np.full(3, np.nan), np.zeros(3)
            self._posed = True
        if self._posed is None:
            self._posed = posed
        if posed != self._posed:  # positions would be in another frame than the tracks': leave the 3D cue out
            depth = camera_to_world = None
        things = observe_things(panoptic, segments, depth, K, camera_to_world, st.grid_size)
        grid_shape = things.masks.shape[1:]
        if self._grid_shape is not None and grid_shape != self._grid_shape and self.tracks:
            self.reset()
            reset = True
        self._grid_shape = grid_shape
        matches, unmatched_tracks, unmatched_things = self._associate(things, now)

        assigned: dict[int, int] = {}
        for t, d in matches:
            self._refresh(self.tracks[t], things, d, now)
            assigned[d] = self.tracks[t].panoptic_id
        for t in unmatched_tracks:
            self.tracks[t].missing += 1
        retired = [track for track in self.tracks if track.missing > st.max_missing]
        for track in retired:
            self.ids.retire(track.category, track.instance)
        self.tracks = [track for track in self.tracks if track.missing <= st.max_missing]
        new = []
        for d in unmatched_things:
            track = self._start(things, d, now)
            assigned[d] = track.panoptic_id
            new.append(track.panoptic_id)
        self.last_time = now
        self.frames += 1
        ids = {int(things.panoptic_ids[d]): pid for d, pid in assigned.items()}
        out_panoptic, out_instance = relabel(np.asarray(panoptic), ids, instance, in_place)
        return TrackedFrame(out_panoptic, out_instance, _relabel_segments(segments, ids), ids, sorted(new), reset)

    # ------------------------------------------------------------------------------------------- association
    def cost_matrix(self, things: FrameThings, now: float) -> tuple[np.ndarray, np.ndarray]:
        """(T, N) costs of every (track, thing) pair and (T, N) bool: which pairs may match at all."""
        st = self.settings
        tracks, count = self.tracks, len(things)
        if not tracks or not count:
            return np.zeros((len(tracks), count)), np.zeros((len(tracks), count), dtype=bool)
        h, w = things.masks.shape[1:]
        dts = np.array([max(0.0, now - tr.last_time) for tr in tracks])  # (T,)
        predicted_centers = np.stack([tr.center + tr.velocity * dt for tr, dt in zip(tracks, dts)])  # (T, 2)
        # intersections: the things' masks are disjoint (one panoptic map), so a track's predicted mask meets thing
        # d in as many cells as its cells labelled d: one bincount per track over its own cells only
        inter = np.zeros((len(tracks), count))  # (T, N)
        track_area = np.zeros(len(tracks))
        for t, (tr, dt) in enumerate(zip(tracks, dts)):
            cells = things.labels[_shift(tr.mask, np.round(tr.velocity * dt))]  # (cells,) thing index or N
            inter[t] = np.bincount(cells, minlength=count + 1)[:count]
            track_area[t] = cells.size
        thing_area = np.bincount(things.labels.reshape(-1), minlength=count + 1)[:count].astype(np.float64)
        union = track_area[:, None] + thing_area[None, :] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)

        # position: 3D where both sides have it, else the mask centroid on the grid
        pos_cost = np.ones((len(tracks), count))
        pos_ok = np.zeros((len(tracks), count), dtype=bool)
        diag = math.hypot(h, w)
        d2 = np.linalg.norm(predicted_centers[:, None, :] - things.centers[None, :, :], axis=2)  # (T, N)
        has2 = np.isfinite(d2)
        pos_cost[has2] = np.minimum(d2[has2] / (st.pixel_gate * diag), 1.0)
        pos_ok |= has2
        if things.positions is not None:
            predicted = np.stack([tr.position + tr.velocity3d * dt for tr, dt in zip(tracks, dts)])  # (T, 3)
            d3 = np.linalg.norm(predicted[:, None, :] - things.positions[None, :, :], axis=2)  # (T, N)
            gate = st.position_gate_m + st.position_gate_rel * np.abs(things.positions[:, 2])  # (N,)
            has3 = np.isfinite(d3)
            pos_cost = np.where(has3, np.minimum(d3 / gate[None, :], 1.0), pos_cost)

        # the IoU's weight grows with the smaller mask's area up to iou_full_area cells
        smaller = np.minimum(track_area[:, None], thing_area[None, :])
        iou_weight = st.iou_weight * np.sqrt(np.clip(smaller / st.iou_full_area, 0.0, 1.0))
        iou_weight = np.where(pos_ok, iou_weight, st.iou_weight)  # IoU alone decides when nothing else can
        weights = iou_weight.copy()
        total = iou_weight * (1.0 - iou) + st.position_weight * pos_cost * pos_ok
        weights = weights + st.position_weight * pos_ok
        if things.embeddings is not None and st.embedding_weight > 0:
            track_emb = [tr.embedding for tr in tracks]
            dim = things.embeddings.shape[1]
            te = np.stack([e if e is not None and e.size == dim else np.zeros(dim, np.float32) for e in track_emb])
            known = (np.linalg.norm(te, axis=1)[:, None] > 0) & (np.linalg.norm(things.embeddings, axis=1)[None] > 0)
            emb_cost = (1.0 - np.clip(te @ things.embeddings.T, -1.0, 1.0)) / 2.0  # (T, N) in [0, 1]
            total = total + st.embedding_weight * emb_cost * known
            weights = weights + st.embedding_weight * known
        cost = total / np.maximum(weights, 1e-12)
        same_class = np.array([tr.category for tr in tracks])[:, None] == things.classes[None, :]
        feasible = same_class & ((iou >= st.min_iou) | (pos_ok & (pos_cost < 1.0))) & (cost <= st.max_cost)
        missing = np.array([tr.missing for tr in tracks], dtype=np.float64)[:, None]
        return cost + st.missing_penalty * missing, feasible

    def _associate(self, things: FrameThings, now: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
        from scipy.optimize import linear_sum_assignment  # here: importing scipy.optimize costs the node's start-up

        cost, feasible = self.cost_matrix(things, now)
        matches: list[tuple[int, int]] = []
        if feasible.any():
            rows, cols = linear_sum_assignment(np.where(feasible, cost, _INFEASIBLE))
            matches = [(int(r), int(c)) for r, c in zip(rows, cols) if feasible[r, c]]
        matched_t, matched_d = {t for t, _ in matches}, {d for _, d in matches}
        return (matches, [t for t in range(len(self.tracks)) if t not in matched_t],
                [d for d in range(len(things)) if d not in matched_d])

    # ------------------------------------------------------------------------------------------------ tracks
    def _refresh(self, track: Track, things: FrameThings, d: int, now: float) -> None:
        """Take the matched thing into the track. A thing much smaller than the track was (partly hidden behind
        another) moves its visible centroid, not the thing: the track then coasts on its prediction instead."""
        dt = now - track.last_time
        center, position = things.centers[d], _position(things, d)
        center_ok, position_ok, track_position_ok = _finite(center), _finite(position), _finite(track.position)
        area = float(things.areas[d])
        if track.area > 0 and area < self.settings.occluded_ratio * track.area and dt > 0:
            track.mask = _shift(track.mask, np.round(track.velocity * dt))
            track.center = track.center + track.velocity * dt
            if track_position_ok:
                track.position = track.position + track.velocity3d * dt
            elif position_ok:
                track.position = position
        else:
            first = track.hits == 1  # the first displacement sets the velocity; later ones are smoothed
            if dt > 0:
                if center_ok:
                    measured = (center - track.center) / dt
                    track.velocity = measured if first else 0.5 * track.velocity + 0.5 * measured
                if position_ok and track_position_ok:
                    measured = (position - track.position) / dt
                    track.velocity3d = measured if first else 0.5 * track.velocity3d + 0.5 * measured
            if center_ok:
                track.center, track.mask, track.area = center, things.masks[d], area
            if position_ok:
                track.position = position
        if things.embeddings is not None and things.embedded[d]:
            embedding = things.embeddings[d]
            if track.embedding is None:
                track.embedding = embedding.copy()
            else:
                momentum = self.settings.embedding_momentum
                mixed = momentum * track.embedding + (1 - momentum) * embedding
                track.embedding = mixed / max(float(np.linalg.norm(mixed)), 1e-12)
        track.last_time, track.missing, track.hits = now, 0, track.hits + 1

    def _start(self, things: FrameThings, d: int, now: float) -> Track:
        category = int(things.classes[d])
        try:
            instance = self.ids.allocate(category)
        except IdsExhausted:
            instance = self._evict_for(category)
        center = things.centers[d]
        embedding = None if things.embeddings is None or not things.embedded[d] else things.embeddings[d]
        track = Track(category, instance, things.masks[d], np.nan_to_num(center, nan=-1e6), np.zeros(2),
                      _position(things, d), np.zeros(3), None if embedding is None else embedding.copy(), now,
                      area=float(things.areas[d]))
        self.tracks.append(track)
        return track

    def _evict_for(self, category: int) -> int:
        """Every id of ``category`` is live: retire its longest-unseen track that was not matched in this frame
        (an id is never shared by two things of one frame) and hand out the freed id."""
        candidates = [tr for tr in self.tracks if tr.category == category and tr.missing > 0]
        if not candidates:
            raise IdsExhausted(f"class {category}: more than {self.settings.id_limit} things in one frame")
        oldest = max(candidates, key=lambda tr: (tr.missing, -tr.last_time))
        self.tracks.remove(oldest)
        self.ids.retire(category, oldest.instance)
        return self.ids.allocate(category)


def _finite(vector: np.ndarray) -> bool:
    """All entries finite (a few floats: plain Python is faster than a NumPy reduction here)."""
    return all(map(math.isfinite, vector.tolist()))


def _position(things: FrameThings, d: int) -> np.ndarray:
    if things.positions is None:
        return np.full(3, np.nan)
    return things.positions[d].copy()


def _shift(mask: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``mask`` (h, w) moved by ``offset`` (dx, dy) whole cells; what leaves the grid is lost."""
    dx, dy = (int(v) if np.isfinite(v) else 0 for v in offset)
    if dx == 0 and dy == 0:
        return mask
    h, w = mask.shape
    out = np.zeros_like(mask)
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] = mask[max(0, -dy):h - max(0, dy),
                                                                     max(0, -dx):w - max(0, dx)]
    return out


def relabel(panoptic: np.ndarray, ids: dict[int, int], instance: np.ndarray | None = None,
            in_place: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(panoptic, instance) maps with every thing's panoptic id replaced by ``ids[old]`` (a class keeps its class).

    ``instance``: the frame's instance map (non-zero exactly on thing pixels, as the predictor gives it); then only
    thing pixels are looked up, which at camera resolutions is most of the saving. Without it, one lookup table
    over every panoptic value (void -1 to the largest id) is gathered for both maps. ``in_place``: write the
    new ids into ``panoptic`` and ``instance`` themselves when both are writable int32 maps (a caller that owns
    them saves two camera-sized copies); otherwise new maps are returned.
    """
    panoptic = np.asarray(panoptic)
    if instance is not None:
        instance = np.asarray(instance)
        if instance.shape != panoptic.shape:
            raise ValueError(f"instance map {instance.shape} and panoptic {panoptic.shape} differ in shape")
        return _relabel_things(panoptic, ids, instance, in_place)
    low = min(int(panoptic.min()), -1) if panoptic.size else -1
    high = max(int(panoptic.max()), 0) if panoptic.size else 0  # ids outside the map's values are skipped
    # table[v] is the new value of v for v in 0..high, and its last entry that of void -1, so the panoptic map
    # indexes it directly (NumPy reads index -1 as the last entry); values below -1 need an offset
    offset = 0 if low == -1 else -low
    table = np.concatenate([np.arange(0, high + 1), [-1]]) if low == -1 else np.arange(low, high + 1)
    _set_ids(table, ids, offset)
    index = panoptic + offset if offset else panoptic  # (H, W) positions in the tables
    return np.take(table.astype(np.int32), index), np.take(_instance_table(table), index)


def _relabel_things(panoptic: np.ndarray, ids: dict[int, int], instance: np.ndarray, in_place: bool
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``relabel`` of the thing pixels only (``instance`` != 0): the tables span the values found there."""
    things = instance != 0  # (H, W)
    values = panoptic[things]  # (T,)
    if values.size == 0:
        low = 0
        table = np.zeros(1, dtype=np.int64)
    else:
        low = int(values.min())
        table = np.arange(low, int(values.max()) + 1)
    _set_ids(table, ids, -low)
    if low:
        values = values - low
    writable = (in_place and panoptic.dtype == np.int32 and instance.dtype == np.int32
                and panoptic.flags.writeable and instance.flags.writeable)
    out = panoptic if writable else panoptic.astype(np.int32, copy=True)
    out_instance = instance if writable else np.zeros(panoptic.shape, dtype=np.int32)
    out[things] = table.astype(np.int32)[values]
    out_instance[things] = _instance_table(table)[values]
    return out, out_instance


def _set_ids(table: np.ndarray, ids: dict[int, int], offset: int) -> None:
    """table[old + offset] = new for every (old, new) in ``ids`` whose old id the table spans."""
    if not ids:
        return
    old = np.fromiter(ids.keys(), dtype=np.int64, count=len(ids)) + offset
    new = np.fromiter(ids.values(), dtype=np.int64, count=len(ids))
    inside = (old >= 0) & (old < table.size)
    table[old[inside]] = new[inside]


def _instance_table(table: np.ndarray) -> np.ndarray:
    """The instance part of each panoptic value in ``table`` (0 for void, stuff and non-things)."""
    thing = (table >= 0) & (table % LABEL_DIVISOR != 0)
    return np.where(thing, table % LABEL_DIVISOR, 0).astype(np.int32)


def _relabel_segments(segments: Sequence | None, ids: dict[int, int]) -> list:
    out = []
    for segment in segments or ():
        new_id = ids.get(int(segment.id))
        if new_id is not None and dataclasses.is_dataclass(segment):
            segment = dataclasses.replace(segment, id=new_id, instance_id=new_id % LABEL_DIVISOR)
        out.append(segment)
    return out
