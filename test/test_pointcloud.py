"""Point clouds from depth + intrinsics: rays, invalid points, stride, organized/unorganized, rgb packing, boxes."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from panopticdepth_core.inference import pointcloud as pc
from panopticdepth_core.inference.boxes2d import thing_extents
from panopticdepth_core.inference.pointcloud import (
    CLOUD_DTYPE,
    depth_to_cloud,
    instance_boxes,
    pack_rgb,
    scale_intrinsics,
    unpack_rgb,
)

K = np.array([[50.0, 0.0, 15.5], [0.0, 60.0, 9.0], [0.0, 0.0, 1.0]])


def _scene(height: int = 20, width: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 30.0, (height, width)).astype(np.float32)
    colors = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    labels = rng.integers(0, 19, (height, width)).astype(np.int32)
    instances = rng.integers(0, 4, (height, width)).astype(np.int32)
    return depth, colors, labels, instances


def test_scale_intrinsics_keeps_rays_of_corresponding_pixels() -> None:
    scaled = scale_intrinsics(K, (20, 32), (40, 64))
    assert scaled[0, 0] == pytest.approx(100.0) and scaled[1, 1] == pytest.approx(120.0)
    assert scaled[0, 2] == pytest.approx((15.5 + 0.5) * 2 - 0.5)
    # Pixel u of the small image covers [u - 0.5, u + 0.5]; its centre is u' = (u + 0.5) * 2 - 0.5 in the big one.
    for u in (0.0, 7.0, 31.0):
        u_big = (u + 0.5) * 2 - 0.5
        assert (u_big - scaled[0, 2]) / scaled[0, 0] == pytest.approx((u - K[0, 2]) / K[0, 0])
    back = scale_intrinsics(scaled, (40, 64), (20, 32))
    np.testing.assert_allclose(back, K)
    np.testing.assert_array_equal(scale_intrinsics(K, (20, 32), (20, 32)), K)


def test_scale_intrinsics_scales_projection_translation_and_rejects_bad_input() -> None:
    P = np.concatenate([K, np.array([[-5.0], [2.0], [0.0]])], axis=1)
    scaled = scale_intrinsics(P, (20, 32), (10, 16))
    assert scaled[0, 3] == pytest.approx(-2.5) and scaled[1, 3] == pytest.approx(1.0) and scaled[2, 2] == 1.0
    with pytest.raises(ValueError, match="3x3"):
        scale_intrinsics(np.eye(2), (1, 1), (1, 1))
    with pytest.raises(ValueError, match="positive"):
        scale_intrinsics(K, (0, 32), (10, 16))


def test_pack_rgb_is_pcl_packing() -> None:
    packed = pack_rgb(np.array([[255, 0, 0], [0, 255, 0], [1, 2, 3]], dtype=np.uint8))
    assert packed.dtype == np.float32
    np.testing.assert_array_equal(packed.view(np.uint32), [0x00FF0000, 0x0000FF00, 0x00010203])
    assert packed[:1].tobytes() == bytes([0, 0, 255, 0])  # little-endian B, G, R, 0
    colors = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(unpack_rgb(pack_rgb(colors)), colors)


def test_organized_points_lie_on_pixel_rays() -> None:
    depth, colors, labels, instances = _scene()
    cloud = depth_to_cloud(depth, K, colors, labels, instances)
    assert cloud.dtype == CLOUD_DTYPE and cloud.shape == depth.shape and CLOUD_DTYPE.itemsize == 24
    v, u = np.mgrid[0:20, 0:32]
    np.testing.assert_allclose(cloud["z"], depth)
    np.testing.assert_allclose(cloud["x"] / cloud["z"], (u - K[0, 2]) / K[0, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cloud["y"] / cloud["z"], (v - K[1, 2]) / K[1, 1], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]), colors)
    np.testing.assert_array_equal(cloud["label"], labels)
    np.testing.assert_array_equal(cloud["instance"], instances)


def _reference_cloud(depth, colors, labels, instances, stride, organized, id_type):
    """The cloud field by field with plain numpy (no blocks, planes or merge)."""
    dtype = pc.ID_TYPES[id_type]
    z = np.asarray(depth, dtype=np.float64)[::stride, ::stride]
    v, u = np.mgrid[0:depth.shape[0]:stride, 0:depth.shape[1]:stride]
    valid = (z > 0) & np.isfinite(z)
    cloud = np.zeros(z.shape, dtype)
    with np.errstate(invalid="ignore"):
        for name, value in (("x", (u - K[0, 2]) / K[0, 0] * z), ("y", (v - K[1, 2]) / K[1, 1] * z), ("z", z)):
            cloud[name] = np.where(valid, value, np.nan).astype(np.float32)
    cloud["rgb"] = pack_rgb(colors[::stride, ::stride])
    for name, array in (("label", labels), ("instance", instances)):
        ids = np.asarray(array)[::stride, ::stride].astype(np.int64)
        cloud[name] = ids.astype(np.float32) if id_type == "float32" else (ids & 0xFFFFFFFF).astype(np.uint32)
    return cloud if organized else cloud[valid]


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("id_type", ["uint32", "float32"])
def test_every_input_dtype_and_layout_gives_the_reference_cloud(stride: int, id_type: str) -> None:
    """Fields read in place (float32 depth, 4-byte ids at unit stride) and fields converted first (other dtypes,
    big-endian, column-major, strided, float ids) give the same records as a plain per-field reference, including
    negative ids, ids above 2**31 and invalid depths."""
    rng = np.random.default_rng(stride)
    depth, colors, _, _ = _scene(21, 33, seed=9)
    depth[3, 4], depth[7, 7], depth[10, 2] = np.nan, 0.0, np.inf
    ids = rng.integers(-3, 40, (21, 33))
    ids[0, :3] = [-1, 2**31 + 5, 2**32 - 1]  # bits of negative and huge ids kept, as the uint32 cast would
    id_maps = {"int32": ids.astype(np.int32), "uint32": ids.astype(np.int64).astype(np.uint32),
               "int64": ids, "uint8": (ids % 256).astype(np.uint8), "big-endian int32": ids.astype(">i4"),
               "column-major int32": np.asfortranarray(ids.astype(np.int32)),
               "float32": (np.abs(ids) % 2**24).astype(np.float32)}  # values, not bits: converted
    depths = {"float32": depth, "float64": depth.astype(np.float64), "big-endian float32": depth.astype(">f4"),
              "int32 (whole metres)": np.nan_to_num(depth, posinf=0).astype(np.int32)}
    for organized in (True, False):
        for id_name, labels in id_maps.items():
            if id_type == "float32" and id_name in ("uint32", "int64", "float32"):
                labels = np.abs(ids).astype(labels.dtype)  # float ids are exact below 2**24 only
            for depth_name, depth_map in depths.items():
                instances = labels[::-1].copy() if id_name != "column-major int32" else labels
                expected = _reference_cloud(depth_map, colors, labels, instances, stride, organized, id_type)
                got = depth_to_cloud(depth_map, K, colors, labels, instances, stride=stride, organized=organized,
                                     id_type=id_type)
                assert got.dtype == expected.dtype and got.shape == expected.shape, (id_name, depth_name)
                for name in ("label", "instance", "rgb"):
                    assert got[name].tobytes() == expected[name].tobytes(), (name, id_name, depth_name, organized)
                for name in "xyz":
                    np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, equal_nan=True,
                                               err_msg=f"{name} {id_name} {depth_name} {organized}")


def test_invalid_depth_is_nan_when_organized_and_dropped_otherwise() -> None:
    depth, colors, labels, instances = _scene()
    depth[0, 0], depth[1, 1], depth[2, 2], depth[3, 3], depth[4, 4] = 0.0, np.nan, np.inf, -1.0, 29.0
    cloud = depth_to_cloud(depth, K, colors, labels, instances, max_depth=25.0)
    invalid = ~((depth > 0) & np.isfinite(depth) & (depth <= 25.0))
    assert invalid[4, 4] and invalid.sum() >= 5
    for axis in "xyz":
        assert np.isnan(cloud[axis][invalid]).all() and not np.isnan(cloud[axis][~invalid]).any()
    np.testing.assert_array_equal(cloud["label"], labels)  # attributes stay on invalid points

    flat = depth_to_cloud(depth, K, colors, labels, instances, max_depth=25.0, organized=False)
    assert flat.shape == (int((~invalid).sum()),)
    assert flat.tobytes() == cloud[~invalid].tobytes()  # the same points, row-major order


def test_exclude_labels_removes_those_classes() -> None:
    depth, colors, labels, instances = _scene()
    cloud = depth_to_cloud(depth, K, colors, labels, instances, organized=False, exclude_labels=(10, 3))
    assert cloud.size == int(np.isin(labels, (10, 3), invert=True).sum())
    assert not np.isin(cloud["label"], (10, 3)).any()


@pytest.mark.parametrize("stride", [2, 3, 7])
@pytest.mark.parametrize("shape", [(20, 32), (1, 9), (9, 1), (21, 31)])
def test_stride_samples_every_sth_pixel(stride: int, shape: tuple[int, int]) -> None:
    depth, colors, labels, instances = _scene(*shape, seed=stride)
    cloud = depth_to_cloud(depth, K, colors, labels, instances, stride=stride)
    assert cloud.shape == (-(-shape[0] // stride), -(-shape[1] // stride))
    v, u = np.mgrid[0:shape[0]:stride, 0:shape[1]:stride]
    np.testing.assert_allclose(cloud["z"], depth[::stride, ::stride])
    np.testing.assert_allclose(cloud["x"], (u - K[0, 2]) / K[0, 0] * depth[::stride, ::stride], rtol=1e-5)
    np.testing.assert_allclose(cloud["y"], (v - K[1, 2]) / K[1, 1] * depth[::stride, ::stride], rtol=1e-5)
    np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]), colors[::stride, ::stride])
    np.testing.assert_array_equal(cloud["instance"], instances[::stride, ::stride])


def test_blocks_give_the_same_cloud_as_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    depth, colors, labels, instances = _scene(23, 17, seed=4)
    depth[::5, ::3] = 0.0
    colors = np.asfortranarray(colors)  # not C-contiguous: the packer must cope
    whole = [depth_to_cloud(depth, K, colors, labels, instances, organized=o).tobytes() for o in (True, False)]
    monkeypatch.setattr(pc, "_BLOCK_POINTS", 20)  # blocks of one or two rows
    blocked = [depth_to_cloud(depth, K, colors, labels, instances, organized=o).tobytes() for o in (True, False)]
    assert blocked == whole


def test_threads_give_the_same_cloud_as_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks filled by several threads give the same bytes (and is_dense) as one thread: organized and not,
    strided, excluded labels, float ids, invalid pixels, more threads than blocks."""
    depth, colors, labels, instances = _scene(23, 17, seed=6)
    depth[::4, ::5] = np.nan
    monkeypatch.setattr(pc, "_BLOCK_POINTS", 20)  # one row per block: 23 blocks
    bands, fillers = [], set()
    run_jobs, pack = pc._run_jobs, pc._pack_rgb_into
    monkeypatch.setattr(pc, "_run_jobs", lambda jobs: bands.append(len(jobs)) or run_jobs(jobs))

    def slow_pack(*args) -> None:  # every block takes 2 ms, so every thread gets blocks to fill
        fillers.add(threading.get_ident())
        time.sleep(0.002)
        pack(*args)

    monkeypatch.setattr(pc, "_pack_rgb_into", slow_pack)
    for organized in (True, False):
        for stride, exclude, id_type in ((1, (), "uint32"), (2, (3, 7), "float32"), (3, (), "uint32")):
            args = (depth, K, colors, labels, instances, stride, np.inf, organized, exclude)
            one = pc.fill_cloud(*args, id_type=id_type, threads=1)
            for threads in (2, 3, 7, 40):
                bands.clear()
                fillers.clear()
                cloud, dense = pc.fill_cloud(*args, id_type=id_type, threads=threads)
                assert (cloud.tobytes(), dense) == (one[0].tobytes(), one[1]), (organized, stride, threads)
                assert len(bands) == 1 and 1 < bands[0] <= threads and len(fillers) > 1  # really shared


