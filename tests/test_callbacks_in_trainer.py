"""The callbacks in the Trainer they are dropped into: they follow its direction and its
"best", report through its logging (every ``report_to`` integration receives what they
measured), ignore evaluations outside ``train()``, survive a resume, and roll a non-finite step
back instead of dying. Real ``Trainer`` and ``SFTTrainer`` runs on the tiny model.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from test_callbacks import NAN, WeightsAtEvaluation, _injector
from tiny_trainer import ScriptedMetric, scripted
from transformers import TrainerCallback

from peftkit import PeftkitWarning
from peftkit.callbacks import (
    EarlyStopping,
    GradientCheck,
    GradientNormMixin,
    OverfitDetector,
    StopReason,
    find,
)
from peftkit.core.errors import RecipeError
from peftkit.testing import prompt_completion_rows, text_rows, trainable, trainer

RISING = [0.1, 0.2, 0.3, 0.25, 0.2, 0.15, 0.1]
"""An accuracy that peaks at the third evaluation."""


# --- direction -----------------------------------------------------------------------------------


@pytest.mark.parametrize("trainer_metric", [None, "eval_accuracy"], ids=["by-name", "by-trainer"])
def test_rising_accuracy_keeps_the_highest_evaluation(tiny_model_dir, tmp_path, trainer_metric):
    """accuracy 0.1 -> 0.3 -> down: the best is 0.3 (step 3), and its adapter is restored;
    with or without the Trainer's metric_for_best_model."""
    recorder = WeightsAtEvaluation()
    stopper = EarlyStopping(metric="eval_accuracy", patience=3)
    extra = {} if trainer_metric is None else {"metric_for_best_model": trainer_metric}
    run = trainer(
        tiny_model_dir, tmp_path,
        [ScriptedMetric(scripted(RISING), key="eval_accuracy"), recorder, stopper], **extra,
    )  # fmt: skip
    run.train()
    assert stopper.monitor.mode == "max"
    assert (stopper.best, stopper.best_step, run.state.global_step) == (0.3, 3, 6)
    after = trainable(run.model)
    assert all(torch.equal(after[n], recorder.by_step[3][n]) for n in after)


def test_the_trainers_direction_wins_for_its_own_metric(tiny_model_dir, tmp_path):
    """A name that says nothing ('eval_quality') is the Trainer's metric_for_best_model with
    greater_is_better=True: mode='auto' takes that; an explicit opposite mode is refused before
    the first step."""
    args = {"metric_for_best_model": "quality", "greater_is_better": True}
    stopper = EarlyStopping(metric="eval_quality", patience=3, restore_best=False)
    run = trainer(
        tiny_model_dir, tmp_path / "a",
        [ScriptedMetric(scripted(RISING), key="eval_quality"), stopper], **args,
    )  # fmt: skip
    run.train()
    assert stopper.monitor.mode == "max" and stopper.best_step == 3
    contrary = EarlyStopping(metric="eval_quality", mode="min")
    run = trainer(tiny_model_dir, tmp_path / "b", [contrary], **args)
    with pytest.raises(RecipeError, match=r"greater_is_better=True.*Fix: pass mode='max'"):
        run.train()
    assert run.state.global_step == 0


# --- one owner of "best" -------------------------------------------------------------------------

BEST_AT_END = {
    "load_best_model_at_end": True,
    "save_strategy": "steps",
    "save_steps": 1,
    "save_total_limit": 10,
}


def test_with_load_best_model_at_end_on_the_same_metric_the_trainer_restores_once(
    tiny_model_dir, tmp_path
):
    """Both keep the best by eval_loss: the Trainer puts its best checkpoint back, EarlyStopping
    keeps no copy of its own and only stops; the weights are the best evaluation's."""
    recorder = WeightsAtEvaluation()
    stopper = EarlyStopping(patience=2)
    script = ScriptedMetric(scripted([1.0, 0.9, 0.5, 0.8, 0.9, 0.95]))
    run = trainer(
        tiny_model_dir, tmp_path, [script, recorder, stopper],
        metric_for_best_model="eval_loss", **BEST_AT_END,
    )  # fmt: skip
    run.train()
    assert stopper.restorer == "trainer" and stopper.best_weights is None
    assert (stopper.best_step, run.state.global_step, stopper.restored) == (3, 5, True)
    assert run.state.best_model_checkpoint.endswith("checkpoint-3")
    after = trainable(run.model)
    assert all(torch.equal(after[n], recorder.by_step[3][n]) for n in after)


