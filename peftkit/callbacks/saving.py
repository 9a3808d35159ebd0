"""Write an adapter (or model) folder atomically: readers see the old folder or the new one,
never a half-written one, even if the process is killed mid-write.

The new folder is written and fsynced beside the target, then swapped in the way
:mod:`peftkit.core.folders` swaps every folder peftkit writes, under the same rule: the folder
carries the marker, which lists every file peftkit wrote, and a folder holding anything else (a
file a user added, or one edited since) is never replaced. ``peftkit_best.json`` says what was
saved (the metric, its value, the step).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from peftkit.core.folders import check_replaceable, swap_in, write_marker

MARKER = "peftkit_best.json"


def check_target(target: Path, field: str = "save_best_to") -> None:
    """Refuse a target that holds anything peftkit did not write (the outputs' rule)."""
    check_replaceable(target, f"{field}: {target}")


def save_atomically(model: Any, target: str | Path, info: dict[str, Any]) -> Path:
    """``model.save_pretrained`` into ``target`` atomically, with ``info`` in the marker file."""
    target = Path(target)
    check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.staging-*"):  # left by a killed writer
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would make the saved adapter private
    try:
        model.save_pretrained(staging)
        (staging / MARKER).write_text(json.dumps(info, indent=2))
        write_marker(staging, "save_best", info)
        swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