def test_a_large_cloud_uses_the_default_threads_and_empty_maps_give_empty_clouds() -> None:
    depth, colors, labels, instances = _scene(400, 400, seed=7)  # 160000 points: more than two blocks
    depth[5, 5] = 0.0
    for organized in (True, False):
        default = pc.fill_cloud(depth, K, colors, labels, instances, organized=organized)
        single = pc.fill_cloud(depth, K, colors, labels, instances, organized=organized, threads=1)
        assert default[0].tobytes() == single[0].tobytes() and default[1] == single[1] == (not organized)
    for shape in ((0, 5), (4, 0)):
        cloud, dense = pc.fill_cloud(np.zeros(shape, np.float32), K)
        assert cloud.size == 0 and dense


def test_out_buffer_is_reused_and_checked() -> None:
    depth, colors, labels, instances = _scene()
    depth[2:5] = 0.0
    buffer = np.zeros(1000, dtype=CLOUD_DTYPE)
    for organized in (True, False):
        expected = depth_to_cloud(depth, K, colors, labels, instances, organized=organized)
        cloud = depth_to_cloud(depth, K, colors, labels, instances, organized=organized, out=buffer)
        assert np.shares_memory(cloud, buffer) and cloud.shape == expected.shape
        assert cloud.tobytes() == expected.tobytes()
    with pytest.raises(ValueError, match=">= 640 points"):
        depth_to_cloud(depth, K, out=np.zeros(100, dtype=CLOUD_DTYPE))


