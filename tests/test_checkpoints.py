"""Which checkpoint ``--resume`` continues from, on real folders: the last complete one, never
one cut short, and a killed run's checkpoints kept unless the user says otherwise. (Resuming a
real run from them: tests/test_run_lifecycle.py.)"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from train_helpers import load_recipe

from peftkit.core.errors import Problem, ProblemsError, RecipeError
from peftkit.recipes.base import Recipe
from peftkit.run.checkpoints import (
    CHECKPOINTS,
    Resume,
    check_checkpoint,
    check_unfinished,
    find_checkpoint,
    last_checkpoint,
    plan_resume,
)


def _checkpoints(folder: Path, *steps: int, cut_short: tuple[int, ...] = ()) -> Path:
    """``folder/checkpoints`` with a checkpoint-N folder for each step; those in ``cut_short``
    lack the trainer_state.json the Trainer writes last."""
    for step in (*steps, *cut_short):
        checkpoint = folder / CHECKPOINTS / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True)
        (checkpoint / "adapter_model.safetensors").write_bytes(b"weights")
        if step not in cut_short:
            (checkpoint / "trainer_state.json").write_text("{}")
    return folder / CHECKPOINTS


def test_the_last_complete_checkpoint_by_step_not_by_name(tmp_path: Path) -> None:
    """checkpoint-10 comes after checkpoint-9 (numbers, not text); checkpoint-12 was cut short;
    other folders and files are not checkpoints."""
    folder = _checkpoints(tmp_path, 2, 9, 10, cut_short=(12,))
    (folder / "checkpoint-99.tmp").mkdir()
    (folder / "best-adapter").mkdir()
    (folder / "checkpoint-50").write_text("a file")
    assert last_checkpoint(folder) == folder / "checkpoint-10"
    assert (
        last_checkpoint(_checkpoints(tmp_path / "one", 3))
        == tmp_path / "one" / CHECKPOINTS / "checkpoint-3"
    )


def test_no_checkpoint(tmp_path: Path) -> None:
    assert last_checkpoint(tmp_path / "missing") is None
    assert last_checkpoint(_checkpoints(tmp_path, cut_short=(4,))) is None
    (tmp_path / "file").write_text("x")
    assert last_checkpoint(tmp_path / "file") is None


def test_resume_auto_takes_a_killed_run_first_then_the_output(tmp_path: Path) -> None:
    target, staging = tmp_path / "out", tmp_path / ".out.peftkit-staging"
    _checkpoints(target, 8)
    assert find_checkpoint("auto", target, staging) == target / CHECKPOINTS / "checkpoint-8"
    _checkpoints(staging, 4)  # a killed run of the same output: its work is the newer
    assert find_checkpoint("auto", target, staging) == staging / CHECKPOINTS / "checkpoint-4"


def test_resume_auto_without_a_checkpoint_says_how_to_get_one(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RecipeError) as info:
        find_checkpoint("auto", target, tmp_path / ".out.peftkit-staging")
    assert str(info.value) == (
        f"--resume auto: no checkpoint of --output {target} to continue. Fix: run without "
        "--resume (with training.save=steps a run writes checkpoints to resume from)."
    )


def test_resume_path_takes_a_checkpoint_or_a_folder_of_them(tmp_path: Path) -> None:
    """A checkpoint itself; a folder of checkpoints (its last one); a run's output (its
    checkpoints/ folder's last one); ``~`` expanded."""
    folder = _checkpoints(tmp_path / "run", 2, 4)
    other = tmp_path / "elsewhere"
    assert find_checkpoint(folder / "checkpoint-2", other, other) == folder / "checkpoint-2"
    assert find_checkpoint(folder, other, other) == folder / "checkpoint-4"
    assert find_checkpoint(tmp_path / "run", other, other) == folder / "checkpoint-4"
    assert find_checkpoint(str(tmp_path / "run"), other, other) == folder / "checkpoint-4"


def test_resume_path_that_holds_no_checkpoint(tmp_path: Path) -> None:
    _checkpoints(tmp_path / "run", cut_short=(4,))
    for path in (tmp_path / "run", tmp_path / "run" / CHECKPOINTS / "checkpoint-4", tmp_path / "x"):
        with pytest.raises(RecipeError) as info:
            find_checkpoint(path, tmp_path / "out", tmp_path / "staging")
        assert str(info.value).startswith(f"--resume {path}: not a checkpoint (a checkpoint-N ")
        assert "Fix: pass --resume auto, or the path of a checkpoint-N folder." in str(info.value)


