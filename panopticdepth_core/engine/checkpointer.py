"""Training checkpoints: written atomically, the last K kept, everything needed to resume exactly.

A checkpoint holds model, optimizer, scheduler, grad-scaler and RNG states plus the iteration (which is also the
data position: the train loader is deterministic in the iteration). It is written to a temporary file in the same
folder and renamed, so a run killed mid-write never leaves a truncated ``model_*.pth`` that ``--resume`` would
pick. Everything in it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

_PERIODIC = re.compile(r"^model_(\d{7})\.pth$")


def rng_state() -> dict:
    """Python, NumPy, torch (and CUDA) RNG states as tensors/plain types (safe for weights_only loading)."""
    np_state = np.random.get_state()
    py_version, py_internal, _ = random.getstate()
    state = {
        "python": list(py_internal),
        "python_version": py_version,
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    internal = tuple(int(v) for v in state["python"])
    random.setstate((state["python_version"], internal, None))
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: object, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        os.fsync(dir_fd)
        os.close(dir_fd)
    except OSError:
        pass


class Checkpointer:
    """Save and find training checkpoints in ``output_dir``."""

    def __init__(self, output_dir: str | Path, max_to_keep: int = 3) -> None:
        self.output_dir = Path(output_dir)
        self.max_to_keep = max_to_keep

    def save(self, name: str, state: dict) -> Path:
        """Write ``{name}.pth`` atomically; record it in ``last_checkpoint``; prune old periodic ones."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / f"{name}.pth"
        atomic_torch_save(state, path)
        marker = self.output_dir / "last_checkpoint"
        tmp = marker.with_name(".last_checkpoint.tmp")
        tmp.write_text(path.name)
        os.replace(tmp, marker)
        self._prune()
        return path

    def _prune(self) -> None:
        periodic = sorted(p for p in self.output_dir.iterdir() if _PERIODIC.match(p.name))
        for old in periodic[: max(0, len(periodic) - self.max_to_keep)]:
            old.unlink(missing_ok=True)

    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        marker = self.output_dir / "last_checkpoint"
        if marker.is_file():
            candidate = self.output_dir / marker.read_text().strip()
            if candidate.is_file():
                return candidate
        periodic = sorted(p for p in self.output_dir.glob("model_*.pth") if _PERIODIC.match(p.name))
        return periodic[-1] if periodic else None

    @staticmethod
    def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - re-raised with the path
            raise RuntimeError(f"cannot load checkpoint {path}: {exc}") from exc
