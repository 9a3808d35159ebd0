"""A plain (non-editable) install finds the built-in recipes: they ship inside the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_builtin_recipes_and_loads_them(tmp_path: Path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("peftkit-*.whl")
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
