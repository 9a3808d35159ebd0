"""What every peftkit callback shares (peftkit.callbacks.base), on exact cases: a callback bound
to settings that disagree with its constructor, warnings and values kept for the next log
event, the order leading callbacks take in the Trainer, and finding a callback again."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from peftkit import PeftkitWarning
from peftkit.callbacks import EarlyStopping, GradientCheck, OverfitDetector, find
from peftkit.callbacks.base import PeftkitCallback, bound_to
from peftkit.testing import trainer


class Decides(BaseModel):
    AT_EVALUATIONS: ClassVar[bool] = True
    enabled: bool = True
    level: int = 1


class EveryStep(BaseModel):
    enabled: bool = True
    level: int = 1


def test_a_callback_takes_exactly_its_settings_fields_but_enabled():
    """bound_to keeps the settings model and whether the callback decides at evaluations (the
    settings say so, or it does not); a constructor and settings that disagree fail when the
    class is made, naming the argument on each side."""

    @bound_to(Decides)
    class AtEvaluations(PeftkitCallback):
        def __init__(self, level: int = 1) -> None:
            super().__init__(level=level)

    @bound_to(EveryStep)
    class AtSteps(PeftkitCallback):
        def __init__(self, level: int = 1) -> None:
            super().__init__(level=level)

    assert AtEvaluations.SETTINGS is Decides
    assert AtEvaluations.AT_EVALUATIONS is True and AtSteps.AT_EVALUATIONS is False
    assert AtSteps.SETTINGS is EveryStep and AtEvaluations(level="3").level == 3
    with pytest.raises(TypeError) as info:

        @bound_to(Decides)
        class Renamed(PeftkitCallback):
            def __init__(self, depth: int = 1) -> None:
                super().__init__(depth=depth)

    assert str(info.value) == (
        "Renamed and Decides disagree: only in the callback ['depth'], only in the settings "
        "['level']"
    )


def _training(tmp_path: Path, **settings: Any) -> tuple[Any, Any, Any]:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        args = TrainingArguments(str(tmp_path), use_cpu=True, report_to="none", **settings)
    return args, TrainerState(), TrainerControl()


def test_warnings_before_a_log_event_all_reach_it(tmp_path):
    """Two different warnings before the next log event: both are shown, and the event carries
    both, in order; the same key again is not shown again."""
    callback = EarlyStopping()
    args, state, control = _training(tmp_path)
    with pytest.warns(PeftkitWarning) as caught:
        callback.warn_once("first", "one thing")
        callback.warn_once("second", "another thing")
        callback.warn_once("first", "one thing again")
    assert [str(w.message) for w in caught] == ["one thing", "another thing"]
    logs: dict[str, Any] = {"loss": 1.0}
    callback.on_log(args, state, control, logs=logs)
    assert logs["peftkit_warning"] == "one thing | another thing"


def test_values_wait_for_a_log_event_that_has_logs(tmp_path):
    """An on_log without logs adds nothing anywhere; the values wait for the next event."""
    callback = EarlyStopping()
    args, state, control = _training(tmp_path)
    callback.report(eval_loss_best=0.5)
    callback.on_log(args, state, control, logs=None)
    logs: dict[str, Any] = {"eval_loss": 0.7}
    callback.on_log(args, state, control, logs=logs)
    assert logs == {"eval_loss": 0.7, "eval_loss_best": 0.5}


def test_an_eval_strategy_given_as_a_word_is_read_as_that_word(tmp_path):
    """TrainingArguments turns eval_strategy into an enum; one set afterwards as a plain string
    ("no") is read the same: the callback that decides at evaluations says it will never act."""
    args, state, control = _training(tmp_path)
    args.eval_strategy = "no"
    with pytest.warns(PeftkitWarning, match="EarlyStopping will never act"):
        EarlyStopping().on_train_begin(args, state, control)
    args.eval_strategy = "steps"
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeftkitWarning)
        EarlyStopping().on_train_begin(args, state, control)


def test_leading_callbacks_of_one_order_keep_the_order_they_were_added_in(tiny_model_dir, tmp_path):
    """Two deciding callbacks move ahead of the Trainer's own, and stay in the order given."""
    stopper, detector = EarlyStopping(patience=5), OverfitDetector()
    run = trainer(tiny_model_dir, tmp_path, [stopper, detector], max_steps=1)
    run.train()
    assert run.callback_handler.callbacks[:2] == [stopper, detector]
    assert find(run, OverfitDetector) is detector
    with pytest.raises(LookupError) as info:
        find(run, GradientCheck)
    assert str(info.value) == "no GradientCheck callback in this trainer"


def test_every_bad_argument_is_named_at_once_with_its_callback():
    from peftkit.core.errors import ProblemsError

    with pytest.raises(ProblemsError) as info:
        EarlyStopping(patience=0, mode="sideways")
    assert str(info.value) == (
        "2 problem(s) in the arguments of EarlyStopping:\n"
        "- mode: got 'sideways'\n"
        "    rule: Input should be 'min', 'max' or 'auto'\n"
        "    fix:  use one of the values named in the rule, e.g. auto\n"
        "- patience: got 0\n"
        "    rule: Input should be greater than or equal to 1\n"
        "    fix:  use a value of at least 1"
    )


def test_a_resume_from_the_first_step_without_the_setting_says_it_starts_over(tmp_path):
    """The Trainer lists the stateful callbacks in a fresh run's state too: at step 0 that is
    no resume; from a checkpoint at step 1 it is, and without
    restore_callback_states_from_checkpoint the callback says it starts over."""
    args, state, control = _training(tmp_path, eval_strategy="steps")
    state.stateful_callbacks = {"EarlyStopping": {"args": {}, "attributes": {}}}
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeftkitWarning)
        EarlyStopping().on_train_begin(args, state, control)
    state.global_step = 1
    with pytest.warns(PeftkitWarning, match=r"^EarlyStopping starts over: training resumed"):
        EarlyStopping().on_train_begin(args, state, control)
