"""What the tracker sees of one frame's things: class, a coarse mask, the mask kernel, a 2D and a 3D position.

Masks are compared on a coarse grid (every ``stride``-th pixel, the longer side at most ``grid_size`` cells):
mask IoU needs the shape, not every pixel, and the grid keeps 30 instances on a camera image cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..data.classes import LABEL_DIVISOR


@dataclass
class FrameThings:
    """The N thing instances of one frame, in ascending panoptic id."""

    panoptic_ids: np.ndarray  # (N,) int64 class * LABEL_DIVISOR + instance, as the frame numbered them
    classes: np.ndarray  # (N,) int64
    scores: np.ndarray  # (N,) float64 (1 where not known)
    masks: np.ndarray  # (N, h, w) bool on the grid
    labels: np.ndarray  # (h, w) int64 index of the thing at each grid cell, N where there is none
    centers: np.ndarray  # (N, 2) float64 mask centroid (x, y) in grid cells; NaN for a mask empty on the grid
    positions: np.ndarray | None  # (N, 3) float64 metres, mean of the mask's 3D points (world frame when a
    #                               camera pose was given, else the optical frame); NaN rows without depth
    embeddings: np.ndarray | None  # (N, E) float32 unit mask kernels; None when the frame gave none
    stride: int  # grid step in pixels
    areas: np.ndarray | None = None  # (N,) grid cells of each mask
    embedded: np.ndarray | None = None  # (N,) bool: the thing has a (non-zero) embedding

    def __post_init__(self) -> None:
        if self.areas is None:
            self.areas = self.masks.reshape(len(self.masks), -1).sum(1)
        if self.embedded is None and self.embeddings is not None:
            self.embedded = np.any(self.embeddings != 0, axis=1)

    def __len__(self) -> int:
        return int(self.panoptic_ids.size)


#: Things on fewer grid cells than this are observed from their full-resolution pixels instead.
_FEW_CELLS = 4
#: The finest grid (in cells) searched for things the tracking grid missed: every pixel up to 512x512, every
#: second one at 1280x720 (a pass over it costs a fraction of a millisecond).
_SEARCH_CELLS = 1 << 18


def grid_stride(height: int, width: int, grid_size: int) -> int:
    """Pixel step that brings the longer image side to at most ``grid_size`` cells."""
    return max(1, math.ceil(max(height, width) / max(1, grid_size)))


def observe_things(
    panoptic: np.ndarray,
    segments: Sequence | None = None,
    depth: np.ndarray | None = None,
    K: np.ndarray | None = None,
    camera_to_world: np.ndarray | None = None,
    grid_size: int = 160,
) -> FrameThings:
    """The things of a frame from its panoptic map (H, W) ``class * 1000 + instance`` (-1 void).

    ``segments`` (objects with ``id``, ``score`` and an optional ``embedding``): scores and mask kernels; a thing
    without a segment gets score 1 and, if others have one, a zero embedding (no appearance evidence).
    ``depth`` (H, W) metres and ``K`` (3, 3): 3D positions; ``camera_to_world`` (4, 4): positions in the world
    frame, so a moving camera does not move still objects.
    """
    panoptic = np.asarray(panoptic)
    if panoptic.ndim != 2:
        raise ValueError(f"panoptic must be (H, W), got shape {panoptic.shape}")
    height, width = panoptic.shape
    stride = grid_stride(height, width, grid_size)
    grid = panoptic[::stride, ::stride].astype(np.int64)  # (h, w)
    is_thing = (grid >= 0) & (grid % LABEL_DIVISOR != 0)
    seg_by_id = {int(s.id): s for s in segments or () if getattr(s, "is_thing", True)}
    ids = set(np.unique(grid[is_thing]).tolist())
    ids.update(i for i in seg_by_id if i % LABEL_DIVISOR)  # small things the grid missed keep their track too
    panoptic_ids = np.array(sorted(ids), dtype=np.int64)
    count = panoptic_ids.size
    h, w = grid.shape
    # compact index of every grid cell's thing (count for none): the bincounts below are then one pass each
    index = np.full(grid.shape, count, dtype=np.int64)
    if count:
        where = np.searchsorted(panoptic_ids, grid[is_thing])
        index[is_thing] = where
    flat = index.reshape(-1)
    masks = np.zeros((count + 1, h * w), dtype=bool)
    masks[flat, np.arange(flat.size)] = True
    masks = masks[:count].reshape(count, h, w)
    area = np.bincount(flat, minlength=count + 1)[:count].astype(np.float64)
    ys, xs = np.divmod(np.arange(flat.size), w)
    with np.errstate(invalid="ignore", divide="ignore"):
        centers = np.stack([np.bincount(flat, xs, count + 1)[:count] / area,
                            np.bincount(flat, ys, count + 1)[:count] / area], axis=1)  # NaN where area 0

    positions = None
    if depth is not None and K is not None and count:  # mean optical-frame point over the cells with a depth
        z = np.asarray(depth)[::stride, ::stride][:h, :w].reshape(-1)  # slice first: cheap
        on_thing = flat < count
        point_sums, points = _point_sums(flat[on_thing], xs[on_thing] * stride, ys[on_thing] * stride,
                                         z[on_thing], K, count)
        with np.errstate(invalid="ignore", divide="ignore"):
            positions = point_sums / points[:, None]  # NaN rows without
    unsampled = np.flatnonzero(area < _FEW_CELLS)  # things the grid barely samples, or steps over
    if unsampled.size:
        pixels, sums, point_sums, points = _full_resolution_sums(panoptic, panoptic_ids[unsampled], masks[unsampled],
                                                                 stride, depth, K)
        with np.errstate(invalid="ignore", divide="ignore"):
            centers[unsampled] = sums / pixels[:, None] / stride  # pixel centroid in grid cells
            if positions is not None:
                positions[unsampled] = point_sums / points[:, None]
        area[unsampled] = pixels / stride**2  # in (fractional) grid cells, as exact as the pixels allow
    if positions is not None:
        if camera_to_world is not None:
            pose = np.asarray(camera_to_world, dtype=np.float64).reshape(4, 4)
            positions = positions @ pose[:3, :3].T + pose[:3, 3]

    scores = np.array([float(getattr(seg_by_id.get(int(i)), "score", 1.0)) for i in panoptic_ids], np.float64)
    embeddings = _embeddings(panoptic_ids, seg_by_id)
    return FrameThings(panoptic_ids, panoptic_ids // LABEL_DIVISOR, scores, masks, index, centers, positions,
                       embeddings, stride, area)


def _full_resolution_sums(panoptic: np.ndarray, ids: np.ndarray, cells: np.ndarray, stride: int,
                          depth: np.ndarray | None, K: np.ndarray | None
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For the things ``ids`` (sorted) with grid masks ``cells`` (k, h, w), from their full-resolution pixels:
    pixel counts (k,), pixel coordinate sums (k, 2) as (x, y), and sums of the optical-frame 3D points (k, 3) with
    their counts (k,) over the pixels with a valid depth (zeros without depth or K).

    Why: a thing on a few grid cells has a coarse centroid, and one smaller than the grid's step can fall between
    its samples in every frame: without a centroid or a position it could only ever start a new track (a new id
    per frame). Each thing is read inside the box of its cells widened by one step (a few hundred pixels); a thing
    with no cell is looked for on grids twice, four times ... as fine, up to :data:`_SEARCH_CELLS` cells (at
    128x256 every pixel; at 720p every second one), and stays unobserved if none samples it (a sliver of a thing
    almost hidden).
    """
    height, width = panoptic.shape
    seeds: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}  # thing -> its cells' rows, columns, and their step
    for j, mask in enumerate(cells):
        rows, cols = np.nonzero(mask)
        if rows.size:
            seeds[j] = (rows, cols, stride)
    step = stride
    while len(seeds) < ids.size and step > 1:
        step = max(1, step // 2)
        if -(-height // step) * -(-width // step) > _SEARCH_CELLS:
            break  # a sliver only a full pass would find stays unobserved: a bounded cost per frame
        missed = np.array([j for j in range(ids.size) if j not in seeds])
        grid = panoptic[::step, ::step]
        rows, cols = np.nonzero(np.isin(grid, ids[missed]))
        which = missed[np.searchsorted(ids[missed], grid[rows, cols])]
        for j in np.unique(which).tolist():
            seeds[j] = (rows[which == j], cols[which == j], step)
    found_y, found_x, found_which = [], [], []
    for j, (rows, cols, step) in seeds.items():
        y0, y1 = max(0, (int(rows.min()) - 1) * step + 1), min(height, (int(rows.max()) + 1) * step)
        x0, x1 = max(0, (int(cols.min()) - 1) * step + 1), min(width, (int(cols.max()) + 1) * step)
        ys, xs = np.nonzero(panoptic[y0:y1, x0:x1] == ids[j])
        found_y.append(ys + y0), found_x.append(xs + x0), found_which.append(np.full(ys.size, j))
    count = ids.size
    ys, xs, which = (np.concatenate(parts) if parts else np.zeros(0, np.int64)
                     for parts in (found_y, found_x, found_which))
    pixels = np.bincount(which, minlength=count).astype(np.float64)
    sums = np.stack([np.bincount(which, xs, count), np.bincount(which, ys, count)], axis=1)
    point_sums, points = np.zeros((count, 3)), np.zeros(count)
    if depth is not None and K is not None:
        point_sums, points = _point_sums(which, xs, ys, np.asarray(depth)[ys, xs], K, count)
    return pixels, sums, point_sums, points


def _point_sums(which: np.ndarray, xs: np.ndarray, ys: np.ndarray, z: np.ndarray, K: np.ndarray, count: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per thing ``which`` (in [0, count)): the sum of the optical-frame points of its pixels (``xs``, ``ys``) with
    depth ``z`` (count, 3), and how many there are (count,), over the valid depths only (finite, > 0)."""
    K = np.asarray(K, dtype=np.float64)
    z = z.astype(np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(z) & (z > 0)
    which, z, xs, ys = which[valid], z[valid], xs[valid], ys[valid]
    sums = np.stack([np.bincount(which, (xs - K[0, 2]) / K[0, 0] * z, count),
                     np.bincount(which, (ys - K[1, 2]) / K[1, 1] * z, count),
                     np.bincount(which, z, count)], axis=1)
    return sums, np.bincount(which, minlength=count).astype(np.float64)


def _embeddings(panoptic_ids: np.ndarray, seg_by_id: dict) -> np.ndarray | None:
    vectors = {i: np.asarray(s.embedding, dtype=np.float32).reshape(-1) for i, s in seg_by_id.items()
               if getattr(s, "embedding", None) is not None}
    if not vectors:
        return None
    dim = next(iter(vectors.values())).size
    out = np.zeros((panoptic_ids.size, dim), dtype=np.float32)
    for row, i in enumerate(panoptic_ids.tolist()):
        vector = vectors.get(i)
        if vector is not None and vector.size == dim:
            norm = float(np.linalg.norm(vector))
            out[row] = vector / norm if norm > 0 else vector
    return out
