"""The train loader: right batch sizes, reproducible, resumable at the same data position, errors name files."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from panopticdepth_core.config import get_default_config
from panopticdepth_core.data.build import (
    DATASETS_ENV,
    InfiniteSeededSampler,
    build_dataset,
    build_test_loader,
    build_train_loader,
)
from panopticdepth_core.data.image_io import DataError
from panopticdepth_core.data.sample import Sample
from panopticdepth_core.modeling.types import InstanceTarget

H, W = 20, 32


def write_frame(folder: Path, prefix: str, seed: int, void_only: bool = False) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(folder / f"{prefix}_leftImg8bit.png")
    label = np.full((H, W), 32000 if void_only else 0, np.uint16)
    if not void_only:
        label[5:12, 4:12] = 13000 + 1 + seed % 3
        label[:3] = 10000
    Image.fromarray(label).save(folder / f"{prefix}_gtFine_instanceTrainIds.png")
    depth = (rng.uniform(1, 50, (H, W)) * 256).astype(np.uint16)
    Image.fromarray(depth).save(folder / f"{prefix}_depth.png")


def make_folder(tmp_path: Path, n: int = 7, void_frames: tuple[int, ...] = ()) -> Path:
    folder = tmp_path / "dps"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_frame(folder, f"{i // 3:06d}_{i:06d}_city", seed=i, void_only=i in void_frames)
    (folder / "camera.json").write_text('{"intrinsic": {"fx": 30.0, "fy": 30.0, "u0": 15.5, "v0": 9.5}}')
    return folder


def make_cfg(folder: Path, batch: int = 2, workers: int = 0):
    cfg = get_default_config()
    cfg.DATASETS.TRAIN = (f"dps_folder:{folder}",)
    cfg.SOLVER.IMS_PER_BATCH = batch
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.INPUT.MIN_SIZE_TRAIN = (16, 20, 24)
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.SIZE = (16, 24)
    cfg.SEED = 7
    return cfg


def fingerprint(batch) -> list[tuple]:
    images, targets, metas = batch
    return [(m["name"], tuple(im.shape), int(im.long().sum()), float(t.depth.sum()), float(m["intrinsics"][0, 0]))
            for im, t, m in zip(images, targets, metas)]


def take(loader, n: int) -> list[list[tuple]]:
    return [fingerprint(b) for b in islice(iter(loader), n)]


def test_batches_have_the_right_size_and_types(tmp_path):
    loader = build_train_loader(make_cfg(make_folder(tmp_path), batch=3))
    images, targets, metas = next(iter(loader))
    assert len(images) == len(targets) == len(metas) == 3
    for im, t in zip(images, targets):
        assert im.dtype == torch.uint8 and im.shape == (3, 16, 24)
        assert isinstance(t, InstanceTarget) and t.semantic.shape == (16, 24) and t.depth.dtype == torch.float32
    assert metas[0]["orig_size"] == (H, W) and metas[0]["intrinsics"].shape == (3, 3)
    ranks = [build_train_loader(make_cfg(make_folder(tmp_path), batch=4), rank=r, world_size=2) for r in range(2)]
    firsts = [next(iter(ld)) for ld in ranks]
    assert all(len(b.images) == 2 for b in firsts)
    names = [m["name"] for b in firsts for m in b.metas]
    assert len(set(names)) == 4  # ranks see different frames
    with pytest.raises(ValueError, match="IMS_PER_BATCH"):
        build_train_loader(make_cfg(make_folder(tmp_path), batch=3), world_size=2)


def test_deterministic_across_runs_and_worker_counts(tmp_path):
    folder = make_folder(tmp_path)
    a = take(build_train_loader(make_cfg(folder)), 6)
    b = take(build_train_loader(make_cfg(folder)), 6)
    c = take(build_train_loader(make_cfg(folder, workers=2)), 6)
    assert a == b == c
    other = take(build_train_loader(make_cfg(folder), seed=8), 6)
    assert other != a
    # several epochs of 7 frames went by: every frame was seen, and augmentation differs between epochs
    names = [x[0] for batch in a for x in batch]
    assert len(set(names)) == 7


def test_resume_yields_the_same_data_position(tmp_path):
    folder = make_folder(tmp_path)
    full = take(build_train_loader(make_cfg(folder, workers=2)), 9)
    resumed = take(build_train_loader(make_cfg(folder, workers=2), start_iter=5), 4)
    assert resumed == full[5:9]


def test_sampler_epochs_are_permutations_and_skip_matches():
    sampler = InfiniteSeededSampler(10, seed=3, rank=1, world_size=3)
    stream = list(islice(iter(sampler), 12))
    assert len(stream) == 12
    skipped = list(islice(iter(InfiniteSeededSampler(10, seed=3, rank=1, world_size=3, start=5)), 7))
    assert skipped == stream[5:]
    epoch0 = np.concatenate([InfiniteSeededSampler(10, 3, r, 3).epoch_indices(0) for r in range(3)])
    assert set(epoch0.tolist()) == set(range(10))


def test_corrupt_file_raises_with_its_path_through_workers(tmp_path):
    folder = make_folder(tmp_path, n=3)
    bad = folder / "000000_000001_city_depth.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    cfg = make_cfg(folder, batch=3, workers=1)
    with pytest.raises(DataError, match=str(bad)):
        next(iter(build_train_loader(cfg)))
    with pytest.raises(DataError, match=str(bad)):
        next(iter(build_train_loader(make_cfg(folder, batch=3, workers=0))))


def test_filter_empty_annotations_skips_void_frames(tmp_path):
    folder = make_folder(tmp_path, n=4, void_frames=(1, 2))
    cfg = make_cfg(folder)
    names = {x[0] for batch in take(build_train_loader(cfg), 8) for x in batch}
    assert names == {"000000_000000_city", "000001_000003_city"}
    cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS = False
    names = {x[0] for batch in take(build_train_loader(cfg), 8) for x in batch}
    assert "000000_000001_city" in names


def test_test_loader_and_named_datasets(tmp_path, monkeypatch):
    root = tmp_path / "data"
    folder = root / "cityscapes-dvps" / "video_sequence" / "val"
    folder.mkdir(parents=True)
    for i in range(3):
        write_frame(folder, f"000000_{i:06d}_city", seed=i)
    cfg = get_default_config()
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.MIN_SIZE_TEST = 0
    monkeypatch.setenv(DATASETS_ENV, str(root))
    batches = list(build_test_loader(cfg, "cityscapes_dps_val"))
    assert [b.metas[0]["name"] for b in batches] == [f"000000_{i:06d}_city" for i in range(3)]
    assert batches[0].images[0].shape == (3, H, W)
    with pytest.raises(KeyError, match="dps_folder:"):
        build_dataset(cfg, "kitti_train", is_train=True)


def test_unlabelled_folder_is_test_only(tmp_path):
    folder = tmp_path / "bag"
    folder.mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(folder / "000000_000000_bag_leftImg8bit.png")
    cfg = make_cfg(folder)
    with pytest.raises(DataError, match="no \\*_gtFine_instanceTrainIds.png labels"):
        build_train_loader(cfg)
    ds = build_dataset(cfg, f"dps_folder:{folder}", is_train=False)
    sample = ds[0]  # evaluation data sets give stored samples (the Predictor resizes by itself)
    assert isinstance(sample, Sample) and sample.depth is None and (sample.semantic == 255).all()
    batch = next(iter(build_test_loader(cfg, f"dps_folder:{folder}", num_workers=0)))
    assert batch.targets[0].depth is None and (batch.targets[0].semantic == 255).all()


def test_synthetic_dataset_by_name():
    cfg = get_default_config()
    cfg.DATASETS.TRAIN = ("synthetic_train",)
    cfg.DATASETS.SYNTHETIC.SIZE = (32, 64)
    cfg.DATASETS.SYNTHETIC.NUM_TRAIN = 3
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.INPUT.MIN_SIZE_TRAIN = (32,)
    batch = next(iter(build_train_loader(cfg)))
    assert len(batch.images) == 2 and batch.images[0].shape == (3, 32, 64)
    assert batch.targets[0].depth is not None and batch.metas[0]["intrinsics"].shape == (3, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_batches_are_pinned_when_cuda(tmp_path):
    cfg = make_cfg(make_folder(tmp_path), workers=1)
    batch = next(iter(build_train_loader(cfg)))
    assert batch.images[0].is_pinned() and batch.targets[0].semantic.is_pinned()
    assert batch.targets[0].depth.is_pinned()
