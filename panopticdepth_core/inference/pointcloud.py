"""Labeled point clouds and per-instance 3D boxes from a metric depth map and pinhole intrinsics (ROS-free).

Frame: the camera's optical frame (REP 103/105 ``*_optical_frame``): x right, y down, z forward, metres. A pixel
(u, v) with depth z (along the optical axis, REP 118) lies at ``x = (u - cx) / fx * z``, ``y = (v - cy) / fy * z``.
Pixel centres sit at integer coordinates (the ROS ``CameraInfo`` convention). The skew term K[0, 1] is ignored: ROS
calibrations write 0 there.

Point layout (:data:`CLOUD_DTYPE`, 24 bytes, little-endian, no padding): x, y, z float32; rgb float32 holding the
PCL packing (the uint32 ``0x00RRGGBB`` bit pattern viewed as float32, what rviz's RGB8 colour transformer and
depth_image_proc use); label uint32 (class id, 255 void; uint32 like ``pcl::PointXYZRGBL::label``, so PCL reads the
cloud as PointXYZRGBL); instance uint32 (1..N for things, 0 for stuff and void).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..data.classes import LABEL_DIVISOR, VOID_CLASS
from .boxes2d import ThingExtent, thing_extents

CLOUD_FIELDS: tuple[tuple[str, str], ...] = (
    ("x", "<f4"),
    ("y", "<f4"),
    ("z", "<f4"),
    ("rgb", "<f4"),
    ("label", "<u4"),
    ("instance", "<u4"),
)
CLOUD_DTYPE = np.dtype(list(CLOUD_FIELDS))
#: The same layout with label and instance as float32 (exact for ids below 2**24): every field then has one
#: datatype, which Humble's sensor_msgs_py ``read_points_numpy`` requires of the whole cloud, whatever fields are
#: asked for. PCL's PointXYZRGBL wants the uint32 label of :data:`CLOUD_DTYPE`, hence both.
CLOUD_DTYPE_FLOAT_IDS = np.dtype([(name, "<f4") for name, _ in CLOUD_FIELDS])
ID_TYPES = {"uint32": CLOUD_DTYPE, "float32": CLOUD_DTYPE_FLOAT_IDS}


def scale_intrinsics(matrix: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Intrinsics (3x3 K, or 3x4 P) of an image of ``from_size`` resized to ``to_size``; sizes are (height, width).

    Uses the half-pixel convention of bilinear/area resizing with aligned pixel edges (torch ``F.interpolate`` with
    ``align_corners=False``, ``cv2.resize``): ``cx' = (cx + 0.5) * sx - 0.5``. image_proc's resize uses
    ``cx' = cx * sx``; the two differ by ``0.5 * (sx - 1)`` pixels. The P translation column scales with fx, fy.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape not in ((3, 3), (3, 4)):
        raise ValueError(f"intrinsics must be 3x3 (K) or 3x4 (P), got shape {matrix.shape}")
    (from_h, from_w), (to_h, to_w) = from_size, to_size
    if min(from_h, from_w, to_h, to_w) <= 0:
        raise ValueError(f"image sizes must be positive, got from {from_size} to {to_size}")
    sx, sy = to_w / from_w, to_h / from_h
    out = matrix.copy()
    out[0, :] *= sx
    out[1, :] *= sy
    out[0, 2] = (matrix[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (matrix[1, 2] + 0.5) * sy - 0.5
    return out


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...,) float32 holding the PCL ``0x00RRGGBB`` packing."""
    colors = np.asarray(colors, dtype=np.uint8)
    packed = (colors[..., 0].astype(np.uint32) << 16) | (colors[..., 1].astype(np.uint32) << 8) | colors[..., 2]
    return packed.astype("<u4").view("<f4")


