"""Data sets by name, and the train/test loaders that keep a GPU fed reproducibly.

Names: ``cityscapes_dps_{train,val}``, ``cityscapes_fine_panoptic_{train,val}_separated``,
``semkitti_dps_{train,val}``, ``synthetic_{train,val}`` and ``dps_folder:/any/folder`` (a folder in the
Cityscapes-DPS layout, e.g. what ``panopticdepth extract`` writes). Named data sets live under the data root:
env ``PANOPTICDEPTH_DATASETS`` if set, else ``DATASETS.ROOT``.

The train loader is infinite and reproducible: each rank walks its shard of a per-epoch permutation drawn from
the seed, and every sample carries its own augmentation seed derived from (seed, rank, position). Restarting
with ``start_iter=k`` therefore yields exactly the batches the first run yielded from iteration k on, whatever
the number of workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .classes import VOID_CLASS
from .example import TrainBatch, TrainExample, collate_examples
from .image_io import DataError
from .sample import Sample
from .transforms import build_transform

logger = logging.getLogger(__name__)

DATASETS_ENV = "PANOPTICDEPTH_DATASETS"
DPS_FOLDER_PREFIX = "dps_folder:"
MAX_EMPTY_RESAMPLES = 100


def datasets_root(cfg) -> Path:
    """Where named data sets live: env PANOPTICDEPTH_DATASETS, else DATASETS.ROOT."""
    return Path(os.environ.get(DATASETS_ENV) or cfg.DATASETS.ROOT).expanduser()


def _split_of(name: str, prefix: str, suffix: str = "") -> str | None:
    if name.startswith(prefix) and name.endswith(suffix):
        split = name[len(prefix): len(name) - len(suffix)]
        if split in ("train", "val"):
            return split
    return None


def build_reader(cfg, name: str) -> Any:
    """The raw data set (yielding ``Sample``, no transform) for a data set name; errors list the known names."""
    if name.startswith(DPS_FOLDER_PREFIX):
        from .cityscapes_dps import CityscapesDPSDataset

        folder = Path(name[len(DPS_FOLDER_PREFIX):]).expanduser()
        return CityscapesDPSDataset(folder, require_labels=False, require_depth=False)
    root = datasets_root(cfg)
    if (split := _split_of(name, "cityscapes_dps_")) is not None:
        from .cityscapes_dps import CityscapesDPSDataset

        return CityscapesDPSDataset(root / "cityscapes-dvps" / "video_sequence" / split)
    if (split := _split_of(name, "cityscapes_fine_panoptic_", "_separated")) is not None:
        from .cityscapes_panoptic import CityscapesPanopticDataset

        return CityscapesPanopticDataset(root / "cityscapes", split)
    if (split := _split_of(name, "semkitti_dps_")) is not None:
        from .semkitti_dps import SemKittiDPSDataset

        return SemKittiDPSDataset(root / "semkitti-dvps" / "video_sequence" / split)
    if (split := _split_of(name, "synthetic_")) is not None:
        from .synthetic import SyntheticDataset  # lazy: the renderer is only needed for synthetic runs

        syn = cfg.DATASETS.SYNTHETIC
        num = syn.NUM_TRAIN if split == "train" else syn.NUM_VAL
        seed = syn.SEED if split == "train" else syn.VAL_SEED
        focal = syn.VAL_FOCAL if split == "val" and syn.VAL_FOCAL >= 0 else syn.FOCAL
        return SyntheticDataset(num, tuple(syn.SIZE), seed, focal=focal if focal > 0 else None,
                                profile=syn.PROFILE, hfov_range=tuple(syn.HFOV_RANGE))
    raise KeyError(
        f"unknown data set {name!r} (in DATASETS.TRAIN / DATASETS.TEST); known: cityscapes_dps_{{train,val}}, "
        "cityscapes_fine_panoptic_{train,val}_separated, semkitti_dps_{train,val}, synthetic_{train,val}, "
        "dps_folder:/path/to/folder"
    )


class TransformedDataset(Dataset):
    """A reader plus a transform; indexed by ``int`` or by ``(index, seed)`` for reproducible augmentation.

    With a seed, torch's generator is forked and seeded around the read and transform, so the sample is the same
    in any worker process, in any order, and the caller's random state is left untouched. With
    ``filter_empty``, a frame without any labelled pixel is replaced by another frame drawn from the same seed.
    """

    def __init__(self, reader: Any, transform: Callable[[Sample], TrainExample] | None,
                 filter_empty: bool = False, name: str = "") -> None:
        self.reader = reader
        self.transform = transform
        self.filter_empty = filter_empty
        self.name = name

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        if isinstance(key, tuple):
            index, seed = key
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self._get(int(index), seed)
        return self._get(int(key), None)

    def _get(self, index: int, seed: int | None) -> Any:
        sample = self._read(index)
        if self.filter_empty:
            rng = np.random.default_rng([0 if seed is None else seed, index])
            tries = 0
            while not bool((sample.semantic != VOID_CLASS).any()):
                tries += 1
                if tries > MAX_EMPTY_RESAMPLES:
                    raise DataError(f"data set {self.name!r}: {MAX_EMPTY_RESAMPLES} frames in a row had no labelled "
                                    "pixel (DATALOADER.FILTER_EMPTY_ANNOTATIONS); are the labels all void?")
                index = int(rng.integers(len(self.reader)))
                sample = self._read(index)
        return sample if self.transform is None else self.transform(sample)

    def _read(self, index: int) -> Sample:
        has = getattr(self.reader, "has_annotations", None)
        if self.filter_empty and has is not None and not has(index):
            return _EMPTY  # known empty from the annotation file: skip reading pixels
        sample = self.reader[index]
        if not isinstance(sample, Sample):
            raise TypeError(f"data set {self.name!r} returned {type(sample).__name__}, expected Sample")
        return sample


_EMPTY = Sample(image=np.zeros((1, 1, 3), np.uint8), semantic=np.full((1, 1), VOID_CLASS, np.int32),
                instance=np.zeros((1, 1), np.int32), name="<empty>")


def build_dataset(cfg, name: str, is_train: bool) -> TransformedDataset:
    """A named data set. Training: items are ``TrainExample`` (train transform, empty frames filtered per
    DATALOADER.FILTER_EMPTY_ANNOTATIONS). Evaluation: items are the stored ``Sample``s, untransformed, since metrics
    are computed at the stored resolution and the Predictor resizes its input itself (``build_test_loader`` gives
    test-transformed batches instead)."""
    reader = build_reader(cfg, name)
    frames = getattr(reader, "frames", None)
    if is_train and frames and hasattr(frames[0], "label") and all(f.label is None for f in frames):
        raise DataError(f"data set {name!r}: no *_gtFine_instanceTrainIds.png labels in {reader.root}; a folder "
                        "without labels can be used for testing and inference, not training")
    filter_empty = bool(is_train and cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS)
    transform = build_transform(cfg, is_train=True, dataset=name) if is_train else None
    return TransformedDataset(reader, transform, filter_empty=filter_empty, name=name)


class _ConcatDataset(Dataset):
    """Several data sets end to end (DATASETS.TRAIN may list more than one); keys pass through with their seed."""

    def __init__(self, parts: list[TransformedDataset]) -> None:
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        index, seed = key if isinstance(key, tuple) else (key, None)
        part = int(np.searchsorted(self.offsets, index, side="right") - 1)
        local = int(index - self.offsets[part])
        return self.parts[part][(local, seed) if seed is not None else local]


def item_seed(seed: int, rank: int, position: int) -> int:
    """The augmentation seed of the item at ``position`` in ``rank``'s stream (independent of workers)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, rank, position]).generate_state(1, np.uint32)[0])


