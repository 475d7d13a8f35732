"""The config system: _BASE_ inheritance, KEY VALUE overrides, strict rejection of unknown keys and wrong types."""

from __future__ import annotations

from pathlib import Path

import pytest

from panopticdepth_core.config import ConfigError, get_default_config, load_config


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_base_inheritance_and_override_order(tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", "MODEL:\n  DEPTH_ON: True\n  RESNETS:\n    DEPTH: 18\nSOLVER:\n  BASE_LR: 0.5\n")
    (tmp_path / "sub").mkdir()
    child = _write(tmp_path / "sub" / "child.yaml", "_BASE_: ../base.yaml\nSOLVER:\n  BASE_LR: 0.25\n")
    cfg = load_config(child, ["SOLVER.MAX_ITER", "7", "OUTPUT_DIR", "/tmp/x"])
    assert cfg.MODEL.DEPTH_ON is True and cfg.MODEL.RESNETS.DEPTH == 18  # from the base
    assert cfg.SOLVER.BASE_LR == 0.25  # child wins over base
    assert cfg.SOLVER.MAX_ITER == 7 and cfg.OUTPUT_DIR == "/tmp/x"  # command line wins over files
    assert cfg.is_frozen()


def test_unknown_key_in_file_is_named_with_the_file(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.yaml", "MODEL:\n  POSITION_HEAD:\n    THING:\n      NUM_CLASES: 8\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*MODEL\.POSITION_HEAD\.THING\.NUM_CLASES"):
        load_config(bad)


def test_wrong_type_is_rejected_with_the_key() -> None:
    with pytest.raises(ConfigError, match="SOLVER.MAX_ITER"):
        load_config(None, ["SOLVER.MAX_ITER", "'many'"])
    with pytest.raises(ConfigError, match="unknown config key 'MODEL.NOPE'"):
        load_config(None, ["MODEL.NOPE", "1"])
    with pytest.raises(ConfigError, match="odd"):
        load_config(None, ["MODEL.DEPTH_ON"])


def test_tuple_strings_and_int_to_float_are_coerced(tmp_path: Path) -> None:
    cfg_file = _write(tmp_path / "c.yaml", 'MODEL:\n  KERNEL_HEAD:\n    INSTANCE_SCALES: "((1, 8), (4, 16), (8, 32), (16, 64), (32, 2048),)"\nSOLVER:\n  BASE_LR: 1\n')
    cfg = load_config(cfg_file)
    assert cfg.MODEL.KERNEL_HEAD.INSTANCE_SCALES[1] == (4, 16)
    assert isinstance(cfg.SOLVER.BASE_LR, float)


def test_semantic_validation_names_the_key() -> None:
    with pytest.raises(ConfigError, match="MODEL.RESNETS.DEPTH"):
        load_config(None, ["MODEL.RESNETS.DEPTH", "42"])
    with pytest.raises(ConfigError, match="INSTANCE_SCALES"):
        load_config(None, ["MODEL.KERNEL_HEAD.INSTANCE_SCALES", "((1, 2),)"])


def test_dump_round_trips(tmp_path: Path) -> None:
    cfg = load_config(None, ["MODEL.DEPTH_ON", "True", "SOLVER.BASE_LR", "0.003"])
    dumped = _write(tmp_path / "dump.yaml", cfg.dump())
    again = load_config(dumped)
    assert again.to_dict() == cfg.to_dict()


def test_missing_file_and_base_loop(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    _write(tmp_path / "a.yaml", "_BASE_: b.yaml\n")
    _write(tmp_path / "b.yaml", "_BASE_: a.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "a.yaml")


def test_frozen_config_cannot_change() -> None:
    cfg = load_config(None)
    with pytest.raises(ConfigError):
        cfg.OUTPUT_DIR = "x"
    assert get_default_config().OUTPUT_DIR == "./output"  # defaults untouched