def test_a_killed_runs_checkpoints_are_not_thrown_away_unasked(tmp_path: Path) -> None:
    target, staging = tmp_path / "out", tmp_path / ".out.peftkit-staging"
    check_unfinished(target, staging, overwrite=False)  # nothing to lose
    _checkpoints(staging, 2, 6)
    with pytest.raises(RecipeError) as info:
        check_unfinished(target, staging, overwrite=False)
    assert str(info.value) == (
        f"--output {target}: a run of this output was stopped after checkpoint-6 and can "
        "continue from there. Fix: add --resume auto to continue it, or --overwrite to start over."
    )
    check_unfinished(target, staging, overwrite=True)


# --- plan_resume: which run a resume continues ---------------------------------------------------


def _out(tmp_path: Path, name: str = "out") -> tuple[Path, Path]:
    """An output and the staging folder its runs write to (peftkit.run.outputs.staging_of)."""
    return tmp_path / name, tmp_path / f".{name}.peftkit-staging"


def test_without_resume_a_killed_runs_checkpoints_need_overwrite(tmp_path: Path) -> None:
    target, staging = _out(tmp_path)
    assert plan_resume(None, target, staging, overwrite=False, fork=False) is None
    _checkpoints(staging, 3)
    with pytest.raises(RecipeError) as info:
        plan_resume(None, target, staging, overwrite=False, fork=False)
    assert str(info.value) == (
        f"--output {target}: a run of this output was stopped after checkpoint-3 and can "
        "continue from there. Fix: add --resume auto to continue it, or --overwrite to start over."
    )
    assert plan_resume(None, target, staging, overwrite=True, fork=False) is None


def test_resume_continues_this_outputs_own_run(tmp_path: Path) -> None:
    """From the output's checkpoints (auto or a path) or a killed run's staging folder: the
    run's own checkpoint, which the resume may replace."""
    target, staging = _out(tmp_path)
    own = _checkpoints(target, 8) / "checkpoint-8"
    assert plan_resume("auto", target, staging, overwrite=False, fork=False) == Resume(own, True)
    assert plan_resume(own, target, staging, overwrite=False, fork=False) == Resume(own, True)
    assert plan_resume(target, target, staging, overwrite=False, fork=False) == Resume(own, True)
    killed = _checkpoints(staging, 4) / "checkpoint-4"
    assert plan_resume("auto", target, staging, overwrite=False, fork=False) == Resume(killed, True)
    assert plan_resume(killed, target, staging, overwrite=False, fork=False) == Resume(killed, True)


def test_resume_never_means_overwrite(tmp_path: Path) -> None:
    target, staging = _out(tmp_path)
    _checkpoints(target, 8)
    with pytest.raises(RecipeError) as info:
        plan_resume("auto", target, staging, overwrite=True, fork=False)
    assert str(info.value) == (
        "--resume auto --overwrite: --resume continues a run and --overwrite starts one over; "
        "peftkit does not guess which you meant. Fix: drop --overwrite to continue the run, or "
        "drop --resume to start over."
    )
    other = _checkpoints(tmp_path / "other", 5) / "checkpoint-5"
    # a fork starts a new run in --output, which --overwrite may then replace
    assert plan_resume(other, target, staging, overwrite=True, fork=True) == Resume(other, False)


def test_resume_elsewhere_would_throw_away_a_killed_run(tmp_path: Path) -> None:
    target, staging = _out(tmp_path)
    own = _checkpoints(target, 8) / "checkpoint-8"
    _checkpoints(staging, 2, 4)
    for fork in (False, True):
        with pytest.raises(RecipeError) as info:
            plan_resume(own, target, staging, overwrite=False, fork=fork)
        assert str(info.value) == (
            f"--resume {own}: a run of --output {target} was stopped after checkpoint-4, which "
            f"{staging} holds, and resuming from {own} would throw it away. Fix: pass --resume "
            f"auto to continue that run, or delete {staging} first."
        )


def _mixing(resume: Path, checkpoint: Path, target: Path, where: str, run: str) -> str:
    return (
        f"--resume {resume}: {checkpoint.name} belongs to {where}, not to --output {target}; "
        f"resuming there would mix two runs. Fix: pass --output {run} to continue that run, or "
        "add --fork to start a new run in --output from this checkpoint."
    )


