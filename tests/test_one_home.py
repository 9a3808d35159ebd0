"""Rules that used to be written in several places, each asked in its one home by every place
that needs it: a model name (folder or Hub id), the optimizers, the numeric limits, switching
evaluation off, text data with the loss on completions, clipping switched off, the sections'
hints for foreign keys, FSDP's storage dtype, the cost of activation checkpointing, and how a
callback records its stop."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from peftkit import recipes
from peftkit.callbacks.settings import AT_EVALUATIONS, CLIPPING_OFF
from peftkit.core import limits
from peftkit.core.errors import PeftkitWarning, problems
from peftkit.core.names import is_hub_id, is_local
from peftkit.memory.optimizers import OPTIMIZERS
from peftkit.recipes.foreign_keys import FOREIGN_KEYS, OLD_NAMES, is_local_data
from peftkit.recipes.overrides import assignments
from peftkit.recipes.rules import EVALUATION_OFF


def _quiet(load: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PeftkitWarning)
        return load()


@pytest.mark.parametrize(
    ("name", "hub"),
    [
        ("HuggingFaceTB/SmolLM2-135M", True),
        ("org/name.v2_x-y", True),
        ("./org/name", False),
        ("/models/name", False),
        ("~/name", False),
        ("name", False),  # no slash: a folder here, if anywhere
        ("a/b/c", False),
        ("my models/name", False),  # a space: no Hub id has one
    ],
)
def test_a_name_is_a_hub_id_or_a_folder_here(name: str, hub: bool):
    assert is_hub_id(name) is hub
    assert is_local(name) is not hub


def test_an_existing_folder_is_local_whatever_it_looks_like(tmp_path, monkeypatch):
    """The folder ``org/name`` in the working directory is that folder for the model loader,
    the planner and the card, and ``peftkit import`` reads data from it; a data file named
    like a Hub id is a file."""
    monkeypatch.chdir(tmp_path)
    assert is_hub_id("org/name") and not is_local_data("org/name")
    (tmp_path / "org" / "name").mkdir(parents=True)
    assert not is_hub_id("org/name") and is_local("org/name") and is_local_data("org/name")
    assert is_local_data("org/train.jsonl")


def test_one_table_of_optimizers():
    """What a recipe takes, what `peftkit estimate` takes, what the estimate costs and what
    needs bitsandbytes come from the one table."""
    from peftkit.cli import app  # noqa: F401 (the option's help is built from the table)
    from peftkit.memory import Setup, estimate, shape_of
    from peftkit.recipes.training import TrainingSection

    annotation = TrainingSection.model_fields["optimizer"].annotation
    assert set(annotation.__args__) == set(OPTIMIZERS)
    config = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2}
    config |= {"num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 512}
    shape = shape_of(config)
    for name, facts in OPTIMIZERS.items():
        optimizer = estimate(shape, Setup(optimizer=name)).optimizer
        assert (optimizer == 0) is (facts.state_bytes == 0), name
        recipe = _quiet(lambda n=name: recipes.load("json-output", [f"training.optimizer={n}"]))
        assert recipe.training.optimizer == name


def test_the_numeric_limits_are_the_fields_bounds():
    from peftkit.recipes.budget import BudgetSection
    from peftkit.recipes.lora import LoraSection
    from peftkit.recipes.training import TrainingSection

    def bound(section: Any, field: str, kind: str) -> Any:
        found = [getattr(m, kind, None) for m in section.model_fields[field].metadata]
        return next(value for value in found if value is not None)

    assert bound(TrainingSection, "max_length", "ge") == limits.SHORTEST_SEQUENCE
    assert bound(TrainingSection, "max_length", "le") == limits.LONGEST_SEQUENCE
    assert bound(TrainingSection, "batch_size", "le") == limits.MAX_BATCH
    assert bound(TrainingSection, "gradient_accumulation_steps", "le") == limits.MAX_ACCUMULATION
    assert bound(LoraSection, "r", "le") == limits.MAX_RANK
    assert bound(BudgetSection, "gpus", "le") == limits.MAX_GPUS


def test_switching_evaluation_off_is_spelled_once():
    """The callbacks that decide at evaluations are named by their settings; the importer's
    `eval_strategy: no`, the rule's fix and the data's fix all switch off the same ones."""
    from peftkit.callbacks import EarlyStopping, GradientCheck, OverfitDetector

    assert set(AT_EVALUATIONS) == {"early_stopping", "overfit"}
    assert EarlyStopping.AT_EVALUATIONS and OverfitDetector.AT_EVALUATIONS
    assert not GradientCheck.AT_EVALUATIONS
    assert FOREIGN_KEYS["eval_strategy"].translate("no").settings == EVALUATION_OFF
    data = {"recipe": "json-output", "training": {"eval_fraction": 0}}
    with pytest.raises(ValidationError) as info:
        _quiet(lambda: recipes.from_dict(data))
    (problem,) = problems(info.value)
    assert problem.fix.endswith(assignments(EVALUATION_OFF))


def test_text_data_with_the_loss_on_completions_is_one_rule(tmp_path: Path):
    """The recipe refuses it with the reason the importer gives for leaving the setting out."""
    from peftkit.recipes.importing import convert

    with pytest.raises(ValidationError) as info:
        _quiet(lambda: recipes.load("domain-adaptation", ["data.completion_only_loss=true"]))
    (problem,) = problems(info.value)
    config = tmp_path / "axolotl.yml"
    config.write_text("pretraining_dataset: corpus.jsonl\ntrain_on_inputs: false\n")
    imported = _quiet(lambda: convert(config, tmp_path / "out.yaml"))
    skipped = {s.key: s.reason for s in imported.conversion.skipped}
    assert skipped["train_on_inputs"] == problem.rule


def test_clipping_switched_off_is_said_once_per_run():
    """The recipe says it when it loads, GradientCheck when its run starts: the same words from
    the same place, which Python's default filter shows once."""
    from peftkit.callbacks import GradientCheck

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        recipe = recipes.load("json-output", ["training.max_grad_norm=0"])
        (checks,) = [c for c in recipe.build_callbacks() if isinstance(c, GradientCheck)]
        args = SimpleNamespace(
            max_grad_norm=0, eval_strategy="no", restore_callback_states_from_checkpoint=True
        )
        checks.on_train_begin(args, SimpleNamespace(global_step=0), SimpleNamespace())
    said = [str(w.message) for w in caught if issubclass(w.category, PeftkitWarning)]
    assert said == [CLIPPING_OFF]
    assert checks.warned == ["clipping-off"]  # and the run's log hears of it too


