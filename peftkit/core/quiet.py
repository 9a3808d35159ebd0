"""Quiet by default: the CLI shows what a user can act on, and ``--verbose`` shows the rest.

Measured on a `peftkit train` run before this module: a bitsandbytes line about an optional
``kernels`` package (printed for plain LoRA too), transformers' "Loading weights" bar, a
FutureWarning that peft triggers inside transformers (``is_gradient_checkpointing``), five
``datasets`` progress bars per split from TRL's preparation, an evaluation bar nested in the
training bar, and transformers' advisory log lines. None of them has a fix a user can apply.
The switches are environment variables and logger levels, set before the HF stack is imported
and only where the user has not set them, so that they reach ``torchrun``'s workers too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from typing import Any

QUIET_ENVIRONMENT = {
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' "Loading weights" bar follows it
    "TRANSFORMERS_VERBOSITY": "error",
}
QUIET_LOGGERS = ("bitsandbytes",)
QUIET_WARNINGS = (
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),  # peft calls it, not users
)


def quiet() -> None:
    """Silence the HF stack's noise for this process and the processes it starts."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    quiet_warnings()


def quiet_warnings() -> None:
    """Only the warnings the HF stack raises at itself (no user can act on them): what the
    library does when it builds a config, leaving the user's progress bars and log levels
    alone. Filtering one message twice keeps one filter."""
    for category, message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def training_progress() -> Any:
    """The Trainer's progress callback with one bar, for training: evaluations inside training
    print their metrics line but no bar of their own. Its log lines go to stderr with the bar,
    so that stdout holds only the results (``peftkit train --json``)."""
    from transformers.trainer_callback import ProgressCallback

    class TrainingProgress(ProgressCallback):
        def on_prediction_step(self, *args: Any, **kwargs: Any) -> None:
            return None

        def on_log(self, *args: Any, **kwargs: Any) -> None:
            with contextlib.redirect_stdout(sys.stderr):
                super().on_log(*args, **kwargs)

    return TrainingProgress()
