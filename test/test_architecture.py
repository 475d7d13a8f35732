"""The layering of docs/architecture.md holds: each package imports only the layers below it.

Every module is imported in a fresh interpreter in which the forbidden packages cannot be imported at all, so an
import hidden inside a function body is caught as soon as a module-level path reaches it, and a module-level one
at once. (Imports inside functions that no import-time path reaches are checked by reading the source below.)
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Imported in the child interpreter: block the named top-level packages, then import the modules, and print
#: what could not be imported and why.
_CHILD = r"""
import importlib, json, sys

blocked, modules = json.loads(sys.argv[1])

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Block())
failures = {}
for module in modules:
    try:
        importlib.import_module(module)
    except Exception as error:
        failures[module] = f"{type(error).__name__}: {error}"
print(json.dumps(failures))
"""

ROS_PACKAGES = ["rclpy", "rcl_interfaces", "sensor_msgs", "sensor_msgs_py", "cv_bridge", "launch", "launch_ros",
                "ament_index_python", "rosbags"]


def _modules(package: str, skip: tuple[str, ...] = ()) -> list[str]:
    root = REPO / package
    names = [package]
    for info in pkgutil.walk_packages([str(root)], prefix=f"{package}."):
        if not info.name.endswith(skip):
            names.append(info.name)
    return sorted(names)


def _import_with_blocked(modules: list[str], blocked: list[str]) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps([blocked, modules])], cwd=REPO,
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _imported_names(path: Path) -> set[str]:
    """Top-level packages a source file imports anywhere (module level or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_core_is_a_leaf() -> None:
    """panopticdepth_core imports neither the ROS layer, nor the training scripts, nor anything of ROS."""
    modules = _modules("panopticdepth_core")
    assert len(modules) > 40  # the walk found the package
    failures = _import_with_blocked(modules, ["panopticdepth_ros", "training", *ROS_PACKAGES])
    assert failures == {}, failures
    for path in (REPO / "panopticdepth_core").rglob("*.py"):
        wrong = _imported_names(path) & {"panopticdepth_ros", "training", *ROS_PACKAGES}
        assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}"


def test_only_the_node_needs_rclpy() -> None:
    modules = _modules("panopticdepth_ros", skip=(".node",))
    failures = _import_with_blocked(modules, ["rclpy", "rcl_interfaces", "launch", "launch_ros", "training"])
    assert failures == {}, failures
    for path in (REPO / "panopticdepth_ros").rglob("*.py"):
        if path.name != "node.py":
            assert "rclpy" not in _imported_names(path), f"{path.relative_to(REPO)} imports rclpy"


@pytest.mark.parametrize("module", ["panopticdepth_ros.frame_pipeline", "panopticdepth_ros.worker",
                                    "panopticdepth_ros.params", "panopticdepth_ros.messages",
                                    "panopticdepth_ros.conversions", "panopticdepth_ros.diagnostics",
                                    "panopticdepth_ros.tf_poses"])
def test_the_per_frame_path_does_not_import_torch(module: str) -> None:
    """What runs per frame beside the predictor is numpy only (importing torch costs the node ~1 s at start)."""
    assert _import_with_blocked([module], ["torch", "torchvision"]) == {}


def test_training_is_scripts_not_an_installed_package() -> None:
    assert not (REPO / "training" / "__init__.py").exists()
    setup = (REPO / "setup.py").read_text()
    assert '"training"' not in setup and "'training'" not in setup