def test_a_section_suggests_every_key_of_the_table_that_names_its_field():
    """A TRL or axolotl key nested in the section of its home gets "did you mean" the field (or,
    for a key current TRL renamed, is taken under its old name): the sections read the hints
    from the table."""
    sections = {"training", "lora", "quantization", "model", "data"}
    for key in FOREIGN_KEYS.values():
        section, _, field = (key.home or "").rpartition(".")
        if not key.renames or section not in sections or field == key.name:
            continue
        data = {"recipe": "custom", section: {key.name: None}}
        try:
            _quiet(lambda d=data: recipes.from_dict(d))
        except ValidationError as error:
            found = {p.path: p for p in problems(error)}
            problem = found.get(f"{section}.{key.name}")
            if key.name in OLD_NAMES:
                assert problem is None, key.name  # mapped, so any problem is the field's
            else:
                assert problem is not None and f"did you mean '{field}'" in problem.rule, key


def test_fsdp_storage_dtype_is_one_rule_for_the_recipe_and_the_planner():
    """A 4-bit storage dtype other than the compute dtype: refused under FSDP, and the planner's
    advice to shard says to change it; auto storage is fine for both."""
    from peftkit.recipes.planning import request_of

    written = ["quantization.compute_dtype=bfloat16", "quantization.storage_dtype=float16"]
    recipe = _quiet(lambda: recipes.load("qlora-budget", written))
    assert "quantization.storage_dtype=auto" in request_of(recipe, 1, "bfloat16").to_shard
    with pytest.raises(ValidationError, match="storage_dtype"):
        _quiet(lambda: recipes.load("qlora-budget", [*written, "distributed.strategy=fsdp"]))
    fine = _quiet(lambda: recipes.load("qlora-budget", ["distributed.strategy=fsdp"]))
    assert "quantization.storage_dtype=auto" not in request_of(fine, 1, "bfloat16").to_shard


def test_the_cost_of_activation_checkpointing_is_the_planner_s():
    from peftkit.memory.planner import recompute_share
    from peftkit.recipes.training import TrainingSection

    described = TrainingSection.model_fields["activation_checkpointing"].description
    assert f"{recompute_share('lora'):.0%} more compute for an adapter" in described
    assert f"{recompute_share('full'):.0%} in full fine-tuning" in described
    assert (recompute_share("lora"), recompute_share("full")) == (0.5, 2 / 6)


def test_overfit_detection_records_its_stop_as_the_others_do():
    """Eval loss up, train loss down, gap up for `patience` evaluations with action=stop: the
    stop is on the callback (``.stop``), in its state, and on the Trainer's control."""
    from peftkit.callbacks import OverfitDetector, StopReason

    detector = OverfitDetector(action="stop", patience=2)
    detector.training = True
    state = SimpleNamespace(global_step=0, log_history=[])
    control = SimpleNamespace(should_training_stop=False, should_log=False)
    losses = [(1.0, 1.0), (0.8, 0.9), (0.6, 1.0), (0.4, 1.1)]  # (train, eval)
    for train_loss, eval_loss in losses:
        state.global_step += 1
        detector.on_log(None, state, control, logs={"loss": train_loss})
        detector.on_log(None, state, control, logs={"eval_loss": eval_loss})
    assert control.should_training_stop
    assert detector.stop is not None and detector.stop.reason is StopReason.OVERFITTING
    assert detector.stop.step == 4 and detector.state()["attributes"]["stop_record"]


def test_the_callbacks_package_names_its_callbacks_and_refuses_other_names():
    """Each public callback is found in the module that defines it, imported on first use;
    dir() lists them before they are; a misspelt name is an AttributeError that names it."""
    from peftkit import callbacks
    from peftkit.callbacks.early_stopping import EarlyStopping

    assert callbacks.EarlyStopping is EarlyStopping
    assert set(callbacks.__all__) <= set(dir(callbacks)) and "__getattr__" in dir(callbacks)
    with pytest.raises(
        AttributeError, match=r"^module 'peftkit.callbacks' has no attribute 'EarlyStoping'$"
    ):
        callbacks.EarlyStoping  # noqa: B018
