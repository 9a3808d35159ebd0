"""The one place that decides "is this metric value better" (peftkit.callbacks.monitor), on its
own: the direction of a metric for a run, min_delta and the thresholds in both directions, and
the monitored value found among an evaluation's metrics. (The same rules deciding real runs:
tests/test_callbacks.py and tests/test_callbacks_in_trainer.py.)"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest

from peftkit.callbacks.monitor import Monitor, metric_value, resolve_mode
from peftkit.core.errors import RecipeError
from peftkit.core.metrics import is_evaluation

NAN, INF = float("nan"), float("inf")


def _args(tmp_path: Path, **settings) -> object:
    from transformers import TrainingArguments

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TrainingArguments(str(tmp_path), use_cpu=True, report_to="none", **settings)


@pytest.mark.parametrize(
    ("mode", "min_delta", "value", "best", "improved"),
    [
        ("min", 0.0, 0.9, 1.0, True),
        ("min", 0.0, 1.0, 1.0, False),  # equal is no improvement
        ("min", 0.0, 1.1, 1.0, False),
        ("min", 0.1, 0.95, 1.0, False),  # better by less than min_delta
        ("min", 0.1, 0.9, 1.0, False),  # by exactly min_delta: not more than it
        ("min", 0.1, 0.85, 1.0, True),
        ("max", 0.0, 0.6, 0.5, True),
        ("max", 0.0, 0.5, 0.5, False),
        ("max", 0.0, 0.4, 0.5, False),
        ("max", 0.05, 0.54, 0.5, False),  # a rise of less than min_delta
        ("max", 0.05, 0.56, 0.5, True),
        ("max", 0.05, 0.44, 0.5, False),  # min_delta never makes a fall an improvement
        ("min", 0.0, 5.0, None, True),  # any finite value beats no best
        ("max", 0.0, -5.0, None, True),
        ("min", 0.0, NAN, None, False),  # nor does a non-finite one, ever
        ("min", 0.0, -INF, 1.0, False),
        ("max", 0.0, INF, 1.0, False),
    ],
)
def test_improved(mode, min_delta, value, best, improved) -> None:
    assert Monitor(mode, min_delta).improved(value, best) is improved


@pytest.mark.parametrize(
    ("mode", "value", "reached", "worse"),
    [
        ("min", 0.5, True, False),
        ("min", 0.6, True, False),  # at the threshold: reached, and not worse
        ("min", 0.7, False, True),
        ("max", 0.7, True, False),
        ("max", 0.6, True, False),
        ("max", 0.5, False, True),
    ],
)
def test_thresholds(mode, value, reached, worse) -> None:
    monitor = Monitor(mode)
    assert monitor.reached(value, 0.6) is reached
    assert monitor.worse_than(value, 0.6) is worse


def test_the_mode_of_a_metric_comes_from_the_trainer_or_its_name(tmp_path: Path) -> None:
    plain = _args(tmp_path)
    assert resolve_mode("eval_loss", "auto", plain) == "min"
    assert resolve_mode("eval_accuracy", "auto", plain) == "max"
    assert resolve_mode("accuracy", "auto", plain) == "max"
    # an explicit mode stands when the Trainer has no say on that metric
    assert resolve_mode("eval_accuracy", "min", plain) == "min"
    assert resolve_mode("eval_loss", "max", plain) == "max"
    theirs = _args(tmp_path, metric_for_best_model="quality", greater_is_better=True)
    assert resolve_mode("eval_quality", "auto", theirs) == "max"  # the Trainer's own metric
    assert resolve_mode("quality", "auto", theirs) == "max"
    assert resolve_mode("eval_quality", "max", theirs) == "max"
    # the Trainer's direction is for its own metric only
    on_loss = _args(tmp_path, metric_for_best_model="eval_loss", greater_is_better=False)
    assert resolve_mode("eval_accuracy", "auto", on_loss) == "max"
    assert resolve_mode("eval_accuracy", "min", on_loss) == "min"
    lower = _args(tmp_path, metric_for_best_model="eval_accuracy", greater_is_better=False)
    assert resolve_mode("eval_accuracy", "auto", lower) == "min"


def test_a_mode_against_the_trainer_or_a_silent_name_is_refused(tmp_path: Path) -> None:
    theirs = _args(tmp_path, metric_for_best_model="quality", greater_is_better=True)
    with pytest.raises(RecipeError) as info:
        resolve_mode("eval_quality", "min", theirs)
    assert str(info.value) == (
        "mode='min' for 'eval_quality', but the Trainer's greater_is_better=True says the "
        "opposite for the same metric. Fix: pass mode='max' (or mode='auto')."
    )
    with pytest.raises(RecipeError) as info:
        resolve_mode("eval_quality", "auto", _args(tmp_path))
    assert str(info.value).startswith("mode='auto' cannot tell whether a higher or lower ")
    assert str(info.value).endswith("Fix: pass mode='max' (or 'min').")


def test_the_monitored_value_with_or_without_the_eval_prefix() -> None:
    metrics = {"eval_loss": 0.5, "eval_runtime": 2, "loss": 0.7, "epoch": 1}
    assert metric_value(metrics, "eval_loss") == ("eval_loss", 0.5)
    assert metric_value(metrics, "loss") == ("loss", 0.7)  # the exact name first
    assert metric_value({"eval_loss": 1}, "loss") == ("eval_loss", 1.0)
    assert isinstance(metric_value({"eval_steps": 3}, "steps")[1], float)
    assert math.isnan(metric_value({"eval_loss": NAN}, "eval_loss")[1])


def test_a_missing_metric_lists_the_evaluation_metrics() -> None:
    with pytest.raises(RecipeError) as info:
        metric_value({"loss": 1.0, "eval_runtime": 2, "eval_loss": 3, "epoch": 1}, "eval_bleu")
    assert str(info.value) == (
        "metric 'eval_bleu' is not among the evaluation metrics; available: eval_loss, "
        "eval_runtime. Fix: monitor one of those, or return it from compute_metrics."
    )
    with pytest.raises(RecipeError, match=r"; available: \(none\)\. Fix:"):
        metric_value({"loss": 1.0}, "eval_bleu")


def test_what_counts_as_an_evaluation() -> None:
    assert is_evaluation({"eval_loss": 1.0, "epoch": 1})
    assert not is_evaluation({"loss": 1.0, "grad_norm": 2.0})
    assert not is_evaluation({"test_loss": 1.0})  # a user's metric_key_prefix="test" run
    assert not is_evaluation({})
