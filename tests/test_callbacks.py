"""The three callbacks in real Trainer runs on the tiny model.

Stop decisions are tested with a scripted metric: a callback placed before EarlyStopping writes
the value of each evaluation into the metrics the Trainer computed, so the run is real and the
sequence is exact.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
from tiny_trainer import ScriptedMetric, scripted
from transformers import Trainer, TrainerCallback

from peftkit import PeftkitWarning, recipes
from peftkit.callbacks import (
    EarlyStopping,
    GradientCheck,
    GradientNormMixin,
    OverfitDetector,
    StopReason,
    find,
)
from peftkit.core.errors import RecipeError
from peftkit.testing import peft_model, text_rows, trainable, trainer

NAN, INF = float("nan"), float("inf")


class WeightsAtEvaluation(TrainerCallback):
    """Record the trainable weights at every evaluation, to compare with what is restored."""

    def __init__(self) -> None:
        self.by_step: dict[int, dict[str, torch.Tensor]] = {}

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        self.by_step[state.global_step] = trainable(model)


@pytest.mark.parametrize(
    ("sequence", "options", "stop_step", "reason"),
    [
        pytest.param(
            [1.0, 0.9, 0.95, 0.96, 0.97, 0.5],
            {"patience": 3},
            5,
            StopReason.PATIENCE,
            id="patience",
        ),
        pytest.param(
            [1.0, 0.98, 0.97, 0.96, 0.2],
            {"patience": 3, "min_delta": 0.05},
            4,
            StopReason.PATIENCE,
            id="min_delta",
        ),
        pytest.param(
            [1.0, 0.8, 0.5, 0.4],
            {"stopping_threshold": 0.6},
            3,
            StopReason.STOPPING_THRESHOLD,
            id="stopping-threshold",
        ),
        pytest.param(
            [1.0, 0.8, 0.6, 0.4],
            {"stopping_threshold": 0.6},
            3,
            StopReason.STOPPING_THRESHOLD,
            id="exactly-at-the-stopping-threshold",
        ),
        pytest.param(
            [1.0, 1.2, 3.0, 3.5],
            {"divergence_threshold": 3.0},
            4,
            StopReason.DIVERGENCE,
            id="exactly-at-the-divergence-threshold-goes-on",
        ),
        pytest.param(
            [1.0, 1.2, 5.0, 0.1],
            {"divergence_threshold": 3.0},
            3,
            StopReason.DIVERGENCE,
            id="divergence",
        ),
        pytest.param([1.0, 0.9, NAN, 0.5], {}, 3, StopReason.NON_FINITE_METRIC, id="nan"),
        pytest.param(
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            {"patience": 1, "start_after": 4},
            4,
            StopReason.PATIENCE,
            id="start_after",
        ),
        pytest.param(
            [1.0 - step / 20 for step in range(10)], {"patience": 1}, None, None, id="improving"
        ),
    ],
)
def test_stop_step_min_mode(tiny_model_dir, tmp_path, sequence, options, stop_step, reason):
    stopper = EarlyStopping(**options, restore_best=False)
    run = trainer(tiny_model_dir, tmp_path, [ScriptedMetric(scripted(sequence)), stopper])
    run.train()
    if stop_step is None:
        assert stopper.stop is None and run.state.global_step == 10
        return
    assert run.state.global_step == stop_step
    assert stopper.stop.reason is reason and stopper.stop.step == stop_step
    (entry,) = [h for h in run.state.log_history if h.get("peftkit_stop") == "EarlyStopping"]
    # the stop is part of the evaluation's own log event, with its metrics and the best so far
    assert {k: entry[k] for k in ("peftkit_stop", "stop_reason", "stop_message", "step")} == {
        "peftkit_stop": "EarlyStopping",
        "stop_reason": reason.value,
        "stop_message": stopper.stop.message,
        "step": stop_step,
    }
    assert entry["eval_loss"] == sequence[stop_step - 1] or math.isnan(entry["eval_loss"])
    assert entry["eval_loss_best"] == stopper.best


@pytest.mark.parametrize(
    ("sequence", "options", "stop_step", "reason"),
    [
        pytest.param(
            [0.1, 0.5, 0.4, 0.3, 0.2], {"patience": 3}, 5, StopReason.PATIENCE, id="patience"
        ),
        pytest.param(
            [0.1, 0.5, 0.95],
            {"stopping_threshold": 0.9},
            3,
            StopReason.STOPPING_THRESHOLD,
            id="threshold",
        ),
        pytest.param(
            [0.1, 0.5, 0.9, 0.95],
            {"stopping_threshold": 0.9},
            3,
            StopReason.STOPPING_THRESHOLD,
            id="exactly-at-the-threshold",
        ),
        pytest.param(
            [0.5, 0.4, 0.05],
            {"divergence_threshold": 0.1},
            3,
            StopReason.DIVERGENCE,
            id="divergence",
        ),
        pytest.param(
            [0.5, 0.1, 0.05],
            {"divergence_threshold": 0.1},
            3,
            StopReason.DIVERGENCE,
            id="exactly-at-the-divergence-threshold-goes-on",
        ),
        pytest.param(
            [0.5, 0.52, 0.54, 0.55, 0.9],
            {"patience": 3, "min_delta": 0.05},
            4,
            StopReason.PATIENCE,
            id="min_delta",
        ),
    ],
)
def test_stop_step_max_mode(tiny_model_dir, tmp_path, sequence, options, stop_step, reason):
    """mode='auto' infers max from 'accuracy'; the same rules apply mirrored: a rise of at most
    min_delta is no improvement, a value at the stopping threshold stops, one at the divergence
    threshold does not."""
    stopper = EarlyStopping(metric="eval_accuracy", mode="auto", restore_best=False, **options)
    script = ScriptedMetric(scripted(sequence), key="eval_accuracy")
    run = trainer(tiny_model_dir, tmp_path, [script, stopper], max_steps=len(sequence))
    run.train()
    assert stopper.monitor.mode == "max" and stopper.stop is not None
    assert (run.state.global_step, stopper.stop.reason) == (stop_step, reason)


def test_missing_metric_lists_the_available_ones(tiny_model_dir, tmp_path):
    run = trainer(tiny_model_dir, tmp_path, [EarlyStopping(metric="eval_bleu")])
    with pytest.raises(RecipeError, match=r"eval_bleu.*available: .*eval_loss"):
        run.train()


def test_auto_mode_needs_a_telling_name(tiny_model_dir, tmp_path):
    """Refused when training begins, before the first step: not at the first evaluation."""
    run = trainer(tiny_model_dir, tmp_path, [EarlyStopping(metric="eval_something")])
    with pytest.raises(RecipeError, match=r"eval_something.*Fix: pass mode='max'"):
        run.train()
    assert run.state.global_step == 0


def test_restores_the_best_adapter_tensor_for_tensor(tiny_model_dir, tmp_path):
    """Best at step 3; stopped at step 6; the weights afterwards are step 3's, exactly."""
    recorder = WeightsAtEvaluation()
    stopper = EarlyStopping(patience=3, save_best_to=tmp_path / "best")
    script = ScriptedMetric(scripted([1.0, 0.9, 0.5, 0.8, 0.9, 0.95]))
    run = trainer(tiny_model_dir, tmp_path / "out", [script, recorder, stopper])
    run.train()
    assert (run.state.global_step, stopper.best_step, stopper.restored) == (6, 3, True)
    after = trainable(run.model)
    best, last = recorder.by_step[3], recorder.by_step[6]
    assert after.keys() == best.keys()
    assert all(torch.equal(after[n], best[n]) for n in best)
    assert not all(torch.equal(last[n], best[n]) for n in best)  # the restore changed something
    marker = json.loads((tmp_path / "best" / "peftkit_best.json").read_text())
    assert marker == {"metric": "eval_loss", "value": 0.5, "step": 3}


