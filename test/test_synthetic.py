"""Synthetic scenes: exact depth against independent ray-geometry maths, labels, determinism, the written files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from panopticdepth_core.data.classes import THING_IDS
from panopticdepth_core.data.dps_writer import (
    VOID_VALUE,
    decode_depth,
    decode_instance_train_ids,
    encode_depth,
    encode_instance_train_ids,
    write_dps_frame,
)
from panopticdepth_core.data.sample import Sample
from panopticdepth_core.data.synthetic import SyntheticDataset, render_scene, scene_seed, write_synthetic_dataset
from panopticdepth_core.data.synthetic_layout import sample_scene
from panopticdepth_core.data.synthetic_profiles import PROFILES
from panopticdepth_ros.cli import main as cli_main

SIZE = (72, 144)


# ----------------------------------------------------------------- independent ray maths (float64, per face/root)
def _camera_rays(sample: Sample, scene, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World origin (3,) and directions (N, 3) with optical-z 1, from K and the documented pitch/yaw convention."""
    cam = scene.camera
    k = sample.intrinsics
    d_cam = np.stack([(uv[:, 0] - k[0, 2]) / k[0, 0], (uv[:, 1] - k[1, 2]) / k[1, 1], np.ones(len(uv))], axis=1)
    p, y = cam.pitch, cam.yaw
    forward = np.array([math.cos(p) * math.cos(y), math.cos(p) * math.sin(y), -math.sin(p)])  # looks down for p > 0
    right = np.array([math.sin(y), -math.cos(y), 0.0])
    down = np.cross(forward, right)
    return np.array([0.0, 0.0, cam.mount_height]), d_cam @ np.stack([right, down, forward])


def _in_range(values: np.ndarray, half: float) -> np.ndarray:
    return np.abs(values) <= half * (1 + 1e-6) + 1e-6


def _hit_box(o, d, p) -> np.ndarray:
    """Nearest positive hit over the 6 face rectangles (not the slab method the renderer uses)."""
    c, s = math.cos(p[6]), math.sin(p[6])
    rel = o - p[:3]
    lo = np.array([c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1], rel[2]])
    ld = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], axis=1)
    half = p[3:6]
    best = np.full(len(d), np.inf)
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        for sign in (-1.0, 1.0):
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (sign * half[axis] - lo[axis]) / ld[:, axis]
            q = lo[None, :] + t[:, None] * ld
            ok = (t > 0) & _in_range(q[:, others[0]], half[others[0]]) & _in_range(q[:, others[1]], half[others[1]])
            best = np.where(ok & (t < best), t, best)
    return best


def _hit_hplane(o, d, p) -> np.ndarray:
    with np.errstate(divide="ignore"):
        t = (p[2] - o[2]) / d[:, 2]
    q = o[None, :] + t[:, None] * d
    ok = (t > 0) & _in_range(q[:, 0] - p[0], p[3]) & _in_range(q[:, 1] - p[1], p[4])
    return np.where(ok, t, np.inf)


def _smaller_root(a, b, c) -> tuple[np.ndarray, np.ndarray]:
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore"):
        return (-b - np.sqrt(disc)) / (2 * a), disc >= 0


def _hit_cylinder(o, d, p) -> np.ndarray:
    ox, oy = o[0] - p[0], o[1] - p[1]
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    t, real = _smaller_root(a, 2 * (ox * d[:, 0] + oy * d[:, 1]), ox * ox + oy * oy - p[4] ** 2)
    z = o[2] + t * d[:, 2]
    side = np.where(real & (t > 0) & (z >= p[2] - 1e-6) & (z <= p[3] + 1e-6), t, np.inf)
    tc = (p[3] - o[2]) / d[:, 2]
    qx, qy = ox + tc * d[:, 0], oy + tc * d[:, 1]
    cap = np.where((o[2] > p[3]) & (tc > 0) & (qx * qx + qy * qy <= p[4] ** 2 * (1 + 1e-6)), tc, np.inf)
    return np.minimum(side, cap)


def _hit_ellipsoid(o, d, p) -> np.ndarray:
    r = p[3:6]
    oo, dd = (o - p[:3]) / r, d / r
    t, real = _smaller_root((dd * dd).sum(1), 2 * (dd @ oo), oo @ oo - 1)
    return np.where(real & (t > 0), t, np.inf)


