"""The wheel: a plain (non-editable) install finds the built-in recipes, and it carries the
license, ``py.typed``, classifiers, and every package peftkit imports as a dependency; the
lowest-versions constraints match the declared lower bounds."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
USER_EXTRAS = ("qlora", "eval", "demo")
"""Extras a user installs; ``dev`` (test and docs tools) is not one peftkit's code may need."""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (built,) = dist.glob("peftkit-*.whl")
    return built


@pytest.fixture(scope="module")
def metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(archive.read(name).decode())


def _requirements(metadata: Message) -> list[Requirement]:
    return [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]


def _extras(requirement: Requirement) -> set[str]:
    """The extras a Requires-Dist line belongs to (empty for a core dependency)."""
    return set(re.findall(r"extra\s*==\s*[\"']([^\"']+)[\"']", str(requirement.marker or "")))


def test_wheel_ships_builtin_recipes_and_loads_them(tmp_path: Path, wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert {
            f"peftkit/builtin_recipes/{n}.yaml"
            for n in ("json-output", "domain-adaptation", "qlora-budget")
        } <= names
        archive.extractall(tmp_path / "site")
    code = (
        "import peftkit; from peftkit import recipes\n"
        "print(peftkit.__file__)\n"
        "print(recipes.load('json-output').recipe)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
        capture_output=True,
        text=True,
        check=True,
    )
    module_file, loaded = run.stdout.split()
    assert module_file.startswith(str(tmp_path / "site"))
    assert loaded == "json-output"


def test_wheel_has_the_license_py_typed_and_classifiers(wheel: Path, metadata: Message):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        license_name = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
        shipped = archive.read(license_name).decode()
    assert "peftkit/py.typed" in names  # type checkers read peftkit's annotations
    assert shipped == (ROOT / "LICENSE").read_text()
    assert "Apache License" in shipped and "Version 2.0, January 2004" in shipped
    assert metadata["License-Expression"] == "Apache-2.0"
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3 :: Only" in classifiers
    assert any(c.startswith("Topic :: ") for c in classifiers)
    low = metadata["Requires-Python"].removeprefix(">=")
    assert f"Programming Language :: Python :: {low}" in classifiers


def _imported_packages() -> dict[str, set[str]]:
    """Top-level modules imported anywhere in peftkit (in functions too) that are neither the
    standard library nor peftkit, with the files importing each."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "peftkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("peftkit", "__future__"):
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_a_declared_dependency(metadata: Message):
    """Each third-party package peftkit imports is a dependency, or one of a user extra; a
    package that only comes along with another (pyarrow with datasets) does not count."""
    declared = {
        canonicalize_name(r.name)
        for r in _requirements(metadata)
        if not _extras(r) or _extras(r) & set(USER_EXTRAS)
    }
    distributions = importlib.metadata.packages_distributions()
    imported = _imported_packages()
    assert {"torch", "transformers", "yaml", "safetensors"} <= set(imported)  # the scan works
    undeclared = {
        module: sorted(files)
        for module, files in imported.items()
        if not {canonicalize_name(d) for d in distributions.get(module, [module])} & declared
    }
    assert not undeclared, f"imported but not in pyproject.toml's dependencies: {undeclared}"


def test_lowest_constraints_are_the_declared_lower_bounds(metadata: Message):
    """constraints/lowest.txt (installed by `make test-lowest`) pins every core dependency and
    the qlora extra at exactly the lower bound pyproject.toml declares, and nothing else of
    peftkit's at another version."""
    pins = {}
    for line in (ROOT / "constraints" / "lowest.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(requirement.name)] = spec.version
    lower = {}
    for requirement in _requirements(metadata):
        bounds = [s.version for s in requirement.specifier if s.operator == ">="]
        assert len(bounds) == 1, f"{requirement}: one lower bound (>=) expected"
        extras = _extras(requirement)
        name = canonicalize_name(requirement.name)
        if not extras or "qlora" in extras:
            assert name in pins, f"{requirement.name} has no pin in constraints/lowest.txt"
        if name in pins:
            lower[name] = bounds[0]
    for name, version in lower.items():
        assert Version(pins[name]) == Version(version), (
            f"{name}: constraints/lowest.txt pins {pins[name]}, pyproject.toml says >={version}"
        )