def test_a_checkpoint_of_another_run_continues_only_with_fork(tmp_path: Path) -> None:
    """Another output's checkpoint, or its killed run's: named by that output; a checkpoint
    outside any output: named by its folder. With --fork each starts a new run here."""
    target, staging = _out(tmp_path)
    other, other_staging = _out(tmp_path, "other")
    done = _checkpoints(other, 5) / "checkpoint-5"
    killed = _checkpoints(other_staging, 3) / "checkpoint-3"
    dotted = _checkpoints(tmp_path / ".hidden", 2) / "checkpoint-2"  # a dot, not a staging folder
    suffix = _checkpoints(tmp_path / "run.peftkit-staging", 2) / "checkpoint-2"  # no dot
    loose = tmp_path / "saved" / "checkpoint-7"
    loose.mkdir(parents=True)
    (loose / "trainer_state.json").write_text("{}")
    cases = [
        (done, done, f"run {other}", str(other)),
        (other, done, f"run {other}", str(other)),
        (killed, killed, f"run {other}", str(other)),
        (dotted, dotted, f"run {tmp_path / '.hidden'}", str(tmp_path / ".hidden")),
        (suffix, suffix, f"run {suffix.parent.parent}", str(suffix.parent.parent)),
        (loose, loose, f"{loose.parent}, not an output of peftkit", "THAT_RUN"),
    ]
    for resume, checkpoint, where, run in cases:
        with pytest.raises(RecipeError) as info:
            plan_resume(resume, target, staging, overwrite=False, fork=False)
        assert str(info.value) == _mixing(resume, checkpoint, target, where, run)
        assert plan_resume(resume, target, staging, overwrite=False, fork=True) == Resume(
            checkpoint, False
        )


# --- check_checkpoint: the checkpoint whole and against the recipe -----------------------------

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _adapter_config(**changes: Any) -> dict[str, Any]:
    """What PEFT writes for json-output with lora.r=8 (the keys peftkit compares, and others)."""
    config = {
        "base_model_name_or_path": MODEL,
        "peft_type": "LORA",
        "r": 8,
        "lora_alpha": 32,
        "lora_dropout": 0.05,
        "target_modules": ["v_proj", "q_proj", "o_proj"],
        "use_dora": False,
        "use_rslora": False,
    }
    return config | changes


def _checkpoint(
    folder: Path,
    step: int = 6,
    config: dict[str, Any] | None = None,
    weights: tuple[str, ...] = ("adapter_model.safetensors",),
    state: str | None = None,
    written: Recipe | None = None,
) -> Path:
    """``folder/checkpoints/checkpoint-STEP`` as the Trainer writes it: its trainer_state.json
    (``state`` as text, else one at ``step``), ``weights`` files, adapter_config.json
    (``config``, else _adapter_config()), and the run's recipe.yaml in ``folder`` when
    ``written``."""
    checkpoint = folder / CHECKPOINTS / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    text = json.dumps({"global_step": step, "epoch": 0.5}) if state is None else state
    (checkpoint / "trainer_state.json").write_text(text)
    for name in weights:
        (checkpoint / name).write_bytes(b"weights")
    config = _adapter_config() if config is None else config
    (checkpoint / "adapter_config.json").write_text(json.dumps(config))
    if written is not None:
        (folder / "recipe.yaml").write_text(written.to_yaml())
    return checkpoint


def _recipe(*overrides: str) -> Recipe:
    return load_recipe("json-output", ["lora.r=8", *overrides])


def _problems(checkpoint: Path, recipe: Recipe) -> list[Problem]:
    with pytest.raises(ProblemsError) as info:
        check_checkpoint(checkpoint, recipe)
    assert info.value.subject == f"between this run and the checkpoint {checkpoint}"
    return info.value.problems


def _mismatch(field: str, now: Any, earlier: str, why: str) -> Problem:
    return Problem(
        field,
        now,
        f"the checkpoint was written with {field}={earlier}: {why}",
        f"set {field}={earlier} to continue that run, or start a new run without --resume",
    )


