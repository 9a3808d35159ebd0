"""The one place that decides "is this metric value better": the direction, ``min_delta`` and
thresholds, so that ``min_delta`` and ``mode`` mean the same wherever a best value is tracked
(as Keras' MonitorCallback and Lightning's EarlyStopping do). Early stopping decides its best
and its stops with it, overfit detection the evaluation loss's minimum and which way each
loss went; the direction of a metric comes from the Trainer or from
:mod:`peftkit.core.metrics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from peftkit.core.errors import RecipeError
from peftkit.core.metrics import Mode, eval_name, is_eval_key, mode_from_name


def resolve_mode(metric: str, mode: str, args: Any) -> Mode:
    """The direction of ``metric`` for this run. ``auto``: the Trainer's ``greater_is_better``
    when ``metric`` is its ``metric_for_best_model``, else the metric's name. An explicit mode
    that contradicts the Trainer on its own metric is refused: the two would disagree on
    which evaluation was best."""
    trainers = getattr(args, "metric_for_best_model", None)
    same = trainers is not None and eval_name(trainers) == eval_name(metric)
    theirs: Mode | None = None
    if same and args.greater_is_better is not None:
        theirs = "max" if args.greater_is_better else "min"
    if mode == "auto":
        found = theirs or mode_from_name(metric)
        if found is None:
            raise RecipeError(
                f"mode='auto' cannot tell whether a higher or lower '{metric}' is better (its "
                "name does not say, and it is not the Trainer's metric_for_best_model). Fix: "
                "pass mode='max' (or 'min')."
            )
        return found
    if theirs is not None and mode != theirs:
        raise RecipeError(
            f"mode='{mode}' for '{metric}', but the Trainer's greater_is_better="
            f"{args.greater_is_better} says the opposite for the same metric. Fix: pass "
            f"mode='{theirs}' (or mode='auto')."
        )
    return mode  # type: ignore[return-value]


def metric_value(metrics: dict[str, Any], metric: str) -> tuple[str, float]:
    """The monitored value, accepting the name with or without the Trainer's ``eval_`` prefix."""
    for key in (metric, eval_name(metric)):
        if key in metrics:
            return key, float(metrics[key])
    available = ", ".join(sorted(k for k in metrics if is_eval_key(k))) or "(none)"
    raise RecipeError(
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
