"""Find the shipped small model (config + weights) in a source checkout or an installed package, without ROS.

Why a helper: the node, `panopticdepth bag` and `panopticdepth predict` all default to the same model, and it
lives in different places depending on how the project was installed: the repository root (editable install),
``<prefix>/share/panopticdepth_ros`` (pip or ``colcon build`` via setup.py's data_files) or the share directory
ament reports (the node passes it in). Nothing is downloaded.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

PACKAGE_NAME = "panopticdepth_ros"
#: Relative to a model root (the repository root or share/panopticdepth_ros).
DEFAULT_CONFIG = Path("config/synthetic/PanopticDepth-R18-synthetic-small.yaml")
DEFAULT_WEIGHTS = Path("models/panopticdepth_synth_small.safetensors")


class ModelFilesError(FileNotFoundError):
    """The default model is not where it should be; the message lists every place searched."""


def model_roots(extra_roots: Iterable[str | Path] = ()) -> list[Path]:
    """Folders that may hold ``config/`` and ``models/``, most specific first, without duplicates."""
    here = Path(__file__).resolve()
    candidates = [Path(p) for p in extra_roots]
    candidates.append(here.parents[2])  # source checkout: <repo>/panopticdepth_core/inference/model_files.py
    # installed: <prefix>/lib/pythonX.Y/site-packages/panopticdepth_core/inference/model_files.py
    if len(here.parents) > 5:
        candidates.append(here.parents[5] / "share" / PACKAGE_NAME)
    candidates.append(Path(sys.prefix) / "share" / PACKAGE_NAME)
    roots: list[Path] = []
    for candidate in candidates:
        if candidate not in roots:
            roots.append(candidate)
    return roots


def default_model_files(extra_roots: Iterable[str | Path] = ()) -> tuple[Path, Path]:
    """(config_path, weights_path) of the shipped small model: the first root that holds both.

    ``extra_roots`` are searched first (the node passes ament's share directory). Raises ModelFilesError naming
    what is missing where, and how to get a model.
    """
    roots = model_roots(extra_roots)
    report = []
    for root in roots:
        config, weights = root / DEFAULT_CONFIG, root / DEFAULT_WEIGHTS
        if config.is_file() and weights.is_file():
            return config, weights
        missing = [str(p.relative_to(root)) for p in (config, weights) if not p.is_file()]
        report.append(f"{root} (missing {' and '.join(missing)})")
    raise ModelFilesError(
        "the shipped model was not found; searched: " + "; ".join(report)
        + f". Train it into {DEFAULT_WEIGHTS} (`panopticdepth train --config-file {DEFAULT_CONFIG}`), or pass the "
        "weights (and config) explicitly."
    )
