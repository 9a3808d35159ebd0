"""The harness of the bad-input corpus: each case builds its files in an empty folder, runs one
``peftkit`` command there, and must end as a user error (exit 2, a plain "error:" message that
names the problem, no traceback) with every file around it exactly as it was.

A case is data, not code: the files it writes, the command line, the words the message must
hold. ``{model}`` in a case's arguments is a copy of the tiny model inside the case's folder (so
that it is hashed with everything else); ``setup`` covers what files alone cannot (a read-only
folder, a previous run).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from train_helpers import assert_user_error, run_main

from peftkit.testing import write_data

Content = str | bytes | list[dict[str, Any]] | dict[str, Any]
"""A file's content: text, raw bytes, rows (written in the file type the name says), or a JSON
object."""


@dataclass(frozen=True)
class Case:
    """One bad input: the files it needs, the command, and what the message must name."""

    id: str
    args: tuple[str, ...]
    mentions: tuple[str, ...]
    files: dict[str, Content] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    model: bool = False
    """Copy the tiny model to ``model/`` (the arguments name it as ``{model}``)."""

    def param(self) -> Any:
        return pytest.param(self, id=self.id)


def write_files(folder: Path, files: dict[str, Content]) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        elif isinstance(content, dict):
            path.write_text(json.dumps(content), encoding="utf-8")
        else:
            write_data(path, content)


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with the hash of its content (files), its target (links) or
    its kind and permission bits (folders): equal snapshots mean nothing was touched."""
    found = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            found[key] = f"link -> {os.readlink(path)}"
        elif stat.S_ISDIR(mode):
            found[key] = f"folder {stat.S_IMODE(mode):o}"
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[key] = f"file {stat.S_IMODE(mode):o} {digest}"
    return found


def run_case(
    case: Case, folder: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> str:
    """Run ``case`` in ``folder``; assert a clean user error and an untouched folder. Returns
    the message, for extra checks."""
    if case.model:
        shutil.copytree(tiny_model_dir, folder / "model")
    write_files(folder, case.files)
    if case.setup is not None:
        case.setup(folder)
    before = snapshot(folder)
    monkeypatch.chdir(folder)
    args = [arg.replace("{model}", str(folder / "model")) for arg in case.args]
    code, _, err = run_main(monkeypatch, *args)
    assert_user_error(code, err, *case.mentions)
    assert snapshot(folder) == before, "the command changed files around it"
    return err
