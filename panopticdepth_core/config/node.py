"""A small, strict, attribute-style configuration tree (the yacs/Detectron2 ``CfgNode`` idea, without their deps).

Why strict: a misspelt key in an experiment file silently falling back to a default wastes a GPU-week.
Every merge therefore rejects unknown keys and values whose type does not match the default, naming the
full dotted key and the file it came from.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration file, key or value is invalid; the message names which and why."""


_SCALAR_TYPES = (bool, int, float, str, type(None))
_SEQ_TYPES = (list, tuple)


class CfgNode(dict):
    """Nested dictionary with attribute access, freezing and strict merging."""

    _FROZEN = "__frozen__"

    def __init__(self, init: dict | None = None) -> None:
        super().__init__()
        object.__setattr__(self, CfgNode._FROZEN, False)
        for key, value in (init or {}).items():
            self[key] = CfgNode(value) if isinstance(value, dict) and not isinstance(value, CfgNode) else value

    # ---- attribute access -------------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as exc:
            raise AttributeError(name) from exc

    def __setattr__(self, name: str, value: Any) -> None:
        if self.is_frozen():
            raise ConfigError(f"cannot set {name!r}: the config is frozen")
        self[name] = CfgNode(value) if isinstance(value, dict) and not isinstance(value, CfgNode) else value

    def __deepcopy__(self, memo: dict) -> CfgNode:
        out = CfgNode({k: copy.deepcopy(v, memo) for k, v in self.items()})
        return out

    # ---- freezing -----------------------------------------------------------------------------------------
    def is_frozen(self) -> bool:
        return object.__getattribute__(self, CfgNode._FROZEN)

    def freeze(self, frozen: bool = True) -> CfgNode:
        object.__setattr__(self, CfgNode._FROZEN, frozen)
        for value in self.values():
            if isinstance(value, CfgNode):
                value.freeze(frozen)
        return self

    def defrost(self) -> CfgNode:
        return self.freeze(False)

    def clone(self) -> CfgNode:
        return copy.deepcopy(self)

    # ---- conversion ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {k: (v.to_dict() if isinstance(v, CfgNode) else _plain(v)) for k, v in self.items()}

    def dump(self) -> str:
        """YAML text that ``merge_from_file`` reads back to an equal config."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def walk(self, prefix: str = "") -> Iterator[tuple[str, Any]]:
        for key, value in self.items():
            full = f"{prefix}{key}"
            if isinstance(value, CfgNode):
                yield from value.walk(full + ".")
            else:
                yield full, value

    # ---- merging ------------------------------------------------------------------------------------------
    def merge_from_file(self, path: str | Path) -> CfgNode:
        """Merge a YAML file, following ``_BASE_`` (a path relative to the file, or a list of them)."""
        merged = load_yaml_with_base(Path(path))
        self.merge_from_dict(merged, source=str(path))
        return self

    def merge_from_dict(self, data: dict, source: str = "<dict>") -> CfgNode:
        _merge_into(self, data, prefix="", source=source)
        return self

    def merge_from_list(self, pairs: Iterable[str]) -> CfgNode:
        """Merge ``KEY VALUE KEY VALUE ...`` command-line overrides (values parsed as Python literals)."""
        items = list(pairs)
        if len(items) % 2:
            raise ConfigError(f"overrides must come as KEY VALUE pairs; got an odd count: {items}")
        for key, raw in zip(items[0::2], items[1::2]):
            node: CfgNode = self
            parts = key.split(".")
            for i, part in enumerate(parts[:-1]):
                child = node.get(part)
                if not isinstance(child, CfgNode):
                    raise ConfigError(f"unknown config key {'.'.join(parts[: i + 1])!r} (from override {key!r})")
                node = child
            leaf = parts[-1]
            if leaf not in node:
                raise ConfigError(f"unknown config key {key!r} (from the command line)")
            if self.is_frozen():
                raise ConfigError(f"cannot override {key!r}: the config is frozen")
            dict.__setitem__(node, leaf, _checked_value(node[leaf], _parse_literal(raw), key, "the command line"))
        return self


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _parse_literal(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def _checked_value(default: Any, value: Any, key: str, source: str) -> Any:
    """Coerce ``value`` to the type of ``default`` where that is lossless; otherwise raise naming the key."""
    if isinstance(default, CfgNode):
        raise ConfigError(f"config key {key!r} is a section; {source} gives it a value {value!r}")
    if isinstance(value, str) and not isinstance(default, str):
        value = _parse_literal(value)
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, _SEQ_TYPES):
        if isinstance(value, _SEQ_TYPES):
            return type(default)(_to_tuples(v) for v in value) if isinstance(default, tuple) else list(value)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            # Detectron2 accepts a scalar where a one-element list is meant (e.g. MIN_SIZE_TRAIN: 1024).
            return type(default)([value])
    raise ConfigError(
        f"config key {key!r} expects {type(default).__name__} (default {default!r}); "
        f"{source} gives {type(value).__name__} {value!r}"
    )


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value


def _merge_into(node: CfgNode, data: dict, prefix: str, source: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: section {prefix or '<root>'!r} must be a mapping, got {type(data).__name__}")
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in node:
            raise ConfigError(f"{source}: unknown config key {full!r}")
        current = node[key]
        if isinstance(current, CfgNode):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: config key {full!r} is a section, got {value!r}")
            _merge_into(current, value, full + ".", source)
        else:
            dict.__setitem__(node, key, _checked_value(current, value, full, source))


def load_yaml_with_base(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a YAML file and recursively merge the files named by its ``_BASE_`` key underneath it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: _BASE_ inheritance loops back to itself")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    bases = data.pop("_BASE_", None)
    if bases is None:
        return data
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else list(bases):
        base_path = Path(base) if Path(base).is_absolute() else path.parent / base
        _deep_update(merged, load_yaml_with_base(base_path, _seen + (path.resolve(),)))
    _deep_update(merged, data)
    return merged


def _deep_update(into: dict, other: dict) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_update(into[key], value)
        else:
            into[key] = value