def test_missing_attributes_get_defaults_and_shapes_are_checked() -> None:
    depth = np.full((4, 5), 2.0, dtype=np.float32)
    cloud = depth_to_cloud(depth, K)
    assert (cloud["rgb"].view(np.uint32) == 0).all() and (cloud["label"] == 255).all() and (cloud["instance"] == 0).all()
    with pytest.raises(ValueError, match="labels"):
        depth_to_cloud(depth, K, labels=np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError, match="stride"):
        depth_to_cloud(depth, K, stride=0)


def test_instance_boxes_span_robust_extent_of_each_instance() -> None:
    height, width = 60, 80
    depth = np.full((height, width), 20.0, dtype=np.float32)
    panoptic = np.full((height, width), 0, dtype=np.int32)  # road (class 0, stuff)
    panoptic[10:30, 10:40] = 13 * 1000 + 1  # a car at 8 m
    depth[10:30, 10:40] = 8.0
    depth[10, 10] = 200.0  # one stray far pixel must not stretch the box
    panoptic[40:55, 50:60] = 11 * 1000 + 2  # a person at 5 m
    depth[40:55, 50:60] = 5.0
    panoptic[0:3, 0:3] = 11 * 1000 + 3  # too few points
    panoptic[50:60, 0:10] = -1  # void
    boxes = instance_boxes(depth, K, panoptic, min_points=10)
    assert [b.panoptic_id for b in boxes] == [11002, 13001]
    person, car = boxes
    assert (car.class_id, car.instance_id, person.class_id) == (13, 1, 11)
    assert car.distance == pytest.approx(8.0) and person.distance == pytest.approx(5.0)
    cloud = depth_to_cloud(depth, K, instances=(panoptic % 1000) * (panoptic > 0), organized=True)
    points = np.stack([cloud[a][10:30, 10:40].reshape(-1) for a in "xyz"], axis=1)
    inside = np.all(np.abs(points - car.center) <= car.size / 2 + 1e-6, axis=1)
    assert inside.mean() >= 0.8 and car.size[2] < 1.0  # thin in z: the 200 m pixel is an outlier
    # The box spans the 5-95 percentiles of x: about 90% of the car's 30 columns at 8 m.
    assert car.size[0] == pytest.approx(0.9 * 29 / K[0, 0] * 8.0, rel=0.1)
    assert instance_boxes(np.zeros_like(depth), K, panoptic) == []


