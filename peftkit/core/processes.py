"""Which process this is, when several train together (``torchrun``, ``accelerate launch``):
one rule for the main job and the callbacks. Both launchers set ``RANK`` and ``WORLD_SIZE``; the
Trainer's ``is_world_process_zero`` is the same rank 0."""

from __future__ import annotations

import os


def is_main_process() -> bool:
    """The process that writes files: rank 0, or the only one."""
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    """How many processes train together (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))