class InfiniteSeededSampler(Sampler):
    """Yields ``(index, item_seed)`` forever: epoch-wise permutations, sharded over ranks, resumable at any position.

    Each epoch draws a permutation of the data set from (seed, epoch), pads it by wrapping to a multiple of
    world_size and gives rank r the items r, r + world_size, ... . ``start`` skips that many items of this rank's
    stream without drawing them one by one.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0,
                 shuffle: bool = True) -> None:
        if size <= 0:
            raise ValueError("cannot sample from an empty data set")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.size, self.seed, self.rank, self.world_size = size, int(seed), rank, world_size
        self.start, self.shuffle = int(start), shuffle
        self.per_rank = -(-size // world_size)  # items of one epoch on one rank

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """This rank's items of ``epoch``, in order."""
        if self.shuffle:
            order = np.random.default_rng([self.seed & 0xFFFFFFFF, epoch]).permutation(self.size)
        else:
            order = np.arange(self.size)
        order = np.resize(order, self.per_rank * self.world_size)  # wrap-pad to a multiple of world_size
        return order[self.rank:: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start
        epoch, offset = divmod(position, self.per_rank)
        while True:
            indices = self.epoch_indices(epoch)
            for k in range(offset, self.per_rank):
                yield int(indices[k]), item_seed(self.seed, self.rank, position)
                position += 1
            epoch, offset = epoch + 1, 0


def _worker_init(_: int) -> None:
    # Workers decode and resize images: one intra-op thread each avoids oversubscribing the cores.
    torch.set_num_threads(1)


def train_seed(cfg, seed: int | None = None) -> int:
    """The data seed: ``seed`` if given, else cfg.SEED when >= 0, else 0 (resuming needs a fixed seed)."""
    if seed is not None:
        return int(seed)
    return int(cfg.SEED) if cfg.SEED >= 0 else 0


def build_train_loader(cfg, rank: int = 0, world_size: int = 1, start_iter: int = 0,
                       seed: int | None = None) -> DataLoader:
    """Infinite loader of TrainBatch for DATASETS.TRAIN; batch = SOLVER.IMS_PER_BATCH // world_size per rank.

    ``start_iter``: the iteration to resume at; the loader then yields what a run from 0 yielded from there on.
    """
    total = int(cfg.SOLVER.IMS_PER_BATCH)
    if total % world_size or total < world_size:
        raise ValueError(f"SOLVER.IMS_PER_BATCH ({total}) must be a positive multiple of the number of processes "
                         f"({world_size})")
    batch = total // world_size
    names = list(cfg.DATASETS.TRAIN)
    if not names:
        raise ValueError("DATASETS.TRAIN is empty: name at least one data set")
    parts = [build_dataset(cfg, n, is_train=True) for n in names]
    dataset = parts[0] if len(parts) == 1 else _ConcatDataset(parts)
    sampler = InfiniteSeededSampler(len(dataset), train_seed(cfg, seed), rank, world_size, start=start_iter * batch)
    return _loader(cfg, dataset, sampler, batch)


def build_test_loader(cfg, name: str, num_workers: int | None = None) -> DataLoader:
    """One image per batch, in data set order, with the test transform."""
    dataset = build_dataset(cfg, name, is_train=False)
    dataset.transform = build_transform(cfg, is_train=False, dataset=name)
    return _loader(cfg, dataset, torch.utils.data.SequentialSampler(dataset), 1, num_workers)


def _loader(cfg, dataset: Dataset, sampler: Sampler, batch: int, num_workers: int | None = None) -> DataLoader:
    workers = int(cfg.DATALOADER.NUM_WORKERS if num_workers is None else num_workers)
    pin = bool(cfg.DATALOADER.PIN_MEMORY and torch.cuda.is_available())
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_examples,
        pin_memory=pin,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=_worker_init if workers > 0 else None,
    )


__all__ = [
    "TrainBatch",
    "TransformedDataset",
    "InfiniteSeededSampler",
    "build_dataset",
    "build_reader",
    "build_train_loader",
    "build_test_loader",
    "datasets_root",
]
