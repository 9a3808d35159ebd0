"""Output folders, one rule for every command that writes results (``train``, ``merge``,
``demo``), so that nothing a user made is ever overwritten or lost.

A command first checks its output against its inputs (:func:`check_output`, which writes
nothing), then loads and checks every input, then writes its results into a staging folder
beside the output, and swaps that folder in only when it has succeeded
(:meth:`OutputFolder.commit`). A run refused for bad data, a crash or Ctrl-C therefore leaves an
existing output exactly as it was, and no half-written folder is left to block a retry.

Whether a folder may be replaced at all is the rule of every folder peftkit writes
(:func:`peftkit.core.folders.check_replaceable`: only when peftkit wrote every file in it). An
earlier output is replaced only with ``--overwrite``, or by a ``--resume`` that continues that
output's own run. An output that equals, holds or lies inside an input (the data, the model, the
adapter) is refused too, as is the folder the command runs in.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from peftkit.core.errors import RecipeError
from peftkit.core.folders import check_replaceable, swap_in, write_marker
from peftkit.run.checkpoints import CHECKPOINTS, last_checkpoint

log = logging.getLogger(__name__)

ADAPTER, METRICS, PLOT, RECIPE = "adapter", "metrics.json", "training.png", "recipe.yaml"
RESULTS = (ADAPTER, METRICS, PLOT, RECIPE)
"""What `peftkit train` always writes in its output folder."""
LOGS = "logs"
"""Where TensorBoard writes, with training.report_to: tensorboard."""
NAME_MAX = 255 - len(".") - len(".peftkit-staging")
"""Longest output folder name whose staging folder beside it is still a legal file name."""
STAGING = ".peftkit-staging"
"""Suffix of the folder a command writes into before its results are swapped in."""


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
    clash = _clash_with(target, inputs)
    if clash:
        raise RecipeError(
            f"{flag}: the output {clash}, which the command reads; peftkit refuses it with or "
            "without --overwrite. Fix: pass an --output folder outside your inputs, e.g. "
            "--output runs/first."
        )
    _check_parent(target, flag)
    if check_replaceable(target, flag) and not overwrite:
        raise RecipeError(
            f"{flag}: the folder holds an earlier peftkit output. Fix: choose a new folder, or "
            "pass --overwrite to replace it."
        )
    return target


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
    clash = _clash_with(target, inputs)
    if clash:
        raise RecipeError(
            f"{field}: {path} {clash}, which the command reads. Fix: set {field}=null, or a "
            "folder outside your inputs."
        )


def _clash_with(target: Path, inputs: Mapping[str, str | Path | None]) -> str:
    """How ``target`` overlaps the first input it touches ("is --data train.jsonl"), or ''."""
    for name, value in inputs.items():
        clash = _clash(target, value)
        if clash:
            return f"{clash} {name} {value}"
    return ""


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
