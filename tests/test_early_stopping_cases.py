"""EarlyStopping's decisions, messages and restores on exact cases, by calling its hooks with
real ``TrainingArguments``, ``TrainerState`` and ``TrainerControl`` where a Trainer run cannot
produce the situation (a resumed callback without its in-memory copy, a parameter on another
device) or would only be slower. (Real runs: tests/test_callbacks.py and
tests/test_callbacks_in_trainer.py.)"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from peftkit.callbacks import EarlyStopping, StopReason
from peftkit.callbacks.saving import save_atomically
from peftkit.core.errors import RecipeError
from peftkit.testing import peft_model, trainable, trainer

NAN = float("nan")


def _args(tmp_path: Path, **settings: Any) -> Any:
    from transformers import TrainingArguments

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TrainingArguments(
            str(tmp_path), use_cpu=True, report_to="none", eval_strategy="steps", **settings
        )


def _evaluated(
    stopper: EarlyStopping, tmp_path: Path, values: list[float], model: Any = None, **settings
) -> tuple[Any, Any]:
    """``stopper`` inside training, given one evaluation of ``values[i]`` at step i + 1 (as the
    Trainer dispatches it: the entry appended to ``log_history``, then ``on_log``); it stops
    feeding at a stop."""
    from transformers import TrainerControl, TrainerState

    args, state, control = _args(tmp_path, **settings), TrainerState(), TrainerControl()
    stopper.on_train_begin(args, state, control, model=model)
    for value in values:
        state.global_step += 1
        logs = {"eval_loss": value, "step": state.global_step}
        state.log_history.append(dict(logs))
        stopper.on_log(args, state, control, logs=logs, model=model)
        if control.should_training_stop:
            break
    return state, control


@pytest.mark.parametrize(
    ("values", "options", "reason", "message"),
    [
        pytest.param([1.0, NAN], {}, StopReason.NON_FINITE_METRIC, "eval_loss is nan", id="nan"),
        pytest.param(
            [1.0, 0.5],
            {"stopping_threshold": 0.6},
            StopReason.STOPPING_THRESHOLD,
            "eval_loss=0.5 reached the stopping threshold 0.6",
            id="threshold",
        ),
        pytest.param(
            [1.0, 5.25],
            {"divergence_threshold": 3.0},
            StopReason.DIVERGENCE,
            "eval_loss=5.25 is worse than the divergence threshold 3",
            id="divergence",
        ),
        pytest.param(
            [1.0, 0.9, 0.95, 0.96],
            {"patience": 2, "min_delta": 0.01},
            StopReason.PATIENCE,
            "eval_loss did not improve by more than 0.01 for 2 evaluations (best 0.9 at step 2)",
            id="patience",
        ),
    ],
)
def test_each_stop_says_the_metric_and_its_value(tmp_path, values, options, reason, message):
    """The stop message a user sees names the metric, the value and the rule that stopped."""
    stopper = EarlyStopping(restore_best=False, **options)
    state, control = _evaluated(stopper, tmp_path, values)
    assert control.should_training_stop
    assert (stopper.stop.reason, stopper.stop.message, stopper.stop.step) == (
        reason,
        message,
        len(values),
    )
    assert state.log_history[-1]["stop_message"] == message


def test_a_resumed_callback_without_a_saved_adapter_says_so_and_restores_nothing(
    tiny_model_dir, tmp_path, caplog
):
    """After a resume the best step is known but the in-memory copy is gone. Without
    save_best_to (or without the adapter file, or with a model that is not a peft model) there
    is nothing to load: a warning naming the best step, restore() is False, weights untouched."""
    model = peft_model(tiny_model_dir)
    before = trainable(model)
    saved = tmp_path / "best"
    save_atomically(model, saved, {"step": 2})
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    missing = tmp_path / "never-written"
    for folder, target in ((None, model), (missing, model), (saved, plain)):
        stopper = EarlyStopping(save_best_to=folder)
        stopper.best, stopper.best_step = 0.5, 2  # as the Trainer rebuilds it on a resume
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="peftkit.callbacks.early_stopping"):
            assert stopper.restore(target) is False
        assert not stopper.restored
        assert [r.getMessage() for r in caplog.records] == [
            "the best weights (step 2) are not in memory after resuming and no saved adapter "
            "was found; set save_best_to to restore them across a resume"
        ]
    after = trainable(model)
    assert all(torch.equal(after[n], before[n]) for n in before)


def test_a_resumed_callback_loads_the_saved_adapter(tiny_model_dir, tmp_path):
    """The same resumed callback, with the adapter save_best_to holds: those weights come back."""
    model = peft_model(tiny_model_dir)
    best = trainable(model)
    save_atomically(model, tmp_path / "best", {"step": 2})
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(1.0)
    stopper = EarlyStopping(save_best_to=tmp_path / "best")
    stopper.best, stopper.best_step = 0.5, 2
    assert stopper.restore(model) is True and stopper.restored
    after = trainable(model)
    assert after.keys() == best.keys() and all(torch.equal(after[n], best[n]) for n in best)


def test_a_partly_trainable_plain_model_needs_no_opt_in(tiny_model_dir, tmp_path):
    """Without an adapter the copy is refused only above half the model's bytes: with just the
    output layer trainable (about a quarter of the bytes) training goes ahead and the copy
    holds that layer alone."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith("lm_head")
    share = sum(p.numel() for p in model.lm_head.parameters()) / model.num_parameters()
    assert 0.15 < share < 0.5
    stopper = EarlyStopping()
    trainer(tiny_model_dir, tmp_path, [stopper], model=model, max_steps=1).train()
    assert list(stopper.best_weights) == ["lm_head.weight"]


