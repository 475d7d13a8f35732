"""The install check: setup.py's requirements, every extra included, resolve on a Humble robot (Ubuntu 22.04:
Python 3.10, numpy 1.21.5, setuptools 59.6.0) and a Jazzy robot (Ubuntu 24.04: Python 3.12, numpy 1.26.4,
setuptools 68.1.2), x86_64 and aarch64, keeping the system's numpy (cv_bridge and other compiled ROS Python
packages link against it) and setuptools (colcon builds ament_python packages with it; setuptools >= 80 drops the
``[develop] script_dir`` of their setup.cfg). That is what README's robot install, a pip constraint file with the
system's versions, asks pip to do.

Why uv and not ``pip install --dry-run --python-version 3.10``: pip applies ``--python-version`` to wheel tags and
Requires-Python only and evaluates environment markers for the Python it runs on, so on 3.11 it applies
opencv-python-headless's ``numpy>=1.22.0; python_version >= "3.11"`` to a 3.10 target (and would skip 3.12-only
markers). ``uv pip compile --python-version --python-platform`` resolves for the target's markers. It needs the
package registry (CI reaches it); without uv outside CI the test is skipped, in CI (``CI`` set) it fails.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
#: distro -> (Python version, the system packages its Ubuntu release ships, manylinux tag of its glibc)
DISTROS = {
    "humble": ("3.10", {"numpy": "1.21.5", "setuptools": "59.6.0"}, "manylinux_2_35"),  # Ubuntu 22.04
    "jazzy": ("3.12", {"numpy": "1.26.4", "setuptools": "68.1.2"}, "manylinux_2_39"),  # Ubuntu 24.04
}
ARCHES = ("x86_64", "aarch64")


def declared_requirements(setup_py: Path = ROOT / "setup.py") -> tuple[list[str], dict[str, list[str]]]:
    """(install_requires, extras_require) read from setup.py's ``setup(...)`` call without running it."""
    tree = ast.parse(setup_py.read_text(encoding="utf-8"))
    call = next(node for node in ast.walk(tree)
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup")
    keywords = {kw.arg: kw.value for kw in call.keywords}
    return ast.literal_eval(keywords["install_requires"]), ast.literal_eval(keywords["extras_require"])


def _uv() -> str | None:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def test_setup_declares_ranges_that_keep_the_distro_numpy() -> None:
    """numpy's range admits both distros' numpy, and nothing is pinned: the package installs next to the robot's own
    builds (CI's pins live in constraints-ci.txt)."""
    required, extras = declared_requirements()
    parsed = [Requirement(r) for r in required + [r for reqs in extras.values() for r in reqs]]
    (numpy,) = [r for r in parsed if r.name == "numpy"]
    for _, system, _ in DISTROS.values():
        assert numpy.specifier.contains(system["numpy"]), (numpy, system)
    for requirement in parsed:
        assert not any(spec.operator in ("==", "===") for spec in requirement.specifier), requirement
    names = {Requirement(r).name.lower() for r in required}
    assert {"opencv-python-headless", "scipy", "torch", "torchvision", "rosbags"} <= names
    assert {"onnx", "eval", "test"} <= set(extras)


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("distro", sorted(DISTROS))
def test_requirements_resolve_with_the_distro_packages(distro: str, arch: str, tmp_path: Path) -> None:
    uv = _uv()
    if uv is None:
        if os.environ.get("CI"):
            pytest.fail("uv is not installed: install the test extra (pip install -e '.[test]')")
        pytest.skip("uv is not installed (pip install -e '.[test]')")
    python, system, manylinux = DISTROS[distro]
    required, extras = declared_requirements()
    requirements = tmp_path / "requirements.in"
    requirements.write_text("\n".join(required + sorted({r for reqs in extras.values() for r in reqs})) + "\n")
    constraints = tmp_path / "system.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in system.items()))  # as README's
    command = [uv, "pip", "compile", str(requirements), "--constraint", str(constraints), "--python-version", python,
               "--python-platform", f"{arch}-{manylinux}", "--only-binary", ":all:", "--no-header", "--no-annotate",
               "--quiet"]
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never", NO_COLOR="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert result.returncode == 0, (f"the requirements do not resolve for {distro} (Python {python}, {arch}) "
                                    f"without replacing its {system}:\n{result.stderr}")
    resolved = dict(line.split("==", 1) for line in result.stdout.splitlines() if "==" in line)
    assert {name: resolved.get(name) for name in system} == system, result.stdout
    for name in ("torch", "torchvision", "opencv-python-headless", "scipy", "rosbags", "onnxruntime", "motmetrics"):
        assert name in resolved, f"{name} missing from the resolution:\n{result.stdout}"
