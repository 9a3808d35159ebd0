"""How a stop is recorded (peftkit.callbacks.stopping), on its own: the reasons' names that
trackers and ``log_history`` receive, the Trainer's control, the console line and the log event
of the step, and a stop read back from a checkpoint's JSON."""

from __future__ import annotations

import json
import logging
import warnings
from typing import Any

from peftkit.callbacks import EarlyStopping, GradientCheck
from peftkit.callbacks.stopping import Stop, StopReason, record_stop


def test_the_reasons_as_trackers_see_them():
    assert [reason.value for reason in StopReason] == [
        "patience",
        "stopping_threshold",
        "divergence",
        "non_finite_metric",
        "overfitting",
        "non_finite_gradient",
        "non_finite_steps",
    ]


def test_a_stop_sets_the_control_says_one_line_and_reaches_the_next_log_event(caplog, tmp_path):
    """A stop decided between log events asks the Trainer for a log event of its own
    (should_log), where the stop's callback, reason and message are reported."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        args = TrainingArguments(str(tmp_path), use_cpu=True, report_to="none")
    state, control = TrainerState(), TrainerControl()
    callback = GradientCheck()
    stop = Stop(StopReason.NON_FINITE_GRADIENT, "gradient norm is nan", 7)
    with caplog.at_level(logging.WARNING, logger="peftkit.callbacks.stopping"):
        record_stop(callback, stop, control)
    assert (control.should_training_stop, control.should_log) == (True, True)
    assert callback.stop_record == {
        "reason": "non_finite_gradient",
        "message": "gradient norm is nan",
        "step": 7,
    }
    assert callback.stop == stop
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "GradientCheck stopped training at step 7: gradient norm is nan")
    ]
    logs: dict[str, Any] = {"loss": 1.0}
    callback.on_log(args, state, control, logs=logs)
    assert logs == {
        "loss": 1.0,
        "peftkit_stop": "GradientCheck",
        "stop_reason": "non_finite_gradient",
        "stop_message": "gradient norm is nan",
    }


def test_a_stop_read_back_from_json_is_the_same_stop():
    """The record goes through trainer_state.json on a resume: back as the same Stop, the
    reason as its enum; no record, no stop."""
    stop = Stop(StopReason.DIVERGENCE, "eval_loss=5 is worse than the divergence threshold 3", 4)
    record = json.loads(json.dumps(stop.to_dict()))
    assert record == {
        "reason": "divergence",
        "message": "eval_loss=5 is worse than the divergence threshold 3",
        "step": 4,
    }
    back = Stop.from_dict(record)
    assert back == stop and back.reason is StopReason.DIVERGENCE
    assert Stop.from_dict(None) is None and EarlyStopping().stop is None