def test_a_checkpoint_of_this_recipe_passes(tmp_path: Path) -> None:
    """Its run's recipe.yaml and adapter agree; the adapter's target modules are not compared
    with all-linear (which PEFT writes out as module names), an empty base model name is none."""
    recipe = _recipe("training.max_steps=7")
    checkpoint = _checkpoint(tmp_path / "out", written=recipe)
    assert check_checkpoint(checkpoint, recipe) is None
    bare = _checkpoint(tmp_path / "bare", config=_adapter_config(base_model_name_or_path=""))
    assert check_checkpoint(bare, recipe) is None
    listed = _recipe("lora.target_modules=[q_proj,v_proj]")
    config = _adapter_config(target_modules=["v_proj", "q_proj"])
    assert check_checkpoint(_checkpoint(tmp_path / "listed", config=config), listed) is None


def test_a_step_of_zero_is_a_step(tmp_path: Path) -> None:
    state = json.dumps({"global_step": 0})
    assert check_checkpoint(_checkpoint(tmp_path, step=0, state=state), _recipe()) is None


def test_a_checkpoint_at_max_steps_leaves_nothing_to_train(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path, step=6)
    for max_steps in (6, 5):
        with pytest.raises(RecipeError) as info:
            check_checkpoint(checkpoint, _recipe(f"training.max_steps={max_steps}"))
        assert str(info.value) == (
            f"--resume {checkpoint}: the checkpoint is at step 6 and training.max_steps is "
            f"{max_steps}: nothing is left to train. Fix: set training.max_steps above 6."
        )


def test_every_setting_the_checkpoint_fixes_is_compared_at_once(tmp_path: Path) -> None:
    """The adapter's own settings, and its run's recipe.yaml for the rest; each named with the
    recipe's value and the checkpoint's, in one error."""
    written = load_recipe(
        "json-output",
        [
            "lora.r=32",  # the adapter's own config wins over recipe.yaml
            "training.optimizer=adafactor",
            "training.lr_scheduler=linear",
            "training.warmup_steps=10",
            "training.weight_decay=0.1",
            "lora.modules_to_save=[lm_head]",
        ],
    )
    config = _adapter_config(
        r=16, lora_alpha=16, use_dora=True, base_model_name_or_path="HuggingFaceTB/SmolLM2-360M"
    )
    checkpoint = _checkpoint(tmp_path / "out", config=config, written=written)
    recipe = _recipe()
    found = _problems(checkpoint, recipe)
    assert found == [
        _mismatch(
            "model.name",
            MODEL,
            "HuggingFaceTB/SmolLM2-360M",
            "the checkpoint's adapter belongs to that model",
        ),
        _mismatch("lora.r", 8, "16", "the checkpoint's adapter tensors have that shape"),
        _mismatch("lora.alpha", 32.0, "16", "the adapter's scale is part of what it learned"),
        _mismatch(
            "lora.modules_to_save", [], "[lm_head]", "the checkpoint trains those modules in full"
        ),
        _mismatch("lora.use_dora", False, "true", "the checkpoint's adapter is of that kind"),
        _mismatch(
            "training.optimizer",
            "adamw_torch",
            "adafactor",
            "the checkpoint's optimizer state is of that optimizer",
        ),
        _mismatch(
            "training.lr_scheduler",
            "cosine",
            "linear",
            "the schedule restored from the checkpoint fixes it",
        ),
        _mismatch(
            "training.warmup_steps",
            0.03,
            "10.0",
            "the schedule restored from the checkpoint fixes it",
        ),
        _mismatch(
            "training.weight_decay",
            0.0,
            "0.1",
            "the optimizer state restored from the checkpoint fixes it",
        ),
    ]
    with pytest.raises(ProblemsError) as info:
        check_checkpoint(checkpoint, recipe)
    assert str(info.value).startswith(
        f"9 problem(s) between this run and the checkpoint {checkpoint}:\n"
        f"- model.name: got '{MODEL}'\n"
        "    rule: the checkpoint was written with model.name=HuggingFaceTB/SmolLM2-360M: the "
        "checkpoint's adapter belongs to that model\n"
        "    fix:  set model.name=HuggingFaceTB/SmolLM2-360M to continue that run, or start a new "
        "run without --resume\n- lora.r: got 8\n"
    )


