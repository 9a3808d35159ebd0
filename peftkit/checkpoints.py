"""Checkpoints of `peftkit train` and what ``--resume`` continues from.

A run that saves (``training.save``) writes the Trainer's checkpoints to ``checkpoints/`` in
its staging folder, and the best adapter beside them; the staging folder becomes the output
when the run ends. A killed run leaves its staging folder behind: ``--resume`` continues from
its last complete checkpoint (optimizer, scheduler, data order, random state and the callbacks'
progress), and a new run without ``--resume`` or ``--overwrite`` is refused rather than
throwing that work away.
"""

from __future__ import annotations

import re
from pathlib import Path

from peftkit.errors import RecipeError

CHECKPOINTS = "checkpoints"
BEST_ADAPTER = "best-adapter"
"""Early stopping's best adapter, kept with the checkpoints so that a resume can restore it."""
_NAME = re.compile(r"^checkpoint-(\d+)$")
_COMPLETE = "trainer_state.json"
"""Written last into a checkpoint: one without it was cut short."""


def last_checkpoint(folder: Path) -> Path | None:
    """The complete checkpoint with the highest step in ``folder``; None when there is none."""
    if not folder.is_dir():
        return None
    found = [
        (int(match.group(1)), path)
        for path in folder.iterdir()
        if (match := _NAME.match(path.name)) and (path / _COMPLETE).is_file()
    ]
    return max(found)[1] if found else None


def find_checkpoint(resume: str | Path, target: Path, staging: Path) -> Path:
    """The checkpoint ``--resume`` names: ``auto`` for the last one of a killed run of this
    output (its staging folder), else of the output itself; or a checkpoint folder, or a
    folder of them."""
    if str(resume) == "auto":
        for place in (staging, target):
            found = last_checkpoint(place / CHECKPOINTS)
            if found is not None:
                return found
        raise RecipeError(
            f"--resume auto: no checkpoint of --output {target} to continue. Fix: run without "
            "--resume (with training.save=steps a run writes checkpoints to resume from)."
        )
    path = Path(resume).expanduser().resolve()
    if (path / _COMPLETE).is_file():
        return path
    found = last_checkpoint(path) or last_checkpoint(path / CHECKPOINTS)
    if found is None:
        raise RecipeError(
            f"--resume {resume}: not a checkpoint (a checkpoint-N folder with {_COMPLETE}), nor "
            "a folder holding one. Fix: pass --resume auto, or the path of a checkpoint-N "
            "folder."
        )
    return found


def check_unfinished(target: Path, staging: Path, overwrite: bool) -> None:
    """Refuse to start over on a killed run's checkpoints unless asked to."""
    found = last_checkpoint(staging / CHECKPOINTS)
    if found is None or overwrite:
        return
    raise RecipeError(
        f"--output {target}: a run of this output was stopped after {found.name} and can "
        "continue from there. Fix: add --resume auto to continue it, or --overwrite to start over."
    )
