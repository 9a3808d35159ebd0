"""Which way is better for a metric, from its name: one rule for the callbacks (at the start of
training) and for recipes (at validation, which must not import transformers).

A metric named like a loss or an error is better lower; one named like an accuracy, a score or
a rate is better higher. A name that says neither is not guessed: the caller asks for ``mode``.
"""

from __future__ import annotations

from typing import Literal

Mode = Literal["min", "max"]

LOWER_IS_BETTER = ("loss", "perplexity", "ppl", "error", "wer", "cer", "mse", "mae", "rmse")
HIGHER_IS_BETTER = (
    "acc",
    "f1",
    "precision",
    "recall",
    "bleu",
    "rouge",
    "meteor",
    "score",
    "rate",
    "valid",
    "match",
    "auc",
    "exact",
)


def mode_from_name(metric: str) -> Mode | None:
    """``min`` or ``max`` when the name says which is better; None when it does not. A name
    with both kinds of word (``error_rate``) is a lower-is-better one: errors are counted."""
    name = metric.lower()
    if any(word in name for word in LOWER_IS_BETTER):
        return "min"
    if any(word in name for word in HIGHER_IS_BETTER):
        return "max"
    return None


def eval_name(metric: str) -> str:
    """The key the Trainer logs an evaluation metric under (``eval_loss`` for ``loss``)."""
    return metric if metric.startswith("eval_") else f"eval_{metric}"