def test_with_load_best_model_at_end_on_another_metric_it_is_refused(tiny_model_dir, tmp_path):
    run = trainer(
        tiny_model_dir, tmp_path, [EarlyStopping(metric="eval_accuracy")],
        metric_for_best_model="eval_loss", **BEST_AT_END,
    )  # fmt: skip
    with pytest.raises(RecipeError, match=r"eval_loss.*eval_accuracy.*Fix:"):
        run.train()
    assert run.state.global_step == 0
    # the fix, as written: metric='eval_loss', or restore_best=False
    for fixed in (EarlyStopping(metric="eval_loss"), EarlyStopping(restore_best=False)):
        trainer(
            tiny_model_dir, tmp_path, [fixed], metric_for_best_model="eval_loss",
            max_steps=2, **BEST_AT_END,
        ).train()  # fmt: skip


# --- only training counts ------------------------------------------------------------------------


def test_evaluations_outside_training_are_not_counted(tiny_model_dir, tmp_path):
    """A user's own trainer.evaluate() before and after train() changes nothing: no
    evaluation counted, no stop, nothing added to the metrics."""
    stopper, detector = EarlyStopping(patience=1), OverfitDetector()
    run = trainer(tiny_model_dir, tmp_path, [stopper, detector], max_steps=2)
    before = run.evaluate()
    assert stopper.evaluations == 0 and stopper.best is None
    assert not [k for k in before if "best" in k or "overfit" in k]
    run.train()
    assert stopper.evaluations == 2
    after = run.evaluate()
    assert stopper.evaluations == 2 and not [k for k in after if "best" in k]


# --- visible where users look --------------------------------------------------------------------