def _hit_disc(o, d, p) -> np.ndarray:
    n = np.array([-math.sin(p[4]), math.cos(p[4]), 0.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = ((p[:3] - o) @ n) / (d @ n)
    q = o[None, :] + t[:, None] * d - p[:3]
    return np.where((t > 0) & ((q * q).sum(1) <= p[3] ** 2 * (1 + 1e-6)), t, np.inf)


_HIT = {"hplane": _hit_hplane, "box": _hit_box, "cylinder": _hit_cylinder, "ellipsoid": _hit_ellipsoid,
        "disc": _hit_disc}
_KIND_NAME = {0: "hplane", 1: "box", 2: "cylinder", 3: "ellipsoid", 4: "disc"}


def _all_hits(scene, o, d) -> np.ndarray:
    """(P, N) ray parameter of every primitive for every ray (inf = miss)."""
    out = []
    for prim in scene.primitives:
        p = np.zeros(7)
        p[: len(prim.params)] = prim.params
        out.append(_HIT[_KIND_NAME[prim.kind]](o, d, p))
    return np.stack(out)


# ------------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("seed", [1, 7, 23, 42])
def test_depth_is_the_analytic_z_distance_to_the_primitive_seen(seed: int) -> None:
    sample = render_scene(seed, SIZE, debug=True)
    scene, prim_map = sample.meta["scene"], sample.meta["primitive_id"]
    rng = np.random.default_rng(seed)
    h, w = SIZE
    uv = np.stack([rng.integers(0, w, 400), rng.integers(0, h, 400)], axis=1)
    things = prim_map[uv[:, 1], uv[:, 0]] >= 0
    # also sample pixels of every primitive kind and of every thing that is visible
    for k in np.unique(prim_map[prim_map >= 0]):
        vs, us = np.nonzero(prim_map == k)
        uv = np.concatenate([uv, [[us[len(us) // 2], vs[len(vs) // 2]]]])
    o, d = _camera_rays(sample, scene, uv.astype(np.float64))
    hits = _all_hits(scene, o, d)  # (P, N)
    ids = prim_map[uv[:, 1], uv[:, 0]].astype(np.int64)
    depth = sample.depth[uv[:, 1], uv[:, 0]].astype(np.float64)
    seen = ids >= 0
    assert seen.sum() > 100 and (~seen).sum() + things.sum() > 0

    # the recorded primitive is hit at exactly the rendered depth (t is z-depth: the direction has optical-z 1)
    t_seen = hits[ids[seen], np.flatnonzero(seen)]
    np.testing.assert_allclose(depth[seen], t_seen, rtol=2e-5, atol=1e-4)
    # and nothing is nearer (the z-buffer is right)
    np.testing.assert_allclose(depth[seen], hits[:, seen].min(axis=0), rtol=2e-5, atol=1e-4)
    # z-depth, not range: the hit point's coordinate along the optical axis
    point = o[None, :] + t_seen[:, None] * d[seen]
    cam = scene.camera
    forward = np.array([math.cos(cam.pitch) * math.cos(cam.yaw), math.cos(cam.pitch) * math.sin(cam.yaw),
                        -math.sin(cam.pitch)])
    np.testing.assert_allclose((point - o) @ forward, depth[seen], rtol=1e-5, atol=1e-4)
    # sky: no primitive at all along the ray, depth 0, class 10
    assert np.isinf(hits[:, ~seen]).all()
    assert (depth[~seen] == 0).all() and (sample.semantic[uv[~seen, 1], uv[~seen, 0]] == 10).all()
    # labels come from the primitive seen
    class_of = np.array([p.class_id for p in scene.primitives])
    assert (sample.semantic[uv[seen, 1], uv[seen, 0]] == class_of[ids[seen]]).all()


def test_road_depth_matches_the_ray_plane_formula() -> None:
    """A textbook check on one class: road pixels satisfy z = height / (downward slope of the ray)."""
    sample = render_scene(5, SIZE)
    scene = sample_scene(5, SIZE)
    vs, us = np.nonzero(sample.semantic == 0)
    o, d = _camera_rays(sample, scene, np.stack([us, vs], axis=1).astype(np.float64))
    np.testing.assert_allclose(sample.depth[vs, us], o[2] / -d[:, 2], rtol=2e-5)


@pytest.mark.parametrize("seed", range(8))
def test_every_pixel_has_a_class_and_instances_only_on_things(seed: int) -> None:
    s = render_scene(seed, SIZE)
    assert s.image.shape == (*SIZE, 3) and s.image.dtype == np.uint8
    assert s.semantic.dtype == np.int32 and s.instance.dtype == np.int32 and s.depth.dtype == np.float32
    assert ((s.semantic >= 0) & (s.semantic <= 18)).all()  # no void (255) anywhere
    thing = np.isin(s.semantic, THING_IDS)
    assert ((s.instance > 0) == thing).all()
    ids = np.unique(s.instance[thing])
    assert len(ids) <= PROFILES["streets"].max_things and (ids == np.arange(1, len(ids) + 1)).all()
    for i in ids:  # one class per instance
        assert len(np.unique(s.semantic[s.instance == i])) == 1
    sky = s.semantic == 10
    assert (s.depth[sky] == 0).all() and (s.depth[~sky] > 0).all() and s.depth.max() < 255.0


def test_scene_variety_thing_counts_and_distances() -> None:
    counts, classes = [], set()
    for seed in range(150):
        scene = sample_scene(seed, SIZE)
        counts.append(len(scene.objects))  # one object = one thing instance (a rider and their bike are two)
        for obj in scene.objects:
            classes.add(obj.class_id)
            assert 2.0 <= obj.center[0] <= 80.0
        cam = scene.camera
        assert 1.2 <= cam.mount_height <= 2.2 and -3.0 <= math.degrees(cam.pitch) <= 5.0
        hfov = math.degrees(2 * math.atan(cam.width / 2 / cam.fx))
        assert 60.0 <= hfov <= 90.0 and cam.fx == cam.fy
        assert (cam.cx, cam.cy) == ((cam.width - 1) / 2, (cam.height - 1) / 2)
    max_things = PROFILES["streets"].max_things
    assert min(counts) == 0 and max(counts) == max_things and all(0 <= c <= max_things for c in counts)
    assert {11, 12, 13, 14, 15, 17, 18} <= classes


def test_focal_override_and_size() -> None:
    s = render_scene(3, (40, 100), focal=77.0)
    np.testing.assert_allclose(s.intrinsics, [[77.0, 0, 49.5], [0, 77.0, 19.5], [0, 0, 1]])
    assert s.image.shape == (40, 100, 3) and s.name == "synth_00000003"
    with pytest.raises(ValueError, match="focal"):
        render_scene(3, (40, 100), focal=-1.0)
    with pytest.raises(ValueError, match="size"):
        render_scene(3, (4, 100))


def test_same_seed_is_identical_and_different_seed_differs() -> None:
    a, b, c = render_scene(11, SIZE), render_scene(11, SIZE), render_scene(12, SIZE)
    for field in ("image", "semantic", "instance", "depth"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.image, c.image) and not np.array_equal(a.depth, c.depth)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_written_files_are_byte_identical_for_a_seed_whatever_the_workers(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path / "a", 3, SIZE, seed=9, progress=False)
    write_synthetic_dataset(tmp_path / "b", 3, SIZE, seed=9, workers=2, progress=False)
    write_synthetic_dataset(tmp_path / "c", 3, SIZE, seed=10, progress=False)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert len(a) == 3 * 4 + 2 and a == b
    images = [k for k in a if k.endswith("_leftImg8bit.png")]
    assert all(a[k] != c[k] for k in images)


def test_written_files_round_trip(tmp_path: Path) -> None:
    seed, num = 4, 2
    split_dir = write_synthetic_dataset(tmp_path, num, SIZE, seed=seed, split="val", progress=False)
    assert split_dir == tmp_path / "val"
    for i in range(num):
        s = render_scene(scene_seed(seed, i), SIZE)
        prefix = split_dir / f"{i:06d}_000000_synth_{i:06d}_000000"
        with Image.open(f"{prefix}_leftImg8bit.png") as im:
            assert im.mode == "RGB" and np.array_equal(np.asarray(im), s.image)
        with Image.open(f"{prefix}_gtFine_instanceTrainIds.png") as im:
            assert im.mode.startswith("I;16")
            label = np.asarray(im)
        semantic, instance = decode_instance_train_ids(label)
        assert np.array_equal(semantic, s.semantic) and np.array_equal(instance, s.instance)
        assert np.array_equal(label, s.semantic * 1000 + s.instance)
        with Image.open(f"{prefix}_depth.png") as im:
            assert im.mode.startswith("I;16")
            depth = decode_depth(np.asarray(im))
        assert np.array_equal(depth == 0, s.depth == 0)
        assert np.abs(depth - s.depth).max() <= 0.5 / 256 + 1e-6
        camera = json.loads(Path(f"{prefix}_camera.json").read_text())
        k = s.intrinsics
        assert camera["intrinsic"] == {"fx": k[0, 0], "fy": k[1, 1], "u0": k[0, 2], "v0": k[1, 2]}
        assert camera["extrinsic"]["z"] == s.meta["extrinsic"]["z"] and camera["extrinsic"]["roll"] == 0.0
    meta = json.loads((split_dir / "dataset.json").read_text())
    assert meta["seed"] == seed and meta["num"] == num and meta["size"] == list(SIZE) and len(meta["classes"]) == 19
    index = json.loads((tmp_path / "dvps_cityscapes_val.json").read_text())
    assert [e["image"] for e in index] == [f"{i:06d}_000000_synth_{i:06d}_000000_leftImg8bit.png" for i in range(num)]


def test_label_and_depth_encodings() -> None:
    semantic = np.array([[0, 13, 13, 255], [10, 11, 18, 13]], dtype=np.int32)
    instance = np.array([[0, 1, 2, 0], [0, 3, 999, 0]], dtype=np.int32)
    enc = encode_instance_train_ids(semantic, instance)
    assert enc.dtype == np.uint16
    assert enc.tolist() == [[0, 13001, 13002, VOID_VALUE], [10000, 11003, 18999, 13000]]
    sem, inst = decode_instance_train_ids(enc)
    assert sem.tolist() == semantic.tolist() and inst.tolist() == instance.tolist()
    with pytest.raises(ValueError, match="instance ids must be 0..999"):
        encode_instance_train_ids(semantic, np.where(instance == 999, 1000, instance))
    with pytest.raises(ValueError, match="stuff"):
        encode_instance_train_ids(semantic, np.where(semantic == 0, 5, instance))
    with pytest.raises(ValueError, match="semantic ids"):
        encode_instance_train_ids(np.full((2, 2), 19), np.zeros((2, 2), dtype=np.int32))
    depth = np.array([0.0, -1.0, np.nan, 1e-4, 1.0, 10.123, 300.0], dtype=np.float32)
    assert encode_depth(depth).tolist() == [0, 0, 0, 1, 256, round(10.123 * 256), 65535]


def test_write_dps_frame_without_depth_or_intrinsics(tmp_path: Path) -> None:
    sample = Sample(image=np.zeros((4, 6, 3), np.uint8), semantic=np.full((4, 6), 255, np.int32),
                    instance=np.zeros((4, 6), np.int32), name="x")
    paths = write_dps_frame(tmp_path, sample, seq=3, frame=17, city="bag")
    assert sorted(paths) == ["image", "label"]
    assert paths["image"].name == "000003_000017_bag_000003_000017_leftImg8bit.png"
    with Image.open(paths["label"]) as im:
        assert (np.asarray(im) == VOID_VALUE).all()
    with pytest.raises(ValueError, match="city"):
        write_dps_frame(tmp_path, sample, seq=0, frame=0, city="a_b")


def test_dataset_renders_the_same_scenes_as_the_writer() -> None:
    ds = SyntheticDataset(3, SIZE, seed=4, transform=lambda s: (s.name, s.image))
    assert len(ds) == 3
    name, image = ds[1]
    assert name == f"synth_{scene_seed(4, 1):08d}" and np.array_equal(image, render_scene(scene_seed(4, 1), SIZE).image)
    assert ds[-1][0] == ds[2][0]
    with pytest.raises(IndexError):
        ds[3]
    assert scene_seed(4, 1) == 4 * 1_000_003 + 1


def test_cli_writes_a_split_and_rejects_a_bad_size(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["synth", "--out", str(tmp_path), "--num", "1", "--size", "32x64", "--seed", "2", "--quiet"]) == 0
    assert len(list((tmp_path / "train").glob("*_leftImg8bit.png"))) == 1
    for bad in ("256", "0x64", "axb"):
        with pytest.raises(SystemExit):
            cli_main(["synth", "--out", str(tmp_path), "--num", "1", "--size", bad])
        assert "--size" in capsys.readouterr().err


def test_basic_profile_draws_only_its_classes_and_near_things() -> None:
    """The learning test's profile: large classes only, cars at 3-30 m; the default stays the full set."""
    basic_classes, street_classes, counts = set(), set(), []
    for seed in range(60):
        sample = render_scene(seed, (64, 128), focal=40.0, profile="basic")
        basic_classes |= set(np.unique(sample.semantic).tolist())
        scene = sample_scene(seed, (64, 128), 40.0, "basic")
        counts.append(len(scene.objects))
        assert all(obj.class_id == 13 and 3.0 <= obj.center[0] <= 30.0 for obj in scene.objects)
        street_classes |= {p.class_id for p in sample_scene(seed, (64, 128), 40.0).primitives}
    assert basic_classes == {0, 1, 2, 8, 10, 13}
    assert max(counts) <= PROFILES["basic"].max_things and max(counts) >= 5
    assert {3, 4, 5, 6, 7, 9, 11} <= street_classes  # wall, fence, pole, light, sign, terrain, person: full only
    with pytest.raises(ValueError, match="unknown synthetic scene profile 'busy'"):
        sample_scene(0, (64, 128), 40.0, "busy")
