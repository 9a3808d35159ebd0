"""The one place that decides "is this metric value better": mode, min_delta and thresholds.

Early stopping and overfit detection both track a best value; they share this logic so that
``min_delta`` and ``mode`` mean the same everywhere (as Keras' MonitorCallback and Lightning's
EarlyStopping do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from peftkit.errors import RecipeError

Mode = Literal["min", "max"]

_LOWER_IS_BETTER = ("loss", "perplexity", "ppl", "error", "wer", "cer", "mse", "mae")
_HIGHER_IS_BETTER = (
    "acc",
    "f1",
    "precision",
    "recall",
    "bleu",
    "rouge",
    "score",
    "rate",
    "valid",
    "match",
    "auc",
)


def infer_mode(metric: str) -> Mode:
    """min or max from the metric's name; an error when the name does not say."""
    name = metric.lower()
    if any(word in name for word in _LOWER_IS_BETTER):
        return "min"
    if any(word in name for word in _HIGHER_IS_BETTER):
        return "max"
    raise RecipeError(
        f"mode='auto' cannot tell whether a higher or lower '{metric}' is better; "
        "pass mode='min' or mode='max'"
    )


def metric_value(metrics: dict[str, float], metric: str) -> tuple[str, float]:
    """The monitored value, accepting the name with or without the Trainer's ``eval_`` prefix."""
    for key in (metric, f"eval_{metric}"):
        if key in metrics:
            return key, float(metrics[key])
    available = ", ".join(sorted(metrics)) or "(none)"
    raise KeyError(
        f"metric '{metric}' is not among the evaluation metrics; available: {available}. "
        "Fix: monitor one of those, or return it from compute_metrics."
    )


@dataclass(frozen=True)
class Monitor:
    """Comparisons for one metric in one direction."""

    mode: Mode
    min_delta: float = 0.0

    def improved(self, value: float, best: float | None) -> bool:
        """Better than ``best`` by more than ``min_delta`` (any finite value beats no best)."""
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        return (
            value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta
        )

    def reached(self, value: float, threshold: float) -> bool:
        """At least as good as ``threshold``."""
        return value <= threshold if self.mode == "min" else value >= threshold

    def worse_than(self, value: float, threshold: float) -> bool:
        """Strictly worse than ``threshold``."""
        return value > threshold if self.mode == "min" else value < threshold
