"""Write an adapter (or model) folder atomically: readers see the old folder or the new one,
never a half-written one, even if the process is killed mid-write.

The new folder is written and fsynced beside the target, then swapped in with one
``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere two renames (the target is briefly absent, but
never incomplete). A marker file records what was saved, and a folder without it is never
replaced: peftkit does not overwrite what a user made.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

MARKER = "peftkit_best.json"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def check_target(target: Path) -> None:
    """Refuse a target that exists and was not written by peftkit."""
    if target.exists() and not (target / MARKER).is_file():
        raise FileExistsError(
            f"save_best_to={str(target)!r} exists and was not written by peftkit; "
            "refusing to replace it. Fix: choose a new folder or move this one away."
        )


def save_atomically(model: Any, target: str | Path, info: dict[str, Any]) -> Path:
    """``model.save_pretrained`` into ``target`` atomically, with ``info`` in the marker file."""
    target = Path(target)
    check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.staging-*"):  # left by a killed writer
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        (staging / MARKER).write_text(json.dumps(info, indent=2))
        _fsync_tree(staging)
        if target.exists():
            _exchange(staging, target)  # staging now holds the previous version
            shutil.rmtree(staging)
        else:
            os.rename(staging, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _exchange(a: Path, b: Path) -> None:
    libc_name = ctypes.util.find_library("c")
    renameat2 = getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None)
    if renameat2 is not None:
        result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
        if result == 0:
            return
    # No atomic exchange here (non-Linux or an old kernel): swap with two renames.
    old = b.with_name(f".{b.name}.old-{os.getpid()}")
    os.rename(b, old)
    os.rename(a, b)
    os.rename(old, a)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
