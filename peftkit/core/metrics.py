"""What a metric's name says: which way is better, and the key the Trainer logs it under in an
evaluation (``eval_``). One rule for the callbacks (at the start of training) and for recipes
(at validation, which must not import transformers).

A metric named like a loss or an error is better lower; one named like an accuracy, a score or
a rate is better higher. A name that says neither is not guessed: the caller asks for ``mode``.
"""

from __future__ import annotations

from typing import Any, Literal

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


EVAL_PREFIX = "eval_"
"""What the Trainer puts before the name of every metric of an evaluation."""


def eval_name(metric: str) -> str:
    """The key the Trainer logs an evaluation metric under (``eval_loss`` for ``loss``)."""
    return metric if is_eval_key(metric) else f"{EVAL_PREFIX}{metric}"


def is_eval_key(key: str) -> bool:
    """Whether ``key`` names a metric of an evaluation, as the Trainer logs it."""
    return key.startswith(EVAL_PREFIX)


def is_evaluation(logs: dict[str, Any]) -> bool:
    """Whether a log event carries an evaluation's metrics (the Trainer logs them under the
    ``eval_`` prefix; a user's ``metric_key_prefix="test"`` run is not ours)."""
    return any(is_eval_key(key) for key in logs)