def unpack_rgb(rgb: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_rgb`: (...,) float32 -> (..., 3) uint8 RGB."""
    packed = np.ascontiguousarray(rgb, dtype="<f4").view("<u4")
    return np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=-1).astype(np.uint8)


@lru_cache(maxsize=16)
def _rays(fx: float, fy: float, cx: float, cy: float, height: int, width: int, stride: int):
    """Normalised ray coordinates of the sampled columns (x/z) and rows (y/z); cached per camera and size."""
    u = np.arange(0, width, stride, dtype=np.float64)
    v = np.arange(0, height, stride, dtype=np.float64)
    ray_x = ((u - cx) / fx).astype(np.float32)
    ray_y = ((v - cy) / fy).astype(np.float32)
    ray_x.flags.writeable = False
    ray_y.flags.writeable = False
    return ray_x, ray_y


def pixel_rays(K: np.ndarray, height: int, width: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(w',) x/z of every ``stride``-th column and (h',) y/z of every ``stride``-th row (read-only, cached)."""
    K = np.asarray(K, dtype=np.float64)
    return _rays(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(height), int(width), int(stride))


def valid_depth_mask(depth: np.ndarray, max_depth: float = math.inf) -> np.ndarray:
    """Pixels with a usable depth: finite, > 0 and <= ``max_depth`` (REP 117: NaN/Inf carry no point).

    Two comparisons instead of three tests: NaN fails both, +inf fails ``<= max_depth`` when that is finite and
    ``< inf`` when it is not.
    """
    with np.errstate(invalid="ignore"):
        if max_depth == math.inf:
            return (depth > 0) & (depth < math.inf)
        return (depth > 0) & (depth <= max_depth)


def all_valid_depths(depth: np.ndarray, max_depth: float = math.inf) -> bool:
    """Whether :func:`valid_depth_mask` is true everywhere (an empty map: yes), from two reductions, several times
    cheaper than the mask: a NaN anywhere makes the minimum NaN, which fails ``> 0`` as it fails the mask."""
    if depth.size == 0:
        return True
    low, high = depth.min(), depth.max()
    return bool(low > 0 and (high < math.inf if max_depth == math.inf else high <= max_depth))


def depth_to_cloud(*args, **kwargs) -> np.ndarray:
    """The cloud of :func:`fill_cloud` (same arguments) without its ``is_dense`` flag."""
    return fill_cloud(*args, **kwargs)[0]


def fill_cloud(
    depth: np.ndarray,
    K: np.ndarray,
    colors: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    instances: np.ndarray | None = None,
    stride: int = 1,
    max_depth: float = math.inf,
    organized: bool = True,
    exclude_labels: Sequence[int] = (),
    out: np.ndarray | Callable[[int], np.ndarray] | None = None,
    id_type: str = "uint32",
    threads: int | None = None,
) -> tuple[np.ndarray, bool]:
    """Back-project a (H, W) depth map in metres into a structured :data:`CLOUD_DTYPE` array (with ``id_type``
    "float32": :data:`CLOUD_DTYPE_FLOAT_IDS`, label and instance as float32), and whether the cloud holds valid
    points only (PointCloud2 ``is_dense``: an organized cloud without invalid pixels, or any unorganized one).

    ``colors`` (H, W, 3) uint8 RGB, ``labels`` (H, W) class ids (255 void) and ``instances`` (H, W) instance ids
    share the depth map's grid; missing ones give rgb 0, label 255, instance 0. ``stride`` keeps every s-th row
    and column. Organized: shape (ceil(H/s), ceil(W/s)), invalid points have NaN x, y, z (other fields kept).
    Unorganized: shape (N,), invalid points dropped, row-major order. Invalid: non-finite, <= 0 or
    > ``max_depth`` depth, or a label in ``exclude_labels``.

    ``out``: a contiguous 1-D buffer of the cloud's dtype with room for the points, or a function that returns
    one given the number of points (how the node builds the cloud straight into its serialized message).
    ``threads``: how many threads share the rows (None: one per available core, at most
    :data:`MAX_CLOUD_THREADS`, for clouds of at least two blocks); the bytes are the same for any number.

    Why blocks of rows, then one ``cv2.merge`` per block: x, y and the packed colours are computed on small
    contiguous planes that stay in cache (SIMD-fast); z and the ids are read straight from their maps where they
    already hold the record's 4-byte words (float32 depth; int32 or uint32 ids, uint32 cloud ids; unit stride),
    else converted into planes too; the merge interleaves the six into the block's 24-byte records in one pass.
    Few calls per block matter once several threads share the blocks: each call takes the GIL.
    """
    import cv2  # a dependency; imported on first use so that importing this module stays light

    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    height, width = depth.shape
    for name, array, ndim in (("colors", colors, 3), ("labels", labels, 2), ("instances", instances, 2)):
        if array is not None and (array.ndim != ndim or array.shape[:2] != depth.shape):
            raise ValueError(f"{name} must match the depth map's {depth.shape}, got shape {array.shape}")
    if colors is not None and colors.shape[2] != 3:
        raise ValueError(f"colors must be (H, W, 3) RGB, got shape {colors.shape}")
    if id_type not in ID_TYPES:
        raise ValueError(f"id_type must be one of {sorted(ID_TYPES)}, got {id_type!r}")
    dtype = ID_TYPES[id_type]
    ray_x, ray_y = pixel_rays(K, height, width, stride)
    out_h, out_w = ray_y.shape[0], ray_x.shape[0]
    depth_s = depth[::stride, ::stride]  # (h', w') view
    # (h', w') bool, or None: an organized cloud without excluded labels needs no mask where every depth is valid
    # (the network's usually is: two reductions over the map); else it finds its mask block by block, in cache
    valid = None
    if not organized or (labels is not None and len(exclude_labels)):
        valid = valid_depth_mask(depth_s, max_depth)
        if labels is not None and len(exclude_labels):
            valid &= ~np.isin(labels[::stride, ::stride], np.asarray(exclude_labels))
    all_valid = valid is None and all_valid_depths(depth_s, max_depth)
    block_rows = max(1, _BLOCK_POINTS // out_w) if out_w else 1
    block_starts = range(0, out_h, block_rows)
    # unorganized: each block's valid points, counted once; they give the cloud's size and where each block's
    # records start, so the bytes never depend on which thread filled which block
    block_counts = None if organized else [int(np.count_nonzero(valid[row0:row0 + block_rows]))
                                           for row0 in block_starts]
    count = out_h * out_w if organized else sum(block_counts)

    if out is None:
        out = np.empty(count, dtype=dtype)
    elif callable(out):
        out = out(count)
    if out.dtype != dtype or out.ndim != 1 or out.size < count or not out.flags.c_contiguous:
        raise ValueError(f"out must be a contiguous 1-D {dtype} buffer of >= {count} points, got "
                         f"{out.dtype} {out.shape}")
    out = out[:count].reshape((out_h, out_w) if organized else (count,))
    if count == 0:
        return out, True
    records = out.view("<f4").reshape(-1, 6)  # (points, 6) 32-bit words of each record
    first_record = None if organized else np.cumsum([0] + block_counts[:-1])

    def fill_block(row0: int, planes: np.ndarray, merged: np.ndarray | None) -> int:
        """Write the records of the block of sampled rows from ``row0`` and return how many of its points are
        valid (organized: what ``is_dense`` needs); ``planes`` and ``merged`` are the calling thread's scratch."""
        row1 = min(out_h, row0 + block_rows)
        rows = row1 - row0
        full_rows = slice(row0 * stride, (row1 - 1) * stride + 1, stride)  # the block's rows at full resolution
        depth_block = depth_s[row0:row1]
        if valid is not None:
            block_valid = valid[row0:row1]
        elif all_valid or all_valid_depths(depth_block, max_depth):
            block_valid = None  # the common case: no mask to build, no NaN to write
        else:
            block_valid = valid_depth_mask(depth_block, max_depth)
        # z read in place when the depths are float32 rows with no NaN to write, else converted into its plane
        z = _as_field(depth_block) if block_valid is None or not organized else None
        if z is None:
            z = planes[2, :rows]
            np.copyto(z, depth_block, casting="same_kind")
            if organized and block_valid is not None:
                np.copyto(z, np.float32(np.nan), where=~block_valid)
        x, y = planes[0, :rows], planes[1, :rows]
        np.multiply(ray_x[None, :], z, out=x)
        np.multiply(ray_y[row0:row1, None], z, out=y)
        rgb = planes[3, :rows].view("<u4")
        if colors is None:
            rgb.fill(0)
        else:
            _pack_rgb_into(rgb, colors[full_rows.start:full_rows.stop], stride)
        fields = [x, y, z, planes[3, :rows]]
        for plane, array, default in ((planes[4, :rows], labels, VOID_CLASS), (planes[5, :rows], instances, 0)):
            ids = None if array is None else array[full_rows, ::stride]
            direct = _as_field(ids, "iu") if ids is not None and id_type == "uint32" else None
            if direct is None:  # converted into the scratch plane
                target = plane.view("<u4") if id_type == "uint32" else plane
                if ids is None:
                    target.fill(default)
                else:
                    np.copyto(target, ids, casting="unsafe")
            fields.append(plane if direct is None else direct)
        # the six (rows, w') fields interleaved into the block's 24-byte records in one pass (as float32 words:
        # OpenCV moves them by size, bit for bit, so ids viewed as float32 keep their bits)
        if organized:
            cv2.merge(fields, records[row0 * out_w:row1 * out_w].reshape(rows, out_w, 6))
        else:
            block = merged[:rows * out_w]
            cv2.merge(fields, block.reshape(rows, out_w, 6))
            kept = block[block_valid.reshape(-1)]  # (n, 6): the valid points of the block, in row-major order
            written = int(first_record[row0 // block_rows])
            records[written:written + kept.shape[0]] = kept
            return kept.shape[0]
        return rows * out_w if block_valid is None else int(np.count_nonzero(block_valid))

    # Blocks are claimed one at a time by however many threads run (a late-starting thread just claims fewer).
    claims, claim_lock = iter(block_starts), threading.Lock()

    def fill_claimed(planes: np.ndarray, merged: np.ndarray | None) -> int:
        valid_count = 0
        while True:
            with claim_lock:
                row0 = next(claims, None)
            if row0 is None:
                return valid_count
            valid_count += fill_block(row0, planes, merged)

    threads = _cloud_threads(out_h * out_w) if threads is None else max(1, int(threads))
    # each thread's block planes (x, y, z, rgb, label, instance) and, unorganized, its block before dropping, all
    # allocated here: a worker thread's own malloc arena would map and fault them afresh on every cloud
    jobs = [(fill_claimed, np.empty((6, block_rows, out_w), dtype="<f4"),
             None if organized else np.empty((block_rows * out_w, 6), dtype="<f4"))
            for _ in range(min(threads, len(block_starts)))]
    valid_count = sum(_run_jobs(jobs))
    return out, not organized or valid_count == out_h * out_w


#: Points per block of :func:`fill_cloud`: 6 planes of 64k float32 (1.5 MiB) stay in a core's cache.
_BLOCK_POINTS = 65536
#: Most threads :func:`fill_cloud` uses by default. Why threads: numpy and OpenCV release the GIL for each
#: block's work, and on the 2-core VM two threads cut the 1280x720 cloud from ~6.1 to ~4.2-4.7 ms; more than
#: this many would mostly wait on memory (not measured here: no machine with more cores).
MAX_CLOUD_THREADS = 4
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _cloud_threads(points: int) -> int:
    """Default thread count for a cloud of ``points``: one per available core (at most MAX_CLOUD_THREADS) when
    the cloud spans at least two blocks, else one."""
    if points < 2 * _BLOCK_POINTS:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_CLOUD_THREADS, cores))


def _run_jobs(jobs: list[tuple]) -> list:
    """Run ``(function, *args)`` jobs, the first on this thread and the rest on the module's pool; their results in
    order. Every job has finished when this returns or raises (they write into the caller's buffer)."""
    global _pool
    if len(jobs) == 1:
        function, *args = jobs[0]
        return [function(*args)]
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=MAX_CLOUD_THREADS - 1, thread_name_prefix="pointcloud")
        pool = _pool
    futures = [pool.submit(*job) for job in jobs[1:]]
    try:
        function, *args = jobs[0]
        first = function(*args)
    finally:
        wait(futures)
    return [first] + [future.result() for future in futures]


def _as_field(array: np.ndarray, kinds: str = "f") -> np.ndarray | None:
    """``array`` (rows, w') as the float32 words of a cloud field, read in place, or None when it must be
    converted first: it must hold 4-byte little-endian values of one of ``kinds`` (numpy kind letters; integers
    keep their bits, as the uint32 cast would) in rows OpenCV can read (consecutive columns)."""
    dtype = array.dtype
    if dtype.kind not in kinds or dtype.itemsize != 4 or dtype.byteorder == ">" or array.strides[1] != 4:
        return None
    return array.view("<f4")


def _pack_rgb_into(target: np.ndarray, colors: np.ndarray, stride: int) -> None:
    """Write the PCL 0x00RRGGBB packing of ``colors[::stride, ::stride]`` into the (h', w') uint32 ``target``.

    Why the unaligned big-endian view: read at byte offset 3*i, a big-endian uint32 is R<<24 | G<<16 | B<<8 |
    (next R), so one shift right by 8 packs a pixel, three times faster than combining three channels. The view
    would read one byte past the buffer at the very last pixel, so the last sampled row is packed channel-wise.
    """
    colors = np.ascontiguousarray(colors, dtype=np.uint8)
    width = colors.shape[1]
    out_h = target.shape[0]
    if stride == 1 and target.flags.c_contiguous and colors.shape[0] == out_h and width:
        # OpenCV's SIMD RGB -> BGRA (little-endian uint32 0xAARRGGBB), then alpha cleared: twice the speed again
        import cv2  # a dependency; imported on first use so that importing this module stays light

        cv2.cvtColor(colors, cv2.COLOR_RGB2BGRA, dst=target.view(np.uint8).reshape(out_h, width, 4))
        np.bitwise_and(target, np.uint32(0x00FFFFFF), out=target)
        return
    if out_h > 1:
        big_endian = np.ndarray(
            shape=(out_h - 1, target.shape[1]), dtype=">u4", buffer=colors, strides=(stride * width * 3, stride * 3)
        )
        np.right_shift(big_endian, 8, out=target[:-1], casting="unsafe")
    last = colors[(out_h - 1) * stride, ::stride].astype(np.uint32)  # (w', 3)
    target[-1] = (last[:, 0] << 16) | (last[:, 1] << 8) | last[:, 2]


@dataclass
class InstanceBox:
    """An axis-aligned 3D box (optical frame) around one thing instance's robust point extent."""

    panoptic_id: int
    class_id: int
    instance_id: int
    center: np.ndarray  # (3,) metres
    size: np.ndarray  # (3,) metres, each >= the minimum size asked for
    distance: float  # median z of the instance's points, metres
    num_points: int


def instance_boxes(
    depth: np.ndarray,
    K: np.ndarray,
    panoptic: np.ndarray,
    stride: int = 1,
    max_depth: float = math.inf,
    percentiles: tuple[float, float] = (5.0, 95.0),
    min_points: int = 10,
    min_size: float = 0.05,
    label_divisor: int = LABEL_DIVISOR,
    things: tuple[np.ndarray, list[ThingExtent]] | None = None,
) -> list[InstanceBox]:
    """One box per thing instance (panoptic id with a non-zero instance part) with >= ``min_points`` valid points.

    The box spans the ``percentiles`` of the instance's points on each axis, so stray edge pixels (depth
    bleeding from the background) do not inflate it. Boxes are sorted by panoptic id.

    ``things``: ``thing_extents(panoptic, label_divisor)`` of the full-resolution map when the caller has it
    already (the node's 2D boxes need it too); otherwise it is searched here. Each thing's sampled pixels are read
    inside its full-resolution box.
    """
    if depth.shape != panoptic.shape:
        raise ValueError(f"depth {depth.shape} and panoptic {panoptic.shape} must have the same shape")
    height, width = depth.shape
    ray_x, ray_y = pixel_rays(K, height, width, stride)
    z = depth[::stride, ::stride]
    # each thing's points are taken from its own bounding box only, in row-major order (no sort of all pixels)
    full_labels, extents = thing_extents(panoptic, label_divisor) if things is None else things
    if full_labels.shape != panoptic.shape:
        raise ValueError(f"things' label map {full_labels.shape} and panoptic {panoptic.shape} must match")
    labels = full_labels[::stride, ::stride]
    boxes = []
    for thing in extents:
        row_span, col_span = _sampled(thing.rows, stride), _sampled(thing.cols, stride)
        box_z = z[row_span, col_span]
        rows, cols = np.nonzero((labels[row_span, col_span] == thing.label) & valid_depth_mask(box_z, max_depth))
        if rows.size < min_points:
            continue
        zs = box_z[rows, cols].astype(np.float64)
        rows += row_span.start
        cols += col_span.start
        group = np.stack([ray_x[cols] * zs, ray_y[rows] * zs, zs], axis=1)  # (n, 3)
        boxes.append(_box(thing.panoptic_id, group, percentiles, min_size, label_divisor))
    return boxes


def _sampled(span: slice, stride: int) -> slice:
    """The indices, on the grid of every ``stride``-th pixel, of the sampled pixels inside ``span`` (full
    resolution): ceil(start / stride) .. ceil(stop / stride) - 1."""
    return slice(-(-span.start // stride), -(-span.stop // stride))


def _box(key: int, group: np.ndarray, percentiles: tuple[float, float], min_size: float,
         label_divisor: int) -> InstanceBox:
    """The InstanceBox of panoptic id ``key`` from its (n, 3) points."""
    low, high = np.percentile(group, percentiles, axis=0)  # (3,), (3,)
    return InstanceBox(
        panoptic_id=key,
        class_id=key // label_divisor,
        instance_id=key % label_divisor,
        center=(low + high) / 2,
        size=np.maximum(high - low, min_size),
        distance=float(np.median(group[:, 2])),
        num_points=int(group.shape[0]),
    )