def test_numbers_compare_as_numbers_and_auto_once_resolved(tmp_path: Path) -> None:
    """A learning rate that differs in its last bit is the same; one the run has not resolved
    yet (auto) is compared later, by peftkit.run.train, against the resolved value."""
    written = _recipe("training.learning_rate=3e-4")
    checkpoint = _checkpoint(tmp_path / "out", written=written)
    assert check_checkpoint(checkpoint, _recipe("training.learning_rate=auto")) is None
    last_bit = _recipe("training.learning_rate=0.00030000000000000003")
    assert check_checkpoint(checkpoint, last_bit) is None
    near = _problems(checkpoint, _recipe("training.learning_rate=3.0001e-4"))
    assert [(p.path, p.value) for p in near] == [("training.learning_rate", 3.0001e-4)]
    assert _problems(checkpoint, _recipe("training.learning_rate=2e-4")) == [
        _mismatch(
            "training.learning_rate",
            0.0002,
            "0.0003",
            "the optimizer and schedule restored from the checkpoint fix it",
        )
    ]


def test_module_lists_compare_in_any_order(tmp_path: Path) -> None:
    """Target modules and modules to save name sets of modules: their order is no difference,
    another module is."""
    config = _adapter_config(target_modules=["v_proj", "q_proj"])
    written = _recipe("lora.modules_to_save=[lm_head,embed_tokens]")
    checkpoint = _checkpoint(tmp_path / "out", config=config, written=written)
    same = _recipe(
        "lora.target_modules=[q_proj,v_proj]", "lora.modules_to_save=[embed_tokens,lm_head]"
    )
    assert check_checkpoint(checkpoint, same) is None
    other = _recipe("lora.target_modules=[q_proj]", "lora.modules_to_save=[lm_head]")
    assert _problems(checkpoint, other) == [
        _mismatch(
            "lora.target_modules",
            ["q_proj"],
            "[q_proj,v_proj]",
            "the checkpoint's adapter sits on those modules",
        ),
        _mismatch(
            "lora.modules_to_save",
            ["lm_head"],
            "[lm_head,embed_tokens]",
            "the checkpoint trains those modules in full",
        ),
    ]


def test_a_local_model_is_the_same_folder_however_it_is_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PEFT records the path the run loaded; the recipe may name the folder relatively."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "other-model").mkdir()
    same = _adapter_config(base_model_name_or_path=str(tmp_path / "model"))
    for spelling in ("model", "./model", str(tmp_path / "model")):
        checkpoint = _checkpoint(tmp_path / spelling.replace("/", "_"), config=same)
        assert check_checkpoint(checkpoint, _recipe(f"model.name={spelling}")) is None
    other = _adapter_config(base_model_name_or_path=str(tmp_path / "other-model"))
    assert _problems(_checkpoint(tmp_path / "c", config=other), _recipe("model.name=model")) == [
        _mismatch(
            "model.name",
            "model",
            str(tmp_path / "other-model"),
            "the checkpoint's adapter belongs to that model",
        )
    ]


def test_a_qlora_checkpoint_is_not_continued_without_quantization(tmp_path: Path) -> None:
    written = _recipe("method=qlora", "quantization.bits=4")
    checkpoint = _checkpoint(tmp_path / "out", written=written)
    assert _problems(checkpoint, _recipe()) == [
        _mismatch("method", "lora", "qlora", "the checkpoint holds what that method trains"),
        _mismatch(
            "quantization.bits",
            None,
            "4",
            "the adapter learned corrections to the base quantized so",
        ),
    ]