def test_model_evaluates_to_the_best_metric_after_training(tiny_model_dir, tmp_path):
    """A learning rate that wrecks the model after a few steps: the restored one is the best."""
    stopper = EarlyStopping(patience=2)
    run = trainer(tiny_model_dir, tmp_path, [stopper], learning_rate=0.5, max_steps=12)
    run.train()
    evaluations = [h["eval_loss"] for h in run.state.log_history if "eval_loss" in h]
    assert stopper.best == min(evaluations) < evaluations[-1]
    assert run.evaluate()["eval_loss"] == pytest.approx(stopper.best, rel=1e-6)


def test_saved_best_adapter_loads_and_matches_memory(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    stopper = EarlyStopping(patience=2, save_best_to=tmp_path / "best")
    script = ScriptedMetric(scripted([1.0, 0.4, 0.8, 0.9]))
    run = trainer(tiny_model_dir, tmp_path / "out", [script, stopper])
    run.train()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    loaded = trainable(PeftModel.from_pretrained(base, tmp_path / "best", is_trainable=True))
    assert loaded.keys() == stopper.best_weights.keys()
    assert all(torch.equal(loaded[n], stopper.best_weights[n]) for n in loaded)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".best")]
    assert leftovers == []


def test_refuses_to_replace_a_folder_it_did_not_write(tiny_model_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    run = trainer(tiny_model_dir, tmp_path / "out", [EarlyStopping(save_best_to=mine)])
    with pytest.raises(RecipeError, match=r"notes\.txt, which peftkit did not write"):
        run.train()
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_full_fine_tuning_copy_needs_opt_in(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    full = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    run = trainer(tiny_model_dir, tmp_path, [EarlyStopping()], model=full, max_steps=2)
    with pytest.raises(ValueError, match=r"GB.*allow_full_copy=True"):
        run.train()
    opted_in = EarlyStopping(allow_full_copy=True)
    full = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainer(tiny_model_dir, tmp_path, [opted_in], model=full, max_steps=2).train()
    assert opted_in.best_weights is not None and len(opted_in.best_weights) == len(
        list(full.parameters())
    )


def test_state_survives_resume_from_checkpoint(tiny_model_dir, tmp_path):
    """Stop the first run at step 4 (best 0.9 at step 2, counter 2); the resumed run continues
    the counter and stops at step 5, and restores step 2's adapter from save_best_to."""
    values = scripted([1.0, 0.9, 0.95, 0.97, 0.98, 0.99, 0.5])
    recorder = WeightsAtEvaluation()
    common = {
        "save_strategy": "steps",
        "save_steps": 4,
        "restore_callback_states_from_checkpoint": True,
    }
    first = EarlyStopping(patience=3, save_best_to=tmp_path / "best")
    trainer(
        tiny_model_dir,
        tmp_path / "out",
        [ScriptedMetric(values), recorder, first],
        max_steps=4,
        **common,
    ).train()
    assert (first.best, first.best_step, first.wait, first.stop) == (0.9, 2, 2, None)

    second = EarlyStopping(patience=3, save_best_to=tmp_path / "best")
    resumed = trainer(
        tiny_model_dir, tmp_path / "out", [ScriptedMetric(values), second], max_steps=10, **common
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    live = find(resumed, EarlyStopping)
    assert live is not second  # the Trainer rebuilt it from the checkpoint
    assert (live.best, live.best_step, live.wait) == (0.9, 2, 3)
    assert resumed.state.global_step == 5 and live.stop.reason is StopReason.PATIENCE
    after = trainable(resumed.model)
    assert live.restored
    assert all(torch.equal(after[n], recorder.by_step[2][n]) for n in after)


class LossInjector(GradientNormMixin, Trainer):
    """Multiply the loss by ``factor`` at one optimizer step (a NaN, or a spike)."""

    inject_at: int = -1
    factor: float = 1.0

    def compute_loss(self, model, inputs, *args, **kwargs):
        result = super().compute_loss(model, inputs, *args, **kwargs)
        if not model.training or self.state.global_step + 1 != self.inject_at:
            return result
        return _scaled(result, self.factor)


def _scaled(result: Any, factor: float) -> Any:
    """compute_loss returns the loss, or (loss, outputs) when asked for the outputs."""
    if isinstance(result, tuple):
        return (result[0] * factor, *result[1:])
    return result * factor


def _injector(at: int, factor: float) -> type[LossInjector]:
    return type("Injector", (LossInjector,), {"inject_at": at, "factor": factor})


@pytest.mark.parametrize("where", ["loss", "gradients"])
def test_nan_stops_within_one_step_and_keeps_the_best_adapter(tiny_model_dir, tmp_path, where):
    stopper = EarlyStopping(patience=5, save_best_to=tmp_path / "best")
    checks = GradientCheck()
    model = peft_model(tiny_model_dir)
    kind = _injector(4, NAN if where == "loss" else 1.0)
    run = trainer(
        tiny_model_dir, tmp_path / "out", [stopper, checks], model=model, trainer_class=kind
    )
    if where == "gradients":
        first = next(p for p in model.parameters() if p.requires_grad)
        first.register_hook(lambda g: g * NAN if run.state.global_step + 1 == 4 else g)
        # (the hook only runs in backward passes, so evaluation is untouched)
    run.train()
    assert run.state.global_step == 4
    assert checks.stop.reason is StopReason.NON_FINITE_GRADIENT and checks.non_finite == 1
    weights = trainable(run.model)
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert stopper.best_step <= 3
    assert all(torch.isfinite(w).all() for w in stopper.best_weights.values())
    # The model ends with the best evaluation's weights, and those are what was saved.
    assert stopper.restored and weights.keys() == stopper.best_weights.keys()
    assert all(torch.equal(weights[k], stopper.best_weights[k]) for k in weights)
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    on_disk = load_file(tmp_path / "best" / "adapter_model.safetensors")
    in_memory = get_peft_model_state_dict(run.model)
    assert on_disk and on_disk.keys() == in_memory.keys()
    assert all(torch.equal(on_disk[k], in_memory[k]) for k in on_disk)
    assert json.loads((tmp_path / "best" / "peftkit_best.json").read_text())["step"] == (
        stopper.best_step
    )


def test_without_the_mixin_a_nan_is_caught_at_the_log_and_the_best_is_restored(
    tiny_model_dir, tmp_path
):
    """In an unmodified Trainer the NaN step is applied, but training stops at that step and
    EarlyStopping puts the last good adapter back."""

    class NanAtStep3(Trainer):
        def compute_loss(self, model, inputs, *args, **kwargs):
            result = super().compute_loss(model, inputs, *args, **kwargs)
            at_step_3 = model.training and self.state.global_step + 1 == 3
            return _scaled(result, NAN) if at_step_3 else result

    stopper, checks = EarlyStopping(patience=5), GradientCheck()
    run = trainer(tiny_model_dir, tmp_path, [stopper, checks], trainer_class=NanAtStep3)
    run.train()
    assert run.state.global_step == 3 and checks.stop.reason is StopReason.NON_FINITE_GRADIENT
    weights = trainable(run.model)
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert stopper.restored and stopper.best_step <= 2  # an evaluation before the NaN step
    assert all(torch.equal(weights[k], stopper.best_weights[k]) for k in weights)


def test_gradient_check_counts_clipping_and_spikes(tiny_model_dir, tmp_path):
    checks = GradientCheck(min_steps=5)
    run = trainer(
        tiny_model_dir,
        tmp_path,
        [checks],
        trainer_class=_injector(15, 1000.0),
        max_grad_norm=1e-6,
        max_steps=20,
        eval_strategy="no",
    )
    with pytest.warns(PeftkitWarning, match="learning rate is likely too high"):
        run.train()
    assert checks.per_step and checks.steps == 20 and checks.clipped == 20
    assert checks.spikes == 1
    logged = [h for h in run.state.log_history if "loss" in h]
    assert logged[-1]["clipped_fraction"] == 1.0 and logged[-1]["grad_spikes"] == 1


def test_gradient_check_reports_norms_and_warns_when_clipping_is_off(tiny_model_dir, tmp_path):
    """Norms never reaching max_grad_norm are no warning (clipping is a safety net); the largest
    norm is in every training log event. Clipping switched off is one warning."""
    never = GradientCheck(min_steps=5)
    run = trainer(
        tiny_model_dir, tmp_path, [never], max_grad_norm=1e6, max_steps=6, eval_strategy="no"
    )
    run.train()
    assert never.clipped == 0 and never.steps == 6  # plain callback: every step logged
    logged = [h for h in run.state.log_history if "loss" in h]
    assert [h["grad_norm_max"] for h in logged] == [h["grad_norm"] for h in logged]
    with pytest.warns(PeftkitWarning, match="clipping is off"):
        trainer(
            tiny_model_dir,
            tmp_path,
            [GradientCheck()],
            max_grad_norm=0,
            max_steps=2,
            eval_strategy="no",
        ).train()


def test_overfitting_run_is_detected_soon_after_the_eval_minimum(tiny_model_dir, tmp_path):
    """Four examples, many epochs: train loss falls, eval loss turns up."""
    rows = text_rows(200)
    detector = OverfitDetector(action="stop")
    run = trainer(
        tiny_model_dir,
        tmp_path,
        [detector],
        train_rows=rows[:4],
        eval_rows=rows[100:116],
        learning_rate=5e-3,
        max_steps=60,
        eval_steps=3,
        logging_steps=3,
    )
    run.train()
    evals = [(h["step"], h["eval_loss"]) for h in run.state.log_history if "eval_loss" in h]
    minimum_step = min(evals, key=lambda e: e[1])[0]
    assert detector.detected
    assert 0 < detector.detected_step - minimum_step <= 3 * 3  # within three evaluations
    assert run.state.global_step == detector.detected_step  # action='stop'
    gaps = [h["overfit_gap"] for h in run.state.log_history if "overfit_gap" in h]
    assert len(gaps) == len(evals) and gaps[-1] > gaps[0]


def test_healthy_run_stays_silent(tiny_model_dir, tmp_path, recwarn):
    rows = text_rows(200)
    detector = OverfitDetector()
    run = trainer(
        tiny_model_dir,
        tmp_path,
        [detector],
        train_rows=rows[:96],
        eval_rows=rows[100:116],
        max_steps=30,
        eval_steps=3,
        logging_steps=3,
    )
    run.train()
    assert not detector.detected and len(detector.history) == 10
    assert not [w for w in recwarn if issubclass(w.category, PeftkitWarning)]


def test_recipe_builds_the_three_callbacks_with_its_settings():
    recipe = recipes.load(
        "json-output",
        ["callbacks.early_stopping.patience=5", "callbacks.overfit.action=stop"]
        + ["callbacks.gradient_checks.spike_factor=4", "callbacks.early_stopping.min_delta=0.01"],
    )
    stopper, detector, checks = recipe.build_callbacks()
    assert isinstance(stopper, EarlyStopping) and (stopper.patience, stopper.min_delta) == (5, 0.01)
    assert stopper.mode == "auto"
    assert isinstance(detector, OverfitDetector) and detector.action == "stop"
    assert isinstance(checks, GradientCheck) and checks.spike_factor == 4
    fewer = recipes.load("json-output", ["callbacks.overfit.enabled=false"]).build_callbacks()
    assert [type(c) for c in fewer] == [EarlyStopping, GradientCheck]


def test_callback_state_is_json_serialisable(tiny_model_dir, tmp_path):
    callbacks: list[Any] = [EarlyStopping(patience=2), OverfitDetector(), GradientCheck()]
    trainer(tiny_model_dir, tmp_path, callbacks, max_steps=4).train()
    for callback in callbacks:
        json.dumps(callback.state())
        assert math.isfinite(json.loads(json.dumps(callback.state()))["args"].get("patience", 1))


# --- GradientCheck on exact sequences of norms -------------------------------------------------


def _fed(norms: list[float], checks: GradientCheck | None = None, **settings: Any) -> Any:
    """A GradientCheck given ``norms`` one optimizer step at a time, as GradientNormMixin hands
    them over (real TrainingArguments, TrainerState and TrainerControl; no model, so a
    non-finite norm has no gradients to drop)."""
    import warnings as _warnings

    from transformers import TrainerControl, TrainerState, TrainingArguments

    checks = checks or GradientCheck(min_steps=5)
    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", FutureWarning)
        args = TrainingArguments("unused", use_cpu=True, report_to="none", **settings)
    state, control = TrainerState(), TrainerControl()
    checks.training = True
    for norm in norms:
        checks.on_grad_norm(args, state, control, grad_norm=torch.tensor(norm))
        state.global_step += 1
    return checks, args, state, control


def test_spikes_are_judged_against_the_median_of_the_recent_norms():
    """A norm above spike_factor x the median of the last norms is a spike, once ten norms are
    there to judge by; the window keeps the last `window` norms; the largest is kept."""
    checks, *_ = _fed([1.0] * 9 + [50.0], GradientCheck(spike_factor=10))
    assert checks.spikes == 0  # nine norms: too few to judge
    checks, *_ = _fed([1.0] * 10 + [50.0], GradientCheck(spike_factor=10))
    assert checks.spikes == 1  # ten are enough
    checks, *_ = _fed([1.0] * 10 + [10.0, 10.5, 30.0], GradientCheck(spike_factor=10, window=12))
    assert checks.spikes == 2  # 10.0 is not above 10 x 1.0; 10.5 is; 30 is too
    assert len(checks.recent) == 12 and checks.recent[-3:] == [10.0, 10.5, 30.0]
    assert checks.max_norm_seen == 30.0 and checks.steps == 13 and checks.per_step
    zeros, *_ = _fed([0.0] * 12 + [5.0])
    assert zeros.spikes == 0  # a median of zero judges nothing


def test_clipping_is_counted_above_max_grad_norm_and_warned_from_min_steps(recwarn):
    """Clipped: a norm above max_grad_norm (not at it). The warning comes once the share of
    clipped steps reaches clipped_warn_fraction after min_steps, and suggests a third of the
    learning rate."""
    checks, *_ = _fed([1.0, 1.5, 2.0], max_grad_norm=1.5)
    assert checks.clipped == 1 and checks.clipped_fraction == pytest.approx(1 / 3)
    settings = {"max_grad_norm": 1.0, "learning_rate": 3e-4}
    quiet = GradientCheck(min_steps=4, clipped_warn_fraction=0.75)
    _fed([2.0, 2.0, 2.0, 0.5], quiet, **settings)  # 3 of 4 clipped: exactly the share
    ours = [w for w in recwarn if issubclass(w.category, PeftkitWarning)]
    assert len(ours) == 1 and "75% of 4 steps were clipped at max_grad_norm=1" in str(
        ours[0].message
    )
    assert "training.learning_rate=0.0001" in str(ours[0].message)
    recwarn.clear()
    _fed([2.0, 2.0, 2.0], GradientCheck(min_steps=4, clipped_warn_fraction=0.5), **settings)
    assert not [w for w in recwarn if issubclass(w.category, PeftkitWarning)]  # before min_steps
    _fed([2.0, 0.5, 0.5, 0.5], GradientCheck(min_steps=4, clipped_warn_fraction=0.5), **settings)
    assert not [w for w in recwarn if issubclass(w.category, PeftkitWarning)]  # 25% < 50%
    assert GradientCheck().clipped_fraction == 0.0


def test_a_non_finite_norm_stops_at_the_step_before_it():
    checks, *_, control = _fed([1.0, 1.0, NAN, 1.0])
    assert checks.non_finite == 1 and control.should_training_stop
    assert checks.stop.reason is StopReason.NON_FINITE_GRADIENT and checks.stop.step == 2
    assert checks.stop.message.startswith("gradient norm is nan at step 3; stopped before")
    assert checks.max_norm_seen == 1.0  # the NaN is not a norm seen


def test_with_fp16_a_non_finite_norm_is_counted_not_stopped_on():
    """fp16's gradient scaler skips such steps itself and lowers its scale. (fp16 needs a GPU:
    the setting is put on the arguments after they were made.)"""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args = TrainingArguments("unused", use_cpu=True, report_to="none")
    args.fp16 = True
    checks, state, control = GradientCheck(), TrainerState(), TrainerControl()
    for norm in (1.0, INF, NAN, 1.0):
        checks.on_grad_norm(args, state, control, grad_norm=torch.tensor(norm))
    assert (checks.non_finite, checks.steps, checks.stop) == (2, 4, None)
    assert not control.should_training_stop


def test_skipped_batches_are_named_with_accumulation_and_epoch():
    from peftkit.callbacks.gradients import _micro_batches

    class Args:
        gradient_accumulation_steps = 4

    class State:
        epoch = 1.25

    assert _micro_batches(3, Args(), State()) == "micro-batches 8-11, epoch 1.25"
    State.epoch = None
    assert _micro_batches(1, Args(), State()) == "micro-batches 0-3"


def test_rollback_counts_skipped_steps_in_a_row_and_reports_each(caplog):
    """On a real module (a Linear layer whose gradients are dropped): a NaN at the very first
    step is skipped like any other; a finite norm resets the count in a row; max_rollbacks in
    a row stop. Each skip is logged, with its batches, and reported in the next log event."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    layer = torch.nn.Linear(2, 2)
    layer(torch.ones(1, 2)).sum().backward()
    args = TrainingArguments("unused", use_cpu=True, report_to="none")
    checks = GradientCheck(on_nonfinite="rollback", max_rollbacks=2)
    state, control = TrainerState(), TrainerControl()
    state.epoch = 0.0
    checks.training = True
    for norm in (NAN, 1.0, NAN, INF):
        control.should_log = False
        checks.on_grad_norm(args, state, control, grad_norm=torch.tensor(norm), model=layer)
        state.global_step += 1
        if state.global_step == 1:
            assert control.should_log and not control.should_training_stop
            assert layer.weight.grad is None  # dropped, not zeroed
            logs = {"loss": 1.0}
            state.log_history.append({"step": 1})
            checks.on_log(args, state, control, logs=logs)
            assert (logs["skipped_step"], logs["skipped_steps"]) == (1, 1)
            assert logs["skipped_batches"] == "micro-batches 0-0, epoch 0.00"
    assert (checks.skipped, checks.skipped_in_a_row, checks.non_finite) == (3, 2, 3)
    assert checks.stop.reason is StopReason.NON_FINITE_STEPS and checks.stop.step == 4
    assert control.should_training_stop
    assert caplog.messages[0] == (
        "skipped step 1 (micro-batches 0-0, epoch 0.00): gradient norm nan"
    )


def test_each_training_log_event_gets_the_clipping_figures():
    """The share of clipped steps (4 decimals), the spikes, and the largest norm since the
    previous log event, which starts again from zero; the first norm seen may be below 1."""
    checks, args, state, control = _fed([0.5, 2.0, 0.4], max_grad_norm=1.0)
    assert checks.max_norm_seen == 2.0
    logs = {"loss": 1.0, "grad_norm": 0.4}
    checks.on_log(args, state, control, logs=logs)
    assert (logs["clipped_fraction"], logs["grad_spikes"], logs["grad_norm_max"]) == (
        0.3333,
        0,
        2.0,
    )
    small, *_ = _fed([0.25])
    assert small.max_norm_seen == 0.25
    assert checks._largest_since_log == 0.0


def test_a_spike_is_measured_against_the_median_times_the_factor():
    checks, *_ = _fed([2.0] * 10 + [10.0], GradientCheck(spike_factor=10))
    assert checks.spikes == 0  # 10 is not above 10 x 2
    checks, *_ = _fed([2.0] * 10 + [21.0], GradientCheck(spike_factor=10))
    assert checks.spikes == 1


def test_the_mixin_needs_a_trainer_after_it():
    with pytest.raises(TypeError, match="GradientNormMixin needs a transformers Trainer"):
        type("NotATrainer", (GradientNormMixin, object), {})
