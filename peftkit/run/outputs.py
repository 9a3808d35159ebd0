"""Output folders, one rule for every command that writes results (``train``, ``merge``,
``demo``), so that nothing a user made is ever overwritten or lost.

A command first checks its output against its inputs (:func:`check_output`, which writes
nothing), then loads and checks every input, then writes its results into a staging folder
beside the output, and swaps that folder in only when it has succeeded
(:meth:`OutputFolder.commit`). A run refused for bad data, a crash or Ctrl-C therefore leaves an
existing output exactly as it was, and no half-written folder is left to block a retry.

One rule decides whether a folder may be replaced (:func:`check_replaceable`), for output
folders and for every other folder peftkit writes (early stopping's ``save_best_to``): the
folder carries :data:`MARKER`, which lists every file peftkit wrote there with its size and the
hash of its content (:func:`inventory`), and a folder holding anything else (a file added
anywhere in it, or one of peftkit's files edited since, even to the same size and with its old
modification time) is refused, even with ``--overwrite`` (:func:`foreign_files`). An earlier
output is replaced only with ``--overwrite``, or by a ``--resume`` that continues that output's
own run. An output that equals, holds or lies inside an input (the data, the model, the
adapter) is refused too, as is the folder the command runs in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from peftkit.core.errors import RecipeError
from peftkit.run.checkpoints import CHECKPOINTS, last_checkpoint

log = logging.getLogger(__name__)

ADAPTER, METRICS, PLOT, RECIPE = "adapter", "metrics.json", "training.png", "recipe.yaml"
RESULTS = (ADAPTER, METRICS, PLOT, RECIPE)
"""What `peftkit train` always writes in its output folder."""
LOGS = "logs"
"""Where TensorBoard writes, with training.report_to: tensorboard."""
MARKER = ".peftkit-output.json"
"""Written into every output folder: which command wrote it and every file it holds."""
NAME_MAX = 255 - len(".") - len(".peftkit-staging")
"""Longest output folder name whose staging folder beside it is still a legal file name."""
STAGING = ".peftkit-staging"
"""Suffix of the folder a command writes into before its results are swapped in."""

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def output_path(output: str | Path) -> Path:
    """The absolute folder ``--output`` names, after refusing a name no folder can have."""
    if not str(output).strip():
        raise RecipeError("--output: empty. Fix: pass a folder name, e.g. --output runs/first.")
    named = Path(output).expanduser()
    if any(len(part.encode()) > NAME_MAX for part in named.parts):
        raise RecipeError(
            f"--output: a folder name longer than {NAME_MAX} bytes; the file system cannot hold "
            "it (with the staging folder beside it). Fix: choose a shorter name."
        )
    return named.resolve()


def check_output(
    output: str | Path, inputs: Mapping[str, str | Path | None], overwrite: bool
) -> Path:
    """Refuse an output that would lose or overwrite something; return its absolute path.

    ``inputs`` maps a name for people (``--data``) to a path; values that are not local paths
    (a hub id, None) are skipped.
    """
    flag = f"--output {output}"
    target = output_path(output)
    here = Path.cwd().resolve()
    if target == here or target in here.parents:
        which = "is" if target == here else "holds"
        raise RecipeError(
            f"{flag}: the output {which} the folder you are working in; peftkit never replaces "
            "it. Fix: pass a new folder, e.g. --output runs/first."
        )
    for name, value in inputs.items():
        clash = _clash(target, value)
        if clash:
            raise RecipeError(
                f"{flag}: the output {clash} {name} {value}, which the command reads; peftkit "
                "refuses it with or without --overwrite. Fix: pass an --output folder outside "
                "your inputs, e.g. --output runs/first."
            )
    _check_parent(target, flag)
    if check_replaceable(target, flag) and not overwrite:
        raise RecipeError(
            f"{flag}: the folder holds an earlier peftkit output. Fix: choose a new folder, or "
            "pass --overwrite to replace it."
        )
    return target


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


def check_other_output(
    path: str | Path, field: str, output: Path, inputs: Mapping[str, str | Path | None]
) -> None:
    """A second folder a command writes (early stopping's ``save_best_to``) must not lie in
    the output, which is replaced when the run ends, nor touch an input."""
    target = Path(path).expanduser().resolve()
    if target == output or output in target.parents:
        raise RecipeError(
            f"{field}: {path} lies inside --output {output}, which is replaced when the run "
            f"ends, so it would be lost. Fix: set {field}=null (OUTPUT/adapter is the best "
            "adapter), or a folder outside the output."
        )
    for name, value in inputs.items():
        clash = _clash(target, value)
        if clash:
            raise RecipeError(
                f"{field}: {path} {clash} {name} {value}, which the command reads. Fix: set "
                f"{field}=null, or a folder outside your inputs."
            )


def _clash(target: Path, value: str | Path | None) -> str:
    """How ``target`` overlaps the input ``value`` ('is', 'holds', 'lies inside'), or ''."""
    if value is None or not Path(value).expanduser().exists():
        return ""
    source = Path(value).expanduser().resolve()
    if source == target:
        return "is"
    if target in source.parents:
        return "holds"
    if source in target.parents:
        return "lies inside"
    return ""


def _check_parent(target: Path, flag: str) -> None:
    """The nearest existing folder above ``target`` must be a folder this process can write."""
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RecipeError(f"{flag}: {parent} is a file, not a folder. Fix: choose another path.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RecipeError(
            f"{flag}: cannot write in {parent} (permission denied). Fix: choose a folder you "
            "can write to."
        )


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


def staging_of(target: Path) -> Path:
    """The folder beside ``target`` that a command writes into until it succeeds."""
    return target.with_name(f".{target.name}{STAGING}")


class OutputFolder:
    """The staging folder of one command's results, swapped in by :meth:`commit`.

    Only the main process writes (``main_process``); under ``torchrun`` every rank computes the
    same staging path, which the Trainer is given as its output directory.
    """

    def __init__(
        self, target: Path, command: str, main_process: bool = True, resume: bool = False
    ) -> None:
        self.target = target
        self.command = command
        self.main_process = main_process
        self.resume = resume
        """Continue in the staging folder a killed run left, instead of starting it afresh."""
        self.staging = staging_of(target)
        self.replaces = target.is_dir() and any(target.iterdir())
        self._made: list[Path] = []

    def __enter__(self) -> OutputFolder:
        if self.main_process:
            self._open()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is not None:
            self.abandon("failed")

    def abandon(self, how: str) -> None:
        """Leave the target as it was. A run with checkpoints keeps its staging folder, which
        ``--resume`` continues from; anything else is removed."""
        checkpoint = last_checkpoint(self.staging / CHECKPOINTS) if self.main_process else None
        if checkpoint is None:
            self.discard()
            return
        log.warning(
            "the run %s after %s; its checkpoints are kept in %s: add --resume auto to the "
            "same command to continue from there.",
            how,
            checkpoint.name,
            self.staging,
        )

    def _open(self) -> None:
        missing = [p for p in (self.target.parent, *self.target.parent.parents) if not p.exists()]
        try:
            for folder in reversed(missing):
                folder.mkdir()
                self._made.append(folder)
            if self.staging.exists() and not self.resume:  # left by a run that was killed
                shutil.rmtree(self.staging)
            self.staging.mkdir(exist_ok=self.resume)
        except OSError as error:
            self.discard()
            raise RecipeError(
                f"--output {self.target}: cannot write beside it ({error.strerror}: "
                f"{error.filename}). Fix: choose a folder you can write to."
            ) from None

    def commit(self, details: dict[str, Any] | None = None) -> Path:
        """Swap the finished results in, replacing an earlier output; return the output."""
        if not self.main_process:
            return self.target
        write_marker(self.staging, self.command, details)
        swap_in(self.staging, self.target)
        return self.target

    def carry_over(self, earlier: Path, *names: str) -> None:
        """Copy ``names`` (checkpoints, tracker logs) of the ``earlier`` output that this run
        continues into the staging folder, so that the finished output still holds them."""
        if not self.main_process:
            return
        for name in names:
            if (earlier / name).is_dir() and not (self.staging / name).exists():
                shutil.copytree(earlier / name, self.staging / name, symlinks=True)

    def discard(self) -> None:
        """Remove the staging folder and any folder made for it; the target stays as it was."""
        if not self.main_process:
            return
        shutil.rmtree(self.staging, ignore_errors=True)
        for folder in reversed(self._made):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        self._made = []


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
