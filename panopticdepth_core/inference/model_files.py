"""Which model to run: the one rule for the node, `panopticdepth bag`, `predict` and `extract --pseudo-labels`.

The rule (:func:`resolve_model`): no weights and no config -> the shipped small model; weights alone -> the config
stored in the weights file (every file we write carries one); weights and a config file -> that file. A config
without weights is refused rather than guessed. The shipped model lives in different places depending on how the
project was installed: the repository root (editable install), ``<prefix>/share/panopticdepth_ros`` (pip or
``colcon build`` via setup.py's data_files) or the share directory ament reports (the node passes it in).
Nothing is downloaded.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import CfgNode

PACKAGE_NAME = "panopticdepth_ros"
#: Relative to a model root (the repository root or share/panopticdepth_ros).
DEFAULT_CONFIG = Path("config/synthetic/PanopticDepth-R18-synthetic-small.yaml")
DEFAULT_WEIGHTS = Path("models/panopticdepth_synth_small.safetensors")


class ModelFilesError(FileNotFoundError):
    """A model file is missing or the files given do not make a model; the message names the flag or parameter."""


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


@dataclass(frozen=True)
class ResolvedModel:
    """The config (overrides applied, validated, frozen) and weights a caller should build its Predictor from."""

    cfg: CfgNode
    weights: Path
    config_source: str  # the YAML file, or "<weights> (embedded config)"


def resolve_model(config: str | Path | None, weights: str | Path | None, overrides: Sequence[str] = (),
                  extra_roots: Iterable[str | Path] = (), names: tuple[str, str] = ("--config", "--weights"),
                  ) -> ResolvedModel:
    """The model for a (config, weights) pair as a user gives them; see the module docstring for the rule.

    ``names`` are how the caller's user names the two (flags, or the node's parameters) for the errors. Raises
    ModelFilesError (missing files, a config without weights, weights without a stored config), or the
    ConfigError / CheckpointError of a config or weights file that cannot be read.
    """
    from ..checkpoint.io import checkpoint_config
    from ..config import load_config, validate_config

    config_name, weights_name = names
    if not weights:
        if config:
            raise ModelFilesError(f"{config_name} is set but {weights_name} is not; set both, or neither for the "
                                  "shipped model")
        try:
            config, weights = default_model_files(extra_roots)
        except ModelFilesError as error:
            raise ModelFilesError(f"{weights_name} is not set and {error}") from error
    weights = Path(weights).expanduser()
    if not weights.is_file():
        raise ModelFilesError(f"{weights_name}: file not found: {weights}")
    if config:
        config = Path(config).expanduser()
        if not config.is_file():
            raise ModelFilesError(f"{config_name}: file not found: {config}")
        return ResolvedModel(load_config(config, list(overrides)), weights, str(config))
    embedded = checkpoint_config(weights)
    if embedded is None:
        raise ModelFilesError(f"{config_name} is not set and {weights} carries no config; set {config_name} to the "
                              "YAML the weights were trained with")
    source = f"{weights} (embedded config)"
    cfg = embedded.clone().defrost()
    cfg.merge_from_list(list(overrides))
    validate_config(cfg, source=source)
    return ResolvedModel(cfg.freeze(), weights, source)
