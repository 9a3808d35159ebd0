"""OverfitDetector on exact sequences of losses, by calling its hooks as the Trainer does (real
``TrainingArguments``, ``TrainerState`` and ``TrainerControl``): the averaged training loss, the
gap, which evaluations count as "rising", and what it reports. (Real overfitting runs:
tests/test_callbacks.py and tests/test_callbacks_in_trainer.py.)"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from peftkit import PeftkitWarning
from peftkit.callbacks import OverfitDetector, StopReason

NAN = float("nan")


def _fed(detector: OverfitDetector, tmp_path: Path, events: list[tuple[str, float]]) -> Any:
    """``detector`` inside training, given ``("train", loss)`` log events (one optimizer step
    each) and ``("eval", eval_loss)`` log events, as the Trainer dispatches them; the state."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        args = TrainingArguments(
            str(tmp_path), use_cpu=True, report_to="none", eval_strategy="steps"
        )
    state, control = TrainerState(), TrainerControl()
    detector.on_train_begin(args, state, control)
    for kind, value in events:
        if kind == "train":
            state.global_step += 1
            logs = {"loss": value, "step": state.global_step}
        else:
            logs = {"eval_loss": value, "step": state.global_step}
        state.log_history.append(dict(logs))
        detector.on_log(args, state, control, logs=logs)
    return state, control


def test_the_training_loss_is_averaged_since_the_previous_evaluation(tmp_path):
    """Two training losses (2.0, 1.0) then an evaluation at 3.0: train 1.5, gap 1.5; the next
    evaluation averages only the losses logged after the first one."""
    detector = OverfitDetector()
    state, _ = _fed(
        detector,
        tmp_path,
        [("train", 2.0), ("train", 1.0), ("eval", 3.0), ("train", 0.5), ("eval", 2.75)],
    )
    assert detector.history == [
        {"step": 2, "train_loss": 1.5, "eval_loss": 3.0, "gap": 1.5},
        {"step": 3, "train_loss": 0.5, "eval_loss": 2.75, "gap": 2.25},
    ]
    assert [h.get("overfit_gap") for h in state.log_history if "eval_loss" in h] == [1.5, 2.25]
    assert (detector.train_sum, detector.train_count) == (0.0, 0)


def test_an_evaluation_without_training_losses_or_with_a_nan_is_skipped(tmp_path):
    """No training loss since the previous evaluation: nothing to compare, skipped. A NaN
    evaluation loss: skipped too, and the training losses wait for the next evaluation."""
    detector = OverfitDetector()
    _fed(
        detector,
        tmp_path,
        [("eval", 3.0), ("train", 2.0), ("eval", NAN), ("train", 1.0), ("eval", 2.0)],
    )
    assert detector.history == [{"step": 2, "train_loss": 1.5, "eval_loss": 2.0, "gap": 0.5}]


@pytest.mark.parametrize(
    ("second", "rising"),
    [
        pytest.param((1.25, 0.25), 1, id="eval-up-train-down"),
        pytest.param((1.1, 0.25), 0, id="eval-down-above-its-minimum"),
        pytest.param((1.5, 0.75), 0, id="eval-up-train-up"),
        pytest.param((1.2, 0.25), 0, id="eval-level"),
    ],
)
def test_only_eval_up_with_train_down_counts_as_rising(tmp_path, second, rising):
    """After a minimum (1.0) and a first rise to 1.2 (train 0.5, gap 0.7), the next evaluation
    counts as rising only when the eval loss rises again while the train loss falls."""
    eval_loss, train_loss = second
    detector = OverfitDetector(patience=5)
    events = [("train", 1.0), ("eval", 1.0), ("train", 0.5), ("eval", 1.2)]
    _fed(detector, tmp_path, [*events, ("train", train_loss), ("eval", eval_loss)])
    assert (detector.best_eval, detector.rising) == (1.0, 1 + rising)
    # the first rise counted: eval up (1.0 -> 1.2), train down (1.0 -> 0.5), gap up (0 -> 0.7)


def test_before_training_nothing_is_counted():
    detector = OverfitDetector()
    assert (detector.history, detector.train_sum, detector.train_count) == ([], 0.0, 0)
    assert (detector.best_eval, detector.rising, detector.detected) == (None, 0, False)


RISING_RUN = [
    ("train", 1.0),
    ("eval", 1.0),
    ("train", 0.5),
    ("eval", 1.25),
    ("train", 0.25),
    ("eval", 1.5),
]
"""A minimum at step 1, then eval up and train down twice: patience 2 is reached at step 3."""

MESSAGE = (
    "overfitting: eval loss rose from its minimum 1 to 1.5 over 2 evaluations while train loss "
    "fell to 0.25 (gap 1.25). Fix: fewer epochs, more data, a lower learning rate or more "
    "dropout; early stopping with restore_best keeps the best adapter."
)


def test_a_stop_is_reported_with_its_message(tmp_path):
    detector = OverfitDetector(action="stop", patience=2)
    state, control = _fed(detector, tmp_path, RISING_RUN)
    assert control.should_training_stop and detector.detected_step == 3
    assert (detector.stop.reason, detector.stop.message, detector.stop.step) == (
        StopReason.OVERFITTING,
        MESSAGE,
        3,
    )
    last = state.log_history[-1]
    assert (last["overfit_detected"], last["overfit_message"], last["stop_message"]) == (
        True,
        MESSAGE,
        MESSAGE,
    )


def test_a_warning_is_reported_with_its_message(tmp_path):
    detector = OverfitDetector(action="warn", patience=2)
    with pytest.warns(PeftkitWarning) as caught:
        state, control = _fed(detector, tmp_path, RISING_RUN)
    assert [str(w.message) for w in caught] == [MESSAGE]
    assert not control.should_training_stop and detector.stop is None
    last = state.log_history[-1]
    assert (last["overfit_detected"], last["overfit_message"], last["peftkit_warning"]) == (
        True,
        MESSAGE,
        MESSAGE,
    )
