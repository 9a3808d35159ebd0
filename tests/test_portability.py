"""peftkit imports, and its main job runs, where POSIX-only modules (``resource``, ``fcntl``,
...) or libc's ``renameat2`` are missing, as on Windows: those are imported inside the function
that needs them, with a fallback, and the fallbacks are exercised here by taking the module
away."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from peftkit.core import folders
from peftkit.run import train

ROOT = Path(__file__).resolve().parents[1]

POSIX_ONLY = ("resource", "fcntl", "termios", "tty", "pty", "pwd", "grp", "posix", "syslog")
"""Standard modules that Windows lacks."""


def test_every_module_imports_when_peftkit_cannot_import_posix_only_modules():
    """A fresh interpreter in which an import of a POSIX-only module *by peftkit's own code*
    fails (third-party packages keep theirs: on Windows they take other paths), then every
    peftkit module is imported."""
    code = textwrap.dedent(
        f"""
        import builtins, importlib, pkgutil

        real_import = builtins.__import__

        def windows_import(name, globals=None, locals=None, fromlist=(), level=0):
            importer = (globals or {{}}).get("__name__") or ""
            if level == 0 and name.split(".")[0] in {POSIX_ONLY!r} and (
                importer == "peftkit" or importer.startswith("peftkit.")
            ):
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return real_import(name, globals, locals, fromlist, level)

        builtins.__import__ = windows_import
        import peftkit

        for module in pkgutil.walk_packages(peftkit.__path__, "peftkit."):
            if module.name != "peftkit.__main__":  # runs the CLI
                importlib.import_module(module.name)
        print("imported")
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[-1] == "imported"


def test_peak_memory_without_resource_is_none(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    measured = train._peak_memory_gb()
    assert measured is not None and measured > 0  # this process's peak RSS, in GB
    monkeypatch.setitem(sys.modules, "resource", None)  # `import resource` now fails
    assert train._peak_memory_gb() is None


@pytest.mark.parametrize("missing", ["ctypes", "libc"])
def test_folders_are_swapped_without_renameat2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str
):
    """No ctypes, or no C library to find (Windows): two renames do the swap."""
    if missing == "ctypes":
        monkeypatch.setitem(sys.modules, "ctypes", None)
        monkeypatch.setitem(sys.modules, "ctypes.util", None)
    else:
        monkeypatch.setattr("ctypes.util.find_library", lambda name: None)
    assert folders._renameat2() is None
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "new.txt").write_text("new")
    (b / "old.txt").write_text("old")
    folders.exchange(a, b)
    assert (b / "new.txt").read_text() == "new"
    assert (a / "old.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
