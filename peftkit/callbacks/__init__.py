"""Callbacks that drop into any existing ``Trainer`` / ``SFTTrainer``.

    from peftkit import callbacks
    trainer.add_callback(callbacks.EarlyStopping(patience=3, restore_best=True))

Each callback's arguments are defined once, in :mod:`peftkit.callbacks.settings`, which the
recipes validate their ``callbacks`` section with; so that validating a recipe stays light, the
callbacks themselves (which subclass transformers' ``TrainerCallback``) are imported on first
use, and with them the filter of the one warning the HF stack raises at itself while training
adapters (peft calls a deprecated transformers method), which no user can act on.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peftkit.callbacks.base import PeftkitCallback, find
    from peftkit.callbacks.early_stopping import EarlyStopping
    from peftkit.callbacks.gradients import GradientCheck, GradientNormMixin
    from peftkit.callbacks.overfit import OverfitDetector
    from peftkit.callbacks.stopping import Stop, StopReason

_HOMES = {
    "EarlyStopping": "early_stopping",
    "GradientCheck": "gradients",
    "GradientNormMixin": "gradients",
    "OverfitDetector": "overfit",
    "PeftkitCallback": "base",
    "Stop": "stopping",
    "StopReason": "stopping",
    "find": "base",
}
"""Each public name and the module that defines it."""

__all__ = [
    "EarlyStopping",
    "GradientCheck",
    "GradientNormMixin",
    "OverfitDetector",
    "PeftkitCallback",
    "Stop",
    "StopReason",
    "find",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'peftkit.callbacks' has no attribute {name!r}")
    return getattr(importlib.import_module(f"peftkit.callbacks.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
