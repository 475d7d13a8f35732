"""Readers on small fixture folders written here in the real layouts; broken files must raise naming the file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from panopticdepth_core.data.cityscapes_dps import (
    CityscapesDPSDataset,
    decode_instance_train_ids,
    index_dps_folder,
)
from panopticdepth_core.data.cityscapes_panoptic import CityscapesPanopticDataset
from panopticdepth_core.data.image_io import DataError, read_rgb, read_uint16
from panopticdepth_core.data.semkitti_dps import SemKittiDPSDataset

H, W = 24, 40
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ fixture writers
def _rgb(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def encoded_label(void: bool = True) -> np.ndarray:
    """road / car 1 / car 2 / person crowd / sky / (void), as train_id * 1000 + instance."""
    lab = np.full((H, W), 0, dtype=np.uint16)  # road (train id 0)
    lab[:4] = 10 * 1000  # sky
    lab[5:10, 2:8] = 13 * 1000 + 1  # car instance 1
    lab[5:10, 10:16] = 13 * 1000 + 2  # car instance 2
    lab[12:16, 20:30] = 11 * 1000  # person crowd (instance 0)
    lab[18:22, 30:36] = 11 * 1000 + 7  # person instance 7
    if void:
        lab[-2:, :] = 32 * 1000  # ViP-DeepLab's void
    return lab


def write_dps_frame(folder: Path, prefix: str, *, void: bool = True, camera: dict | None = None,
                    depth_dtype=np.uint16, label_size: tuple[int, int] = (H, W)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rgb(len(prefix))).save(folder / f"{prefix}_leftImg8bit.png")
    label = encoded_label(void)
    if label_size != (H, W):
        label = np.zeros(label_size, np.uint16)
    Image.fromarray(label).save(folder / f"{prefix}_gtFine_instanceTrainIds.png")
    depth = np.tile(np.linspace(0, 50, W, dtype=np.float32), (H, 1))
    depth_png = (depth * 256).astype(np.uint16) if depth_dtype == np.uint16 else (depth).astype(np.uint8)
    Image.fromarray(depth_png).save(folder / f"{prefix}_depth.png")
    if camera is not None:
        (folder / f"{prefix}_camera.json").write_text(json.dumps({"intrinsic": camera}))


def make_dps_folder(tmp_path: Path, n: int = 3, **kwargs) -> Path:
    folder = tmp_path / "cityscapes-dvps" / "video_sequence" / "train"
    for i in range(n):
        write_dps_frame(folder, f"{i // 2:06d}_{i:06d}_munster_000168_{i:06d}", **kwargs)
    return folder


# ------------------------------------------------------------------------------------------ Cityscapes-DPS
def test_decode_instance_train_ids_void_crowd_and_unique_ids():
    semantic, instance = decode_instance_train_ids(encoded_label(void=True))
    assert semantic[-1, 0] == 255 and instance[-1, 0] == 0  # 32000 -> void
    assert semantic[0, 0] == 10 and semantic[H // 2, 0] == 0
    assert semantic[13, 25] == 11 and instance[13, 25] == 0  # crowd: class kept, no instance
    ids = {int(instance[6, 3]), int(instance[6, 12]), int(instance[19, 31])}
    assert ids == {1, 2, 3}  # unique, dense, positive
    assert set(np.unique(instance)) == {0, 1, 2, 3}


def test_dps_reader_reads_layout_with_and_without_void(tmp_path):
    folder = make_dps_folder(tmp_path, n=2, void=False)
    write_dps_frame(folder, "000005_000009_aachen_000001_000019", void=True)
    ds = CityscapesDPSDataset(folder)
    assert len(ds) == 3
    for i in range(3):
        s = ds[i]
        assert s.image.shape == (H, W, 3) and s.image.dtype == np.uint8
        assert s.semantic.dtype == np.int32 and s.instance.dtype == np.int32
        assert s.depth.dtype == np.float32
        np.testing.assert_allclose(s.depth[0], (np.linspace(0, 50, W, dtype=np.float32) * 256).astype(np.uint16) / 256)
        assert s.depth[0, 0] == 0.0  # invalid stays 0
        assert s.intrinsics is None
    no_void = ds[0]
    assert not (no_void.semantic == 255).any()  # the original's mapper crashed on such frames
    last = ds[2]
    assert last.sequence == "000005" and last.frame == 9 and last.name == "000005_000009_aachen_000001_000019"
    assert (last.semantic[-2:] == 255).all()
    img = np.asarray(Image.open(folder / "000005_000009_aachen_000001_000019_leftImg8bit.png"))
    np.testing.assert_array_equal(last.image, img)


def test_dps_camera_json_sibling_and_folder_level(tmp_path):
    cam = {"fx": 2262.5, "fy": 2265.3, "u0": 1096.9, "v0": 513.1}
    folder = make_dps_folder(tmp_path, n=1, camera=cam)
    write_dps_frame(folder, "000009_000000_bonn_000000_000000")  # no sibling camera
    ds = CityscapesDPSDataset(folder)
    k = ds[0].intrinsics
    np.testing.assert_allclose(k, [[2262.5, 0, 1096.9], [0, 2265.3, 513.1], [0, 0, 1]])
    assert ds[1].intrinsics is None
    (folder / "camera.json").write_text(json.dumps({"intrinsic": {"fx": 10.0, "fy": 11.0, "u0": 5.0, "v0": 6.0}}))
    ds = CityscapesDPSDataset(folder)
    np.testing.assert_allclose(ds[0].intrinsics[0, 0], 2262.5)  # its own file wins
    np.testing.assert_allclose(ds[1].intrinsics[:2, 2], [5.0, 6.0])


def test_index_lists_missing_and_orphan_files(tmp_path):
    folder = make_dps_folder(tmp_path, n=3)
    (folder / "000000_000000_munster_000168_000000_depth.png").unlink()
    (folder / "000001_000002_munster_000168_000002_gtFine_instanceTrainIds.png").unlink()
    Image.fromarray(encoded_label()).save(folder / "000007_000001_ulm_000000_000001_gtFine_instanceTrainIds.png")
    with pytest.raises(DataError) as err:
        index_dps_folder(folder)
    msg = str(err.value)
    assert "000000_000000_munster_000168_000000_depth.png" in msg
    assert "000001_000002_munster_000168_000002_gtFine_instanceTrainIds.png" in msg
    assert "000007_000001_ulm_000000_000001_gtFine_instanceTrainIds.png: label file without an image" in msg


def test_index_rejects_wrong_size_and_8bit_depth(tmp_path):
    folder = make_dps_folder(tmp_path, n=1, label_size=(H, W + 2))
    with pytest.raises(DataError, match=r"gtFine_instanceTrainIds\.png: size 42x24 differs"):
        index_dps_folder(folder)
    folder2 = make_dps_folder(tmp_path / "b", n=1, depth_dtype=np.uint8)
    with pytest.raises(DataError, match=r"_depth\.png: expected a 16-bit grayscale PNG.*got 8-bit grayscale"):
        index_dps_folder(folder2)


def test_optional_labels_and_depth_for_unlabelled_folders(tmp_path):
    folder = tmp_path / "extract"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(_rgb(i)).save(folder / f"000000_{i:06d}_bag_leftImg8bit.png")
    with pytest.raises(DataError, match="missing label file"):
        CityscapesDPSDataset(folder)
    ds = CityscapesDPSDataset(folder, require_labels=False, require_depth=False)
    s = ds[1]
    assert s.depth is None and (s.semantic == 255).all() and s.frame == 1
    # optional, but then all or none: one frame with depth and one without is an error naming the missing one
    Image.fromarray(np.zeros((H, W), np.uint16)).save(folder / "000000_000000_bag_depth.png")
    with pytest.raises(DataError, match="000000_000001_bag_depth.png: missing depth"):
        CityscapesDPSDataset(folder, require_labels=False, require_depth=False)


# ------------------------------------------------------------------------------------------ broken files
def test_truncated_png_raises_naming_file(tmp_path):
    folder = make_dps_folder(tmp_path, n=1)
    image = next(folder.glob("*_leftImg8bit.png"))
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    ds = CityscapesDPSDataset(folder)  # the index only reads headers
    with pytest.raises(DataError, match=str(image)):
        ds[0]
    image.write_bytes(data[:-12])  # cut just before IEND: Pillow alone would accept this
    with pytest.raises(DataError, match="truncated"):
        read_rgb(image)


def test_wrong_mode_and_size_raise_naming_file(tmp_path):
    gray = tmp_path / "gray_leftImg8bit.png"
    Image.fromarray(np.zeros((H, W), np.uint8)).save(gray)
    with pytest.raises(DataError, match=rf"{gray}: expected an 8-bit RGB image, got a 8-bit grayscale"):
        read_rgb(gray)
    depth8 = tmp_path / "d_depth.png"
    Image.fromarray(np.zeros((H, W), np.uint8)).save(depth8)
    with pytest.raises(DataError, match=rf"{depth8}: expected a 16-bit single-channel PNG"):
        read_uint16(depth8, "depth")
    depth16 = tmp_path / "e_depth.png"
    Image.fromarray(np.zeros((H, W), np.uint16)).save(depth16)
    with pytest.raises(DataError, match=rf"{depth16}: expected size 41x24"):
        read_uint16(depth16, "depth", expected_size=(H, W + 1))
    with pytest.raises(DataError, match="file not found"):
        read_rgb(tmp_path / "nope.png")


def test_corrupt_label_in_dataset_names_file(tmp_path):
    folder = make_dps_folder(tmp_path, n=1)
    label = next(folder.glob("*_gtFine_instanceTrainIds.png"))
    data = bytearray(label.read_bytes())
    data[60:80] = b"\x00" * 20  # corrupt the compressed stream, keep header and end
    label.write_bytes(bytes(data))
    with pytest.raises(DataError, match=str(label)):
        CityscapesDPSDataset(folder)[0]


# ------------------------------------------------------------------------------------------ SemKITTI-DPS
def write_semkitti_frame(folder: Path, prefix: str, focal: float = 718.8560180664062, bits: int = 8) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rgb(1)).save(folder / f"{prefix}_leftImg8bit.png")
    cls = np.full((H, W), 8, np.uint8)  # road (SemanticKITTI id 8)
    cls[:3] = 255  # void
    cls[5:10, 5:10] = 0  # car
    cls[5:10, 20:25] = 0  # car
    cls[12:18, 30:34] = 5  # person
    inst = np.zeros((H, W), np.uint8)
    inst[5:10, 5:10] = 3
    inst[5:10, 20:25] = 4
    inst[12:18, 30:34] = 3  # same id as a car: unique only per class
    dtype = np.uint16 if bits == 16 else np.uint8
    Image.fromarray(cls.astype(dtype)).save(folder / f"{prefix}_gtFine_class.png")
    Image.fromarray(inst.astype(dtype)).save(folder / f"{prefix}_gtFine_instance.png")
    depth = np.zeros((H, W), np.uint16)
    depth[::3, ::2] = 20 * 256  # sparse LiDAR
    Image.fromarray(depth).save(folder / f"{prefix}_depth_{focal}.png")


def test_semkitti_reader(tmp_path):
    folder = tmp_path / "semkitti-dvps" / "video_sequence" / "val"
    write_semkitti_frame(folder, "000008_000000")
    write_semkitti_frame(folder, "000008_000001", focal=707.0911865234375, bits=16)
    ds = SemKittiDPSDataset(folder)
    s = ds[0]
    assert s.sequence == "000008" and s.frame == 0
    assert s.semantic[H - 1, 0] == 0  # road -> our stuff id 0
    assert s.semantic[6, 6] == 11 and s.semantic[13, 31] == 16  # car -> 11, person -> 16 (things last)
    assert (s.semantic[:3] == 255).all()
    assert len({int(s.instance[6, 6]), int(s.instance[6, 21]), int(s.instance[13, 31])}) == 3
    assert s.instance[H - 1, 0] == 0
    assert s.depth[0, 0] == 20.0 and s.depth[1, 0] == 0.0
    np.testing.assert_allclose(s.intrinsics, [[718.8560180664062, 0, (W - 1) / 2], [0, 718.8560180664062, (H - 1) / 2],
                                              [0, 0, 1]])
    assert ds[1].intrinsics[0, 0] == pytest.approx(707.0911865234375)
    raw = SemKittiDPSDataset(folder, things_last=False)[1]
    assert raw.semantic[6, 6] == 0 and raw.semantic[H - 1, 0] == 8 and raw.instance[6, 6] > 0
    calib = tmp_path / "calib.txt"
    calib.write_text("P0: 1 0 0 0 0 1 0 0 0 0 1 0\nP2: 700 0 600 45 0 701 180 -0.3 0 0 1 0.004\n")
    k = SemKittiDPSDataset(folder, calib=calib)[0].intrinsics
    np.testing.assert_allclose(k, [[700, 0, 600], [0, 701, 180], [0, 0, 1]])


def test_semkitti_missing_depth_named(tmp_path):
    folder = tmp_path / "sk"
    write_semkitti_frame(folder, "000001_000004")
    next(folder.glob("*_depth_*.png")).unlink()
    with pytest.raises(DataError, match=r"000001_000004_depth_\{focal\}.png: missing"):
        SemKittiDPSDataset(folder)


# ------------------------------------------------------------------------------------------ Cityscapes panoptic
def write_cityscapes_panoptic(root: Path, split: str = "val") -> tuple[str, np.ndarray]:
    image_id = "frankfurt_000000_000294"
    img_dir = root / "leftImg8bit" / split / "frankfurt"
    img_dir.mkdir(parents=True)
    Image.fromarray(_rgb(3)).save(img_dir / f"{image_id}_leftImg8bit.png")
    ids = np.zeros((H, W), np.int64)  # 0: unlabelled (void)
    ids[H // 2:] = 7  # road (label id 7)
    ids[2:8, 2:10] = 26001  # car 1 (label id 26)
    ids[2:8, 20:30] = 26002  # car 2
    ids[10:12, 0:5] = 24  # person crowd
    ids[14:16, 0:5] = 4  # 'static' (not evaluated): stays void
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)
    pan_dir = root / "gtFine" / f"cityscapes_panoptic_{split}"
    pan_dir.mkdir(parents=True)
    Image.fromarray(rgb).save(pan_dir / f"{image_id}_gtFine_panoptic.png")
    ann = {
        "annotations": [{
            "image_id": image_id, "file_name": f"{image_id}_gtFine_panoptic.png",
            "segments_info": [
                {"id": 7, "category_id": 7, "iscrowd": 0}, {"id": 26001, "category_id": 26, "iscrowd": 0},
                {"id": 26002, "category_id": 26, "iscrowd": 0}, {"id": 24, "category_id": 24, "iscrowd": 1},
            ],
        }],
        "categories": [{"id": 7, "name": "road", "isthing": 0}, {"id": 24, "name": "person", "isthing": 1},
                       {"id": 26, "name": "car", "isthing": 1}],
    }
    (root / "gtFine" / f"cityscapes_panoptic_{split}.json").write_text(json.dumps(ann))
    return image_id, ids


def test_cityscapes_panoptic_reader(tmp_path):
    root = tmp_path / "cityscapes"
    image_id, _ = write_cityscapes_panoptic(root)
    ds = CityscapesPanopticDataset(root, "val")
    s = ds[0]
    assert s.name == image_id and s.sequence == "frankfurt_000000" and s.frame == 294
    assert s.depth is None and s.intrinsics is None
    assert s.semantic[H - 1, 0] == 0 and s.semantic[0, 0] == 255 and s.semantic[15, 0] == 255
    assert s.semantic[3, 3] == 13 and s.semantic[3, 25] == 13
    assert {int(s.instance[3, 3]), int(s.instance[3, 25])} == {1, 2}
    assert s.semantic[11, 1] == 11 and s.instance[11, 1] == 0  # crowd
    cam = root / "camera" / "val" / "frankfurt"
    cam.mkdir(parents=True)
    (cam / f"{image_id}_camera.json").write_text(json.dumps({"intrinsic": {"fx": 2.0, "fy": 2.0, "u0": 1, "v0": 1}}))
    assert CityscapesPanopticDataset(root, "val")[0].intrinsics[0, 0] == 2.0


def test_cityscapes_panoptic_missing_png_named(tmp_path):
    root = tmp_path / "cityscapes"
    image_id, _ = write_cityscapes_panoptic(root)
    (root / "gtFine" / "cityscapes_panoptic_val" / f"{image_id}_gtFine_panoptic.png").unlink()
    with pytest.raises(DataError, match=f"{image_id}_gtFine_panoptic.png: missing"):
        CityscapesPanopticDataset(root, "val")


# ------------------------------------------------------------------------------------------ preparation CLI
def test_prepare_cityscapes_dps_cli(tmp_path):
    folder = make_dps_folder(tmp_path, n=3)
    root = folder.parent
    cmd = [sys.executable, str(REPO / "training" / "prepare_cityscapes_dps.py"), "--root", str(root), "--split", "train"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "frames: 3" in out.stdout and "sequences: 2" in out.stdout and "car" in out.stdout
    index = json.loads((root / "dvps_cityscapes_train.json").read_text())
    assert len(index) == 3 and index[0]["image"].endswith("_leftImg8bit.png") and index[0]["height"] == H
    next(folder.glob("*_depth.png")).unlink()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "_depth.png: missing depth" in out.stderr


# ------------------------------------------------------------------------------------------ writer <-> reader
def test_dps_writer_output_reads_back(tmp_path):
    """What dps_writer writes (synthetic data, bag extracts) is exactly what this reader reads."""
    from panopticdepth_core.data.dps_writer import write_dps_frame as writer
    from panopticdepth_core.data.sample import Sample

    semantic, instance = decode_instance_train_ids(encoded_label(void=True))
    depth = np.tile(np.linspace(0, 40, W, dtype=np.float32), (H, 1))
    k = np.array([[30.0, 0, 19.5], [0, 31.0, 11.5], [0, 0, 1]])
    sample = Sample(image=_rgb(9), semantic=semantic, instance=instance, depth=depth, intrinsics=k, name="x")
    folder = tmp_path / "split"
    writer(folder, sample, seq=3, frame=12, city="lab")
    back = CityscapesDPSDataset(folder)[0]
    assert back.sequence == "000003" and back.frame == 12
    np.testing.assert_array_equal(back.image, sample.image)
    np.testing.assert_array_equal(back.semantic, semantic)
    np.testing.assert_array_equal(back.instance, instance)
    np.testing.assert_allclose(back.depth, depth, atol=1 / 512)
    np.testing.assert_allclose(back.intrinsics, k)