def test_a_recipe_yaml_that_cannot_be_read_is_logged_and_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A newer or hand-edited recipe.yaml: the adapter's own config is compared, and the log
    says why the rest is not (the first line of the reason)."""
    checkpoint = _checkpoint(tmp_path / "out", config=_adapter_config(r=16))
    written = tmp_path / "out" / "recipe.yaml"
    written.write_text("recipe: json-output\nlora:\n  r: -3\n")
    with caplog.at_level(logging.WARNING, logger="peftkit.run.checkpoints"):
        assert [p.path for p in _problems(checkpoint, _recipe())] == ["lora.r"]
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot compare the settings with {written}: 1 validation error for JsonOutput"
    ]
    caplog.clear()
    written.write_text("{{{")
    with caplog.at_level(logging.WARNING, logger="peftkit.run.checkpoints"):
        assert check_checkpoint(_checkpoint(tmp_path / "out", step=7), _recipe()) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot compare the settings with {written}: {written}: not valid YAML at line 1, "
        "column 4: expected the node content, but found '<stream end>'. Fix: check the "
        "indentation and quoting there (`peftkit show json-output` prints a valid example)."
    ]


# --- a damaged checkpoint ------------------------------------------------------------------------


def _damaged(checkpoint: Path, why: str, other: Path | None = None) -> str:
    instead = f"resume from another checkpoint (--resume {other}), or " if other else ""
    return (
        f"--resume {checkpoint}: the checkpoint is damaged: {why}. Fix: {instead}start over "
        "without --resume."
    )


def _refused(checkpoint: Path, recipe: Recipe | None = None) -> str:
    with pytest.raises(RecipeError) as info:
        check_checkpoint(checkpoint, _recipe() if recipe is None else recipe)
    assert not isinstance(info.value, ProblemsError)
    return str(info.value)


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ("", "trainer_state.json cannot be read (it is empty)"),
        (
            "{",
            "trainer_state.json cannot be read (Expecting property name enclosed in double "
            "quotes: line 1 column 2 (char 1))",
        ),
        ("[]", "trainer_state.json records no step (global_step)"),
        ("{}", "trainer_state.json records no step (global_step)"),
        ('{"global_step": true}', "trainer_state.json records no step (global_step)"),
        ('{"global_step": -1}', "trainer_state.json records no step (global_step)"),
        ('{"global_step": "5"}', "trainer_state.json records no step (global_step)"),
        ('{"global_step": 5.0}', "trainer_state.json records no step (global_step)"),
    ],
)
def test_a_damaged_trainer_state_is_refused(tmp_path: Path, state: str, why: str) -> None:
    checkpoint = _checkpoint(tmp_path, state=state)
    assert _refused(checkpoint) == _damaged(checkpoint, why)


def test_a_trainer_state_that_is_not_text(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path)
    (checkpoint / "trainer_state.json").write_bytes(b"\xff")
    assert _refused(checkpoint) == _damaged(
        checkpoint,
        "trainer_state.json cannot be read ('utf-8' codec can't decode byte 0xff in position 0: "
        "invalid start byte)",
    )


def test_a_damaged_checkpoint_suggests_the_last_complete_other_one(tmp_path: Path) -> None:
    """By step, not by name (checkpoint-10 after checkpoint-9); never one cut short, nor the
    damaged one itself."""
    folder = _checkpoints(tmp_path, 9, 10, cut_short=(12,))
    damaged = _checkpoint(tmp_path, step=11, state="")
    assert _refused(damaged) == _damaged(
        damaged, "trainer_state.json cannot be read (it is empty)", folder / "checkpoint-10"
    )
    first = _checkpoint(tmp_path / "alone", step=3, state="{}")
    _checkpoints(tmp_path / "alone", cut_short=(1,))
    assert _refused(first) == _damaged(first, "trainer_state.json records no step (global_step)")


def test_a_checkpoint_without_its_weights(tmp_path: Path) -> None:
    full = _recipe("method=full", "callbacks.early_stopping.restore_best=false")
    empty = _checkpoint(tmp_path / "a", weights=())
    assert _refused(empty, full) == _damaged(empty, "it holds no model weights")
    assert _refused(empty) == _damaged(
        empty, "it holds no adapter weights (adapter_model.safetensors or adapter_model.bin)"
    )
    whole = _checkpoint(tmp_path / "b", weights=("model.safetensors",))
    assert _refused(whole) == _damaged(
        whole,
        "it holds no adapter weights (adapter_model.safetensors or adapter_model.bin) but a "
        "whole model's: it was trained with method full",
    )
    assert check_checkpoint(whole, full) is None  # its adapter_config.json is not read
    shards = _checkpoint(tmp_path / "c", weights=("pytorch_model-00001-of-00002.bin",))
    assert check_checkpoint(shards, full) is None
    adapter_bin = _checkpoint(tmp_path / "d", weights=("adapter_model.bin",))
    assert check_checkpoint(adapter_bin, _recipe()) is None


@pytest.mark.parametrize("config", [None, "[1]", "{", "\xff"])
def test_an_adapter_config_that_is_missing_or_not_an_object(
    tmp_path: Path, config: str | None
) -> None:
    checkpoint = _checkpoint(tmp_path)
    if config is None:
        (checkpoint / "adapter_config.json").unlink()
    elif config == "\xff":
        (checkpoint / "adapter_config.json").write_bytes(b"\xff")
    else:
        (checkpoint / "adapter_config.json").write_text(config)
    assert _refused(checkpoint) == _damaged(
        checkpoint, "its adapter_config.json is missing or not a JSON object"
    )
