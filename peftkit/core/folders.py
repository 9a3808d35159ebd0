"""The folders peftkit writes, one rule for all of them: an output folder of ``train``,
``merge`` and ``demo``, and early stopping's ``save_best_to``. A folder is replaced only when
peftkit wrote every file in it, and it is swapped in whole.

The folder carries :data:`MARKER`, which lists every file peftkit wrote there with its size and
the hash of its content (:func:`inventory`); a folder holding anything else (a file added
anywhere in it, or one of peftkit's files edited since, even to the same size and with its old
modification time) is refused, even with ``--overwrite`` (:func:`foreign_files`,
:func:`check_replaceable`). New contents are written beside the folder, flushed, and exchanged
with it in one step (:func:`swap_in`), so that a crash leaves the old folder or the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from peftkit.core.errors import RecipeError

MARKER = ".peftkit-output.json"
"""Written into every folder peftkit writes: which command wrote it and every file it holds."""

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def check_replaceable(target: Path, flag: str) -> bool:
    """The one rule for replacing a folder peftkit writes (an output, early stopping's
    ``save_best_to``): refuse a file, and a folder holding anything its marker does not list
    as peftkit wrote it. True when ``target`` holds an earlier peftkit folder, False when
    there is nothing to replace."""
    if target.exists() and not target.is_dir():
        raise RecipeError(f"{flag}: a file, not a folder. Fix: choose a folder name.")
    if not target.is_dir() or not any(target.iterdir()):
        return False
    foreign = foreign_files(target)
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise RecipeError(
            f"{flag}: the folder holds {', '.join(foreign[:5])}{more}, which peftkit did not "
            "write (or which changed since); peftkit never replaces what you made, even with "
            "--overwrite. Fix: choose a new folder, or move those files away first."
        )
    return True


def inventory(folder: Path) -> dict[str, list[int | str]]:
    """Every file under ``folder`` with its size and the SHA-256 of its content (of its target
    path, for a link), recorded when peftkit writes the folder. The content, not the
    modification time: an edit that keeps a file's size and time (an editor or a copy that
    preserves times, two writes within the clock's resolution) must still count as an edit."""
    found: dict[str, list[int | str]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() or path.is_symlink():
            found[path.relative_to(folder).as_posix()] = [path.lstat().st_size, _digest(path)]
    return found


def foreign_files(folder: Path, marker: str = MARKER) -> list[str]:
    """The files of ``folder`` that peftkit did not write as they are now: not listed in the
    :func:`inventory` that the JSON file ``marker`` in it holds under ``"files"``, or listed
    with another size or content. All of them when there is no readable marker."""
    try:
        recorded = json.loads((folder / marker).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() or p.is_symlink()]
    names = [p.relative_to(folder).as_posix() for p in files]
    if not isinstance(recorded, dict):
        return names or sorted(p.name for p in folder.iterdir())
    return [
        name
        for name, path in zip(names, files, strict=True)
        if name != marker and not _as_recorded(path, recorded.get(name))
    ]


def _as_recorded(path: Path, entry: Any) -> bool:
    """Whether ``path`` has the size and content its inventory ``entry`` records (the size is
    compared first, so that a file of another size is not read)."""
    if not isinstance(entry, list) or len(entry) != 2:
        return False
    return entry[0] == path.lstat().st_size and entry[1] == _digest(path)


def _digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks; of the target path for a symbolic link."""
    digest = hashlib.sha256()
    if path.is_symlink():
        digest.update(os.fsencode(os.readlink(path)))
        return digest.hexdigest()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_marker(folder: Path, command: str, details: dict[str, Any] | None = None) -> None:
    """Flush ``folder`` and write :data:`MARKER` into it: the command and every file it holds,
    which is what lets a later command replace the folder (:func:`check_replaceable`)."""
    fsync_tree(folder)
    marker = {"command": command, **(details or {}), "files": inventory(folder)}
    (folder / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
    fsync_tree(folder)


def swap_in(staging: Path, target: Path) -> None:
    """Put the finished ``staging`` folder at ``target``: an earlier ``target`` (the caller
    has checked that peftkit wrote it) is exchanged out in one step and removed only once the
    new one is in place, so a crash leaves the old folder or the new one, never neither."""
    if target.exists():
        exchange(staging, target)  # the staging path now holds the earlier folder
        shutil.rmtree(staging)
    else:
        os.rename(staging, target)
    fsync_dir(target.parent)


def exchange(a: Path, b: Path) -> None:
    """Swap two folders: one ``renameat2(RENAME_EXCHANGE)`` on Linux, so that readers see the
    old folder or the new one, never neither; elsewhere two renames (briefly absent)."""
    renameat2 = _renameat2()
    if renameat2 is not None:
        result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
        if result == 0:
            return
    old = b.with_name(f".{b.name}.old-{os.getpid()}")
    os.rename(b, old)
    os.rename(a, b)
    os.rename(old, a)


def _renameat2() -> Any:
    """libc's ``renameat2`` (Linux), or None: no ctypes, no C library (Windows), or a libc
    without it (macOS, musl before 1.2.3)."""
    try:
        import ctypes
        import ctypes.util
    except ImportError:
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    try:
        return getattr(ctypes.CDLL(libc_name, use_errno=True), "renameat2", None)
    except OSError:
        return None


def fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` to disk, so that a swap never exposes empty files."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