def _scalars_and_texts(folder: Path) -> tuple[dict[str, list[float]], dict[str, list[str]]]:
    """What TensorBoard has in the event files under ``folder``: scalars and texts by tag."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    scalars: dict[str, list[float]] = {}
    texts: dict[str, list[str]] = {}
    for events in folder.rglob("events.out.tfevents.*"):
        reader = EventAccumulator(str(events.parent), size_guidance={"tensors": 0, "scalars": 0})
        reader.Reload()
        for tag in reader.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(e.value for e in reader.Scalars(tag))
        for tag in reader.Tags()["tensors"]:
            name = tag.removesuffix("/text_summary")
            for event in reader.Tensors(tag):
                texts.setdefault(name, []).append(make_ndarray(event.tensor_proto).item().decode())
    return scalars, texts


def test_tensorboard_receives_what_the_callbacks_measured(tiny_model_dir, tmp_path):
    """An SFTTrainer run with report_to=tensorboard: the event files hold the gradient
    statistics, the overfit gap, the best value and step, the JSON rates and the stop reason."""
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from peftkit.evaluation.callback import JsonAnswers

    class Checked(GradientNormMixin, SFTTrainer):
        pass

    from datasets import Dataset

    rows = prompt_completion_rows(40)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts = [row["prompt"] for row in rows[32:36]]
    callbacks = [  # a stop at the first evaluation, decided on the JSON rate
        EarlyStopping(metric="eval_json_valid_rate", stopping_threshold=0.0, restore_best=False),
        OverfitDetector(),
        GradientCheck(),
        JsonAnswers(tokenizer, prompts, max_new_tokens=4),  # added last, still runs first
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        args = SFTConfig(
            str(tmp_path), max_steps=6, eval_strategy="steps", eval_steps=2, logging_steps=2,
            per_device_train_batch_size=4, learning_rate=1e-3, use_cpu=True, bf16=False,
            max_length=64, report_to=["tensorboard"], save_strategy="no", disable_tqdm=True,
        )  # fmt: skip
    run = Checked(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        args=args,
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"),
        train_dataset=Dataset.from_list(rows[:32]),
        eval_dataset=Dataset.from_list(rows[32:]),
        callbacks=callbacks,
    )
    run.train()
    scalars, texts = _scalars_and_texts(tmp_path / "runs")
    for tag in (
        "train/grad_norm_max",
        "train/clipped_fraction",
        "train/grad_spikes",
        "train/overfit_gap",
        "eval/json_valid_rate",
        "eval/json_valid_rate_best",
        "eval/json_valid_rate_best_step",
    ):
        assert scalars.get(tag), f"{tag} not in {sorted(scalars)}"
    assert run.state.global_step == 2 and callbacks[0].stop is not None
    assert texts["train/stop_reason"] == ["stopping_threshold"]
    assert texts["train/peftkit_stop"] == ["EarlyStopping"]
    assert "stopping threshold" in texts["train/stop_message"][0]


def test_each_warning_is_shown_once(tiny_model_dir, tmp_path, caplog):
    """An overfitting run warns once, as a PeftkitWarning, and not also through logging."""
    rows = text_rows(200)
    detector = OverfitDetector(patience=1)
    run = trainer(
        tiny_model_dir, tmp_path, [detector], train_rows=rows[:4], eval_rows=rows[100:116],
        learning_rate=5e-3, max_steps=45, eval_steps=3, logging_steps=3,
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.train()
    ours = [w for w in caught if issubclass(w.category, PeftkitWarning)]
    assert detector.detected and len(ours) == 1
    assert not [r for r in caplog.records if "overfitting" in r.getMessage()]
    logged = [h for h in run.state.log_history if h.get("overfit_detected")]
    assert len(logged) == 1 and logged[0]["peftkit_warning"].startswith("overfitting")


# --- resume ---------------------------------------------------------------------------------------


def test_all_three_survive_a_resume(tiny_model_dir, tmp_path):
    """Stopped at step 4 with a checkpoint, resumed to step 8: GradientCheck's counts and
    OverfitDetector's history continue from the checkpoint (and EarlyStopping's, tested in
    test_callbacks.py)."""
    common: dict[str, Any] = {
        "save_strategy": "steps",
        "save_steps": 4,
        "restore_callback_states_from_checkpoint": True,
        "trainer_class": _injector(-1, 1.0),  # GradientNormMixin: a norm every step
    }
    first = [EarlyStopping(patience=100), OverfitDetector(), GradientCheck()]
    trainer(tiny_model_dir, tmp_path, first, max_steps=4, **common).train()
    assert first[2].steps == 4 and len(first[1].history) == 4
    resumed = trainer(
        tiny_model_dir, tmp_path, [EarlyStopping(patience=100), OverfitDetector(),
                                   GradientCheck()], max_steps=8, **common,
    )  # fmt: skip
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-4"))
    assert find(resumed, GradientCheck).steps == 8
    assert len(find(resumed, OverfitDetector).history) == 8
    assert find(resumed, EarlyStopping).evaluations == 8


def test_a_stop_survives_a_resume(tiny_model_dir, tmp_path):
    """GradientCheck stopped on a NaN gradient at step 3; resumed from that step's checkpoint,
    the rebuilt callback still knows why training stopped."""
    common: dict[str, Any] = {
        "save_strategy": "steps",
        "save_steps": 1,
        "restore_callback_states_from_checkpoint": True,
        "trainer_class": _injector(3, NAN),
    }
    checks = GradientCheck()
    trainer(tiny_model_dir, tmp_path, [checks], **common).train()
    assert checks.stop.reason is StopReason.NON_FINITE_GRADIENT
    resumed = trainer(tiny_model_dir, tmp_path, [GradientCheck()], max_steps=3, **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    assert find(resumed, GradientCheck).stop.reason is StopReason.NON_FINITE_GRADIENT


def test_resuming_without_the_setting_says_the_callback_starts_over(tiny_model_dir, tmp_path):
    trainer(
        tiny_model_dir, tmp_path, [EarlyStopping()], max_steps=2, save_strategy="steps",
        save_steps=2,
    ).train()  # fmt: skip
    again = trainer(tiny_model_dir, tmp_path, [EarlyStopping()], max_steps=4)
    with pytest.warns(PeftkitWarning, match="starts over.*restore_callback_states"):
        again.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))


# --- roll back instead of dying -------------------------------------------------------------------


class StateAfterEachStep(TrainerCallback):
    """The trainable weights and every optimizer state tensor (Adam's moments and its step
    count) at the end of each optimizer step, copied."""

    def __init__(self) -> None:
        self.by_step: dict[int, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = {}

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        optimizer_state = {
            f"{name}.{key}": value.detach().clone()
            for name, p in model.named_parameters()
            if p.requires_grad
            for key, value in optimizer.state[p].items()
        }
        self.by_step[state.global_step] = (trainable(model), optimizer_state)


def test_rollback_skips_a_non_finite_step_and_goes_on(tiny_model_dir, tmp_path):
    """A NaN loss at step 4: the step is skipped (logged, with its batches), so the trainable
    weights, Adam's moments and its step count after step 4 are exactly those after step 3;
    training then goes on to its 10 steps."""
    checks = GradientCheck(on_nonfinite="rollback")
    states = StateAfterEachStep()
    run = trainer(
        tiny_model_dir, tmp_path, [checks, states], trainer_class=_injector(4, NAN),
        eval_strategy="no", learning_rate=5e-4,
    )  # fmt: skip
    run.train()
    assert run.state.global_step == 10 and checks.skipped == 1 and checks.stop is None
    (entry,) = [h for h in run.state.log_history if "skipped_step" in h]
    assert entry["skipped_step"] == 4 and entry["skipped_batches"].startswith("micro-batches 3-3")
    (weights_3, optimizer_3), (weights_4, optimizer_4) = states.by_step[3], states.by_step[4]
    steps = {k: v.item() for k, v in optimizer_3.items() if k.endswith(".step")}
    assert steps and set(steps.values()) == {3.0}  # every adapter tensor took 3 Adam steps
    assert len(optimizer_3) == 3 * len(weights_3)  # step, exp_avg, exp_avg_sq for each
    assert weights_4.keys() == weights_3.keys() and optimizer_4.keys() == optimizer_3.keys()
    assert [n for n in weights_3 if not torch.equal(weights_4[n], weights_3[n])] == []
    assert [k for k in optimizer_3 if not torch.equal(optimizer_4[k], optimizer_3[k])] == []
    weights_5, optimizer_5 = states.by_step[5]  # the next good step trains again
    assert all(not torch.equal(weights_5[n], weights_4[n]) for n in weights_4 if "lora_B" in n)
    assert {v.item() for k, v in optimizer_5.items() if k.endswith(".step")} == {4.0}
    assert all(torch.isfinite(w).all() for w in trainable(run.model).values())


def test_rollback_stops_after_too_many_in_a_row(tiny_model_dir, tmp_path):
    checks = GradientCheck(on_nonfinite="rollback", max_rollbacks=2)
    run = trainer(tiny_model_dir, tmp_path, [checks], trainer_class=_injector(-1, 1.0))
    first = next(p for p in run.model.parameters() if p.requires_grad)
    first.register_hook(lambda g: g * NAN if run.state.global_step >= 2 else g)
    run.train()
    assert checks.stop.reason is StopReason.NON_FINITE_STEPS and run.state.global_step == 4
    assert all(torch.isfinite(w).all() for w in trainable(run.model).values())


def test_rollback_needs_the_mixin(tiny_model_dir, tmp_path):
    run = trainer(tiny_model_dir, tmp_path, [GradientCheck(on_nonfinite="rollback")])
    with pytest.raises(RecipeError, match="GradientNormMixin"):
        run.train()


# --- the Trainer's conventions -------------------------------------------------------------------


def test_without_a_metric_it_takes_the_trainers_metric_for_best_model(tiny_model_dir, tmp_path):
    """As transformers' EarlyStoppingCallback: metric_for_best_model="accuracy" (and
    load_best_model_at_end=False) makes a default EarlyStopping() watch eval_accuracy, higher
    being better, and its first log event says so. It used to watch eval_loss without a word."""
    stopper = EarlyStopping(patience=3)
    run = trainer(
        tiny_model_dir, tmp_path,
        [ScriptedMetric(scripted(RISING), key="eval_accuracy"), stopper],
        metric_for_best_model="accuracy",
    )  # fmt: skip
    run.train()
    assert (stopper.monitored, stopper.monitor.mode) == ("eval_accuracy", "max")
    assert (stopper.best, stopper.best_step, run.state.global_step) == (0.3, 3, 6)
    first = run.state.log_history[0]
    assert first["early_stopping_metric"] == "eval_accuracy"
    assert stopper.state()["args"]["metric"] is None  # a resumed run takes the Trainer's again
    assert not [h for h in run.state.log_history[1:] if "early_stopping_metric" in h]


def test_without_either_metric_it_watches_eval_loss_and_says_so(tiny_model_dir, tmp_path):
    stopper = EarlyStopping(patience=5)
    run = trainer(tiny_model_dir, tmp_path, [stopper], max_steps=2)
    run.train()
    assert stopper.monitored == "eval_loss" and stopper.evaluations == 2
    assert run.state.log_history[0]["early_stopping_metric"] == "eval_loss"


def test_a_trainer_that_never_evaluates_gets_a_warning_naming_eval_strategy(
    tiny_model_dir, tmp_path
):
    """eval_strategy="no": the callbacks that decide at evaluations would never act; each says
    so once when training starts, naming eval_strategy. GradientCheck acts at every step and
    stays silent."""
    callbacks = [EarlyStopping(), OverfitDetector(), GradientCheck()]
    run = trainer(tiny_model_dir, tmp_path, callbacks, max_steps=2, eval_strategy="no")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run.train()
    ours = [str(w.message) for w in caught if issubclass(w.category, PeftkitWarning)]
    assert len(ours) == 2, ours
    assert ours[0].startswith("EarlyStopping will never act")
    assert ours[1].startswith("OverfitDetector will never act")
    assert all("eval_strategy" in message and "Fix:" in message for message in ours)
    assert "eval_strategy" in run.state.log_history[0]["peftkit_warning"]