class _OnAnotherDevice:
    """A trainable parameter as seen by ``_keep_best``, recording where it is asked to copy
    itself to. (The test machine may have one device only, where a copy "to the CPU" and a
    copy "where it is" are the same tensor: a real GPU parameter cannot be made here.)"""

    requires_grad = True

    def __init__(self) -> None:
        self.copies: list[tuple[Any, bool]] = []

    def detach(self) -> _OnAnotherDevice:
        return self

    def to(self, device: Any = None, copy: bool = False) -> torch.Tensor:
        self.copies.append((device, copy))
        return torch.zeros(1)


def test_the_best_weights_are_copied_to_cpu_memory(tmp_path):
    """An improved evaluation copies each trainable parameter to the CPU (an adapter on the GPU
    must not keep a second copy in GPU memory), as a copy, never a view of the live weights."""

    class Model:
        parameter = _OnAnotherDevice()

        def named_parameters(self):
            return [("lora_A", self.parameter)]

        def parameters(self):
            return [torch.zeros(1)]

    model = Model()
    model.peft_config = {}  # an adapter: the copy is what EarlyStopping is for
    stopper = EarlyStopping()
    _evaluated(stopper, tmp_path, [1.0], model=model)
    assert model.parameter.copies == [("cpu", True)]
    assert list(stopper.best_weights) == ["lora_A"]


def test_with_load_best_model_at_end_on_the_same_metric_other_than_loss_the_trainer_restores(
    tmp_path,
):
    """metric_for_best_model="accuracy" and EarlyStopping(metric="eval_accuracy"): the same
    metric, so the Trainer owns "best" and nothing is refused; a default EarlyStopping takes
    the Trainer's metric and agrees too."""
    settings = {
        "load_best_model_at_end": True,
        "metric_for_best_model": "accuracy",
        "save_strategy": "steps",
    }
    for stopper in (EarlyStopping(metric="eval_accuracy"), EarlyStopping()):
        _evaluated(stopper, tmp_path, [], **settings)
        assert (stopper.monitored, stopper.restorer) == ("eval_accuracy", "trainer")
    other = EarlyStopping(metric="eval_loss")
    with pytest.raises(RecipeError, match=r"by eval_accuracy, and EarlyStopping\(restore_best"):
        _evaluated(other, tmp_path, [], **settings)


def test_with_restore_best_off_the_last_weights_stay(tiny_model_dir, tmp_path):
    """restore_best=False with save_best_to: the best adapter is written to the folder, and the
    model keeps the weights of its last step (nothing is put back, from memory or the folder)."""
    from test_callbacks import WeightsAtEvaluation
    from tiny_trainer import ScriptedMetric, scripted

    recorder = WeightsAtEvaluation()
    stopper = EarlyStopping(restore_best=False, save_best_to=tmp_path / "best", patience=5)
    script = ScriptedMetric(scripted([0.5, 0.9, 0.95]))
    run = trainer(tiny_model_dir, tmp_path / "out", [script, recorder, stopper], max_steps=3)
    run.train()
    assert (stopper.best_step, stopper.restored, stopper.best_weights) == (1, False, None)
    after = trainable(run.model)
    assert all(torch.equal(after[n], recorder.by_step[3][n]) for n in after)
    assert not all(torch.equal(after[n], recorder.by_step[1][n]) for n in after)
    assert (tmp_path / "best" / "adapter_model.safetensors").is_file()