@pytest.mark.parametrize("shared", [False, True], ids=["own-search", "shared-extents"])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_instance_boxes_equal_a_per_id_reference_including_huge_ids(stride: int, shared: bool) -> None:
    """Also with the full-resolution extents handed in (the node's path): the same boxes at every stride."""
    rng = np.random.default_rng(stride)
    for trial in range(12):
        height, width = rng.integers(8, 40, 2)
        ids = [-1, 0, 1000, 13001, 13002, 11007, 18000] + ([2_000_000_001] if trial % 2 == 0 else [])
        panoptic = rng.choice(ids, (height, width)).astype(np.int64 if trial % 4 < 2 else np.int32)
        depth = rng.uniform(1.0, 30.0, (height, width)).astype(np.float32)
        depth[rng.random((height, width)) < 0.1] = 0.0  # invalid pixels carry no point
        things = thing_extents(panoptic) if shared else None
        got = instance_boxes(depth, K, panoptic, stride=stride, min_points=3, things=things)
        ids_s, z = panoptic[::stride, ::stride], depth[::stride, ::stride]
        expected = []
        for pid in np.unique(ids_s):
            rows, cols = np.nonzero((ids_s == pid) & (z > 0))
            if pid < 0 or pid % 1000 == 0 or rows.size < 3:
                continue
            zs = z[rows, cols].astype(np.float64)
            points = np.stack([(cols * stride - K[0, 2]) / K[0, 0] * zs, (rows * stride - K[1, 2]) / K[1, 1] * zs, zs], 1)
            low, high = np.percentile(points, (5.0, 95.0), axis=0)
            expected.append((int(pid), rows.size, (low + high) / 2, np.maximum(high - low, 0.05)))
        assert [(b.panoptic_id, b.num_points) for b in got] == [(pid, n) for pid, n, _, _ in expected]
        for box, (_, _, center, size) in zip(got, expected):
            np.testing.assert_allclose(box.center, center, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(box.size, size, rtol=1e-5, atol=1e-6)
