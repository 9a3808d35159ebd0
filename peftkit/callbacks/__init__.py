"""Callbacks that drop into any existing ``Trainer`` / ``SFTTrainer``.

    from peftkit import callbacks
    trainer.add_callback(callbacks.EarlyStopping(patience=3, restore_best=True))

Importing this package imports transformers (the callbacks subclass ``TrainerCallback``), and
filters the one warning the HF stack raises at itself while training adapters (peft calls a
deprecated transformers method), which no user can act on.
"""

from peftkit.callbacks.base import PeftkitCallback, find
from peftkit.callbacks.early_stopping import EarlyStopping
from peftkit.callbacks.gradients import GradientCheck, GradientNormMixin
from peftkit.callbacks.overfit import OverfitDetector
from peftkit.callbacks.stopping import Stop, StopReason
from peftkit.quiet import quiet_warnings

quiet_warnings()

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