def _rank(rank: int, store: str, values: list[list[float]], results: Any, out: str) -> None:
    """One of two processes: join the group and feed this rank's evaluations to an
    EarlyStopping; report its stop."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        stopper = EarlyStopping(patience=1, restore_best=False)
        state, _ = _evaluated(stopper, Path(out), values[rank])
        results.put((rank, stopper.stop.to_dict(), state.log_history[-1]["stop_reason"]))
    except Exception as error:  # reported, so that the test fails at once rather than waiting
        results.put((rank, repr(error), None))
    finally:
        dist.destroy_process_group()


def test_a_stop_on_another_rank_stops_this_one_as_patience(tmp_path):
    """Rank 1 runs out of patience at step 2 while rank 0 improves: rank 0 stops at the same
    step, for the reason "patience", saying another process decided. (Two processes forked from
    this one, so that they run the code this process imported.)"""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    values = [[1.0, 0.5, 0.25], [1.0, 1.5, 2.0]]
    store = str(tmp_path / "store")
    workers = [
        context.Process(target=_rank, args=(rank, store, values, results, str(tmp_path)))
        for rank in (0, 1)
    ]
    for worker in workers:
        worker.start()
    got = dict((rank, rest) for rank, *rest in (results.get(timeout=60) for _ in workers))
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert got[0] == [
        {"reason": "patience", "message": "another process decided to stop", "step": 2},
        "patience",
    ]
    assert got[1][0]["message"].startswith("eval_loss did not improve") and got[1][0]["step"] == 2


def test_before_training_nothing_is_decided(tiny_model_dir, caplog):
    """A new EarlyStopping has watched nothing and keeps nothing; restore() on a train() that
    was interrupted before its first evaluation puts nothing back, without a word."""
    stopper = EarlyStopping()
    assert (stopper.monitored, stopper.monitor, stopper.restorer) == (None, None, None)
    assert (stopper.best, stopper.best_step, stopper.wait, stopper.evaluations) == (
        None,
        None,
        0,
        0,
    )
    assert (stopper.best_weights, stopper.restored, stopper.stop) == (None, False, None)
    with caplog.at_level(logging.DEBUG, logger="peftkit"):
        assert stopper.restore(peft_model(tiny_model_dir)) is False
    assert caplog.records == [] and not stopper.restored


def test_a_non_finite_first_evaluation_is_not_a_miss(tmp_path):
    """With check_finite=False a NaN is neither an improvement nor a failure to improve: with
    patience=1, NaN then two improvements never stop; two finite misses in a row do."""
    stopper = EarlyStopping(check_finite=False, patience=1, restore_best=False)
    _, control = _evaluated(stopper, tmp_path, [NAN, 1.0, 0.9])
    assert (stopper.stop, stopper.wait, stopper.best, stopper.best_step) == (None, 0, 0.9, 3)
    assert not control.should_training_stop
    missed = EarlyStopping(check_finite=False, patience=1, restore_best=False)
    _evaluated(missed, tmp_path, [NAN, 1.0, 1.5])
    assert (missed.stop.reason, missed.stop.step, missed.wait) == (StopReason.PATIENCE, 3, 1)


def test_an_adapter_is_copied_whatever_its_share_of_the_bytes(tiny_model_dir, tmp_path):
    """A rank-128 adapter on the tiny model is over half its bytes: still an adapter, so the
    copy is what EarlyStopping is for, and nothing is refused."""
    model = peft_model(tiny_model_dir, r=128)
    adapter = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert adapter > 0.5 * sum(p.numel() for p in model.parameters())
    stopper = EarlyStopping()
    _evaluated(stopper, tmp_path, [1.0], model=model)
    assert stopper.best_weights is not None and len(stopper.best_weights) == len(
        [p for p in model.parameters() if p.requires_grad]
    )


def test_exactly_half_the_bytes_trainable_is_not_a_full_copy(tmp_path):
    """Two equal layers, one frozen: trainable weights are exactly half the model's bytes, which
    is not above FULL_COPY_SHARE; one more trainable tensor is, and is refused."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    model[1].requires_grad_(False)
    stopper = EarlyStopping()
    _evaluated(stopper, tmp_path, [1.0], model=model)
    assert list(stopper.best_weights) == ["0.weight", "0.bias"]
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    model[1].weight.requires_grad_(False)
    with pytest.raises(RecipeError, match=r"would copy 0\.00 GB of trainable weights"):
        _evaluated(EarlyStopping(), tmp_path, [], model=model)
