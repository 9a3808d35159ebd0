"""Around a run of ``peftkit train``: trackers, the output layout, checkpoints and ``--resume``.

Real runs of a few steps on the tiny model; the killed run is a real SIGKILL of a real
``peftkit train`` process, sent at a fixed point (the first forward pass after a checkpoint is
complete) so that the test never depends on timing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import (
    adapter_weights,
    assert_user_error,
    cli_env,
    load_recipe,
    run_main,
    short,
    with_data,
)

from peftkit.core.errors import RecipeError
from peftkit.core.folders import MARKER
from peftkit.run.outputs import STAGING
from peftkit.run.train import train
from peftkit.testing import prompt_completion_rows, write_data

RESULTS = {"adapter", "metrics.json", "training.png", "recipe.yaml", MARKER}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_data(tmp_path / "d.jsonl", prompt_completion_rows(40))


def _run(tiny_model_dir: Path, data: Path, out: Path, *extra: str, **kwargs) -> dict:
    recipe = load_recipe("json-output", short(tiny_model_dir, *extra))
    return train(with_data(recipe, data), out, **kwargs)


# --- layout and trackers -------------------------------------------------------------------------


def test_by_default_the_output_holds_the_results_and_nothing_else(tiny_model_dir, data, tmp_path):
    """No checkpoints/ and no second copy of the adapter unless the recipe asks for them."""
    _run(tiny_model_dir, data, tmp_path / "out")
    assert {p.name for p in (tmp_path / "out").iterdir()} == RESULTS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "out"]


def test_tensorboard_receives_the_runs_logs(tiny_model_dir, data, tmp_path):
    """report_to=tensorboard: OUTPUT/logs holds event files whose train loss is the logged one,
    and the callbacks' measurements (the best eval loss so far) are there too."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _run(tiny_model_dir, data, tmp_path / "out", "training.report_to=tensorboard")
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == RESULTS | {"logs"}
    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in (out / "logs").glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    history = json.loads((out / "metrics.json").read_text())
    assert sorted(step for step, _ in scalars["train/loss"]) == [1, 2, 3, 4]
    assert [step for step, _ in scalars["eval/loss_best"]] == [2, 4]
    assert history["best_metric"] == pytest.approx(min(v for _, v in scalars["eval/loss"]))


def test_run_name_and_trackers_reach_the_trainer(tiny_model_dir):
    recipe = load_recipe(
        "json-output",
        short(tiny_model_dir, "training.report_to=[tensorboard]", "training.run_name=first"),
    )
    args = recipe.build_sft_config("unused")
    assert args.report_to == ["tensorboard"] and args.run_name == "first"
    default = load_recipe("json-output", [f"model.name={tiny_model_dir}"])
    assert default.build_sft_config("unused").report_to == []


def test_a_tracker_that_is_not_installed_is_refused_before_loading(
    tiny_model_dir, data, tmp_path, monkeypatch
):
    code, _, err = run_main(
        monkeypatch, "train", "json-output", *short(tiny_model_dir, "training.report_to=mlflow"),
        "--data", str(data), "--output", str(tmp_path / "out"),
    )  # fmt: skip
    assert_user_error(code, err, "mlflow", "training.report_to=none")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (["training.save=best", "training.eval_strategy=no"], "training.save"),
        (["training.report_to=[none,tensorboard]"], "training.report_to"),
    ],
)
def test_saving_settings_that_would_be_ignored_are_refused(overrides, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        load_recipe("json-output", overrides)


@pytest.mark.parametrize(
    "overrides",
    [["training.save_steps=50"], ["training.save=none", "training.save_steps=50"]],
)
def test_save_steps_turns_saving_on(overrides, tiny_model_dir):
    """A checkpoint cadence asks for checkpoints, also in a recipe file that spells out
    save: none (every built-in file does)."""
    model = f"model.name={tiny_model_dir}"
    recipe = load_recipe("json-output", [model, *overrides])
    assert recipe.training.save == "steps"
    args = recipe.build_sft_config("unused")
    assert (args.save_strategy, args.save_steps) == ("steps", 50)
    limited = load_recipe("json-output", [model, "training.save_total_limit=2"])
    assert (limited.training.save, limited.build_sft_config("x").save_total_limit) == ("steps", 2)


def test_save_best_judges_best_like_early_stopping(tiny_model_dir):
    recipe = load_recipe(
        "json-output",
        [
            f"model.name={tiny_model_dir}",
            "training.save=best",
            "callbacks.early_stopping.metric=json_valid_rate",
        ],
    )
    args = recipe.build_sft_config("unused")
    assert args.save_strategy == "best"
    assert (args.metric_for_best_model, args.greater_is_better) == ("eval_json_valid_rate", True)


def test_checkpoints_are_kept_with_the_limit_and_the_best_adapter(tiny_model_dir, data, tmp_path):
    """save: steps with a limit of 1: the last checkpoint and the best adapter beside it, which
    is the adapter the run saved (early stopping restored it)."""
    import torch

    metrics = _run(
        tiny_model_dir, data, tmp_path / "out", "training.save_steps=2",
        "training.save_total_limit=1",
    )  # fmt: skip
    checkpoints = tmp_path / "out" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best-adapter", "checkpoint-4"]
    best, saved = (adapter_weights(checkpoints / "best-adapter"), adapter_weights(
        tmp_path / "out" / "adapter"
    ))  # fmt: skip
    assert best.keys() == saved.keys()
    assert all(torch.equal(best[k], saved[k]) for k in best)
    marker = json.loads((checkpoints / "best-adapter" / "peftkit_best.json").read_text())
    assert marker["step"] == metrics["best_step"]


# --- killed and resumed -----------------------------------------------------------------------

KILL_AFTER_CHECKPOINT = """
import os, signal, sys
from pathlib import Path
import torch
from peftkit.cli import main

complete = Path(sys.argv[1]) / "trainer_state.json"  # the Trainer writes it last

def kill(module, args, output):
    if complete.exists():
        os.kill(os.getpid(), signal.SIGKILL)

torch.nn.modules.module.register_module_forward_hook(kill)
sys.argv = ["peftkit", *sys.argv[2:]]
main()
"""

LONGER = ("training.max_steps=8", "training.save_steps=2", "callbacks.early_stopping.patience=10")


def _killed_run(tiny_model_dir: Path, data: Path, tmp_path: Path) -> Path:
    """A CLI run SIGKILLed at the first forward pass after checkpoint-4 is complete."""
    args = ["train", "json-output", *short(tiny_model_dir, *LONGER), "--data", str(data)]
    args += ["--output", str(tmp_path / "out")]
    staging = tmp_path / f".out{STAGING}"
    result = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_CHECKPOINT, str(staging / "checkpoints" / "checkpoint-4"),
         *args],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    return staging


def test_a_killed_run_resumes_to_the_adapter_of_an_uninterrupted_run(
    tiny_model_dir, data, tmp_path
):
    """Killed after checkpoint-4 of 8 steps, then `--resume`: optimizer, scheduler, data order,
    random state and early stopping's progress continue, so the adapter equals that of a run
    that was never interrupted."""
    import torch

    reference = _run(tiny_model_dir, data, tmp_path / "reference", *LONGER)
    staging = _killed_run(tiny_model_dir, data, tmp_path)
    assert not (tmp_path / "out").exists()
    assert (staging / "checkpoints" / "checkpoint-4").is_dir()
    resumed = _run(tiny_model_dir, data, tmp_path / "out", *LONGER, resume="auto")
    assert not staging.exists()
    for key in ("global_step", "best_step", "best_metric", "stop_reason"):
        assert resumed[key] == reference[key], key
    logged = [h for h in resumed_history(tmp_path / "out") if "loss" in h]
    assert [h["step"] for h in logged][:4] == [1, 2, 3, 4]  # the killed run's steps, restored
    ours = adapter_weights(tmp_path / "out" / "adapter")
    theirs = adapter_weights(tmp_path / "reference" / "adapter")
    assert ours.keys() == theirs.keys()
    differences = {k: (ours[k] - theirs[k]).abs().max().item() for k in ours}
    assert max(differences.values()) <= 1e-6, differences
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in ours.items() if "lora_B" in k)


def resumed_history(out: Path) -> list[dict]:
    state = out / "checkpoints" / "checkpoint-8" / "trainer_state.json"
    return json.loads(state.read_text())["log_history"]


def test_a_killed_run_is_not_thrown_away_without_being_asked(
    tiny_model_dir, data, tmp_path, monkeypatch
):
    """A new run onto a killed run's checkpoints is refused; both fixes work as written."""
    _killed_run(tiny_model_dir, data, tmp_path)
    args = ["train", "json-output", *short(tiny_model_dir, *LONGER), "--data", str(data)]
    args += ["--output", str(tmp_path / "out")]
    code, _, err = run_main(monkeypatch, *args)
    assert_user_error(code, err, "checkpoint-4", "--resume auto", "--overwrite")
    code, _, err = run_main(monkeypatch, *args, "--resume", "auto")
    assert code == 0, err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["global_step"] == 8


def test_overwrite_starts_a_killed_run_over(tiny_model_dir, data, tmp_path):
    staging = _killed_run(tiny_model_dir, data, tmp_path)
    metrics = _run(tiny_model_dir, data, tmp_path / "out", *LONGER, overwrite=True)
    assert metrics["global_step"] == 8 and not staging.exists()


@pytest.mark.parametrize("resume", ["auto", "nowhere"])
def test_resume_without_a_checkpoint_says_so(tiny_model_dir, data, tmp_path, resume):
    where = resume if resume == "auto" else tmp_path / resume
    with pytest.raises(RecipeError, match=f"--resume {where}"):
        _run(tiny_model_dir, data, tmp_path / "out", resume=where)
    assert not (tmp_path / "out").exists()


def test_resume_continues_the_checkpoint_it_is_given(tiny_model_dir, data, tmp_path):
    """An explicit path: continue another run's checkpoint-4 in a new output (``fork``). The
    resumed run is at another seed, which a resume does not fix: its first four logged steps
    are the checkpoint's, those of the first run, and it trains four more; a fresh run at that
    seed (the checkpoint ignored) logs other losses from step 1."""
    keep = (*LONGER, "callbacks.early_stopping.restore_best=false", "training.learning_rate=3e-3")
    _run(tiny_model_dir, data, tmp_path / "first", *keep)
    checkpoint = tmp_path / "first" / "checkpoints" / "checkpoint-4"
    other_seed = (*keep, "training.seed=7")
    again = _run(
        tiny_model_dir, data, tmp_path / "again", *other_seed, resume=checkpoint, fork=True
    )
    assert again["global_step"] == 8
    _run(tiny_model_dir, data, tmp_path / "fresh", *other_seed)  # the checkpoint ignored
    logged = {
        name: [h for h in resumed_history(tmp_path / name) if "loss" in h]
        for name in ("first", "again", "fresh")
    }
    assert [h["step"] for h in logged["again"]] == list(range(1, 9))
    first_four = {name: [h["loss"] for h in logged[name][:4]] for name in logged}
    assert first_four["again"] == pytest.approx(first_four["first"], rel=1e-6)
    assert first_four["fresh"] != pytest.approx(first_four["first"], rel=1e-3)


# --- model cards and the Hub ------------------------------------------------------------------


def test_the_adapter_card_says_what_was_trained(tiny_model_dir, data, tmp_path):
    """adapter/README.md: Hub metadata, the data, the scores before and after as the summary
    prints them, the stop, how to load it, and the recipe that reloads as the one that ran."""
    from huggingface_hub import ModelCard

    from peftkit import recipes

    metrics = _run(tiny_model_dir, data, tmp_path / "out")
    adapter = tmp_path / "out" / "adapter"
    card = ModelCard.load(adapter / "README.md")
    assert card.data.library_name == "peft"
    assert {"peftkit", "lora"} <= set(card.data.tags)
    assert card.data.base_model is None  # a local folder that records no Hub id
    text = card.text
    assert f"{metrics['data']['train_rows']} training rows from `d.jsonl`" in text
    loss = f"| loss | {metrics['before']['eval_loss']:.3f} | {metrics['after']['eval_loss']:.3f} |"
    assert loss in text
    stopped = metrics["after"]["stopped_rate"]
    assert f"| answers that stopped (EOS) | {metrics['before']['stopped_rate']:.1%} | " in text
    assert f"| exact match with the reference | {metrics['before']['exact_match_rate']:.1%}" in text
    assert ("Note: the model never learned to stop" in text) == (stopped < 0.5)
    assert f"after {metrics['global_step']} steps; best step: {metrics['best_step']}" in text
    assert f'AutoPeftModelForCausalLM.from_pretrained("{adapter}")' in text
    recipe_yaml = text.split("```yaml\n")[1].split("```")[0]
    card_recipe = tmp_path / "card-recipe.yaml"
    card_recipe.write_text(recipe_yaml)
    assert recipes.load(card_recipe) == recipes.load(tmp_path / "out" / "recipe.yaml")


def test_a_card_names_the_hub_model_a_local_folder_came_from(tmp_path):
    from peftkit.run.card import hub_id

    folder = tmp_path / "smollm2"
    folder.mkdir()
    (folder / "config.json").write_text('{"_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"}')
    assert hub_id(str(folder)) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_id("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"
    (folder / "config.json").write_text('{"_name_or_path": "/home/me/models/x"}')
    assert hub_id(str(folder)) is None


def test_merge_writes_a_card_with_the_adapters(tiny_model_dir, data, tmp_path):
    from huggingface_hub import ModelCard

    from peftkit.run.merging import merge

    _run(tiny_model_dir, data, tmp_path / "out")
    merged = merge(tmp_path / "out" / "adapter", tmp_path / "merged")
    card = ModelCard.load(merged / "README.md")
    assert card.data.library_name == "transformers" and "merge" in card.data.tags
    assert "## The adapter" in card.text and "training rows from `d.jsonl`" in card.text


@pytest.mark.parametrize("command", ["train", "merge"])
def test_a_bad_hub_repository_is_refused_before_anything_runs(
    command, tiny_model_dir, data, tmp_path, monkeypatch
):
    if command == "train":
        args = ["train", "json-output", *short(tiny_model_dir), "--data", str(data)]
    else:
        (tmp_path / "adapter").mkdir()
        (tmp_path / "adapter" / "adapter_config.json").write_text(
            json.dumps({"base_model_name_or_path": str(tiny_model_dir)})
        )
        (tmp_path / "adapter" / "adapter_model.safetensors").write_bytes(b"")
        args = ["merge", str(tmp_path / "adapter")]
    code, _, err = run_main(
        monkeypatch, *args, "--output", str(tmp_path / "out"), "--push-to-hub", "my repo"
    )
    assert_user_error(code, err, "--push-to-hub 'my repo'", "your-name/my-adapter")
    assert not (tmp_path / "out").exists()


def test_a_failed_push_keeps_the_results_and_says_how_to_upload(tiny_model_dir, data, tmp_path):
    """Offline (as here), the push fails after the run: the results stay, exit 2, and the
    message gives the upload command."""
    args = ["train", "json-output", *short(tiny_model_dir), "--data", str(data)]
    args += ["--output", str(tmp_path / "out"), "--push-to-hub", "me/adapter"]
    result = subprocess.run(
        [sys.executable, "-m", "peftkit", *args], cwd=tmp_path,
        env={**cli_env(), "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert_user_error(result.returncode, result.stderr, "hf upload me/adapter")
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()


# --- defaults that adapt ----------------------------------------------------------------------


@pytest.fixture
def short_context_model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """The tiny model with 128 positions: json-output's default max_length (512) is too long."""
    import shutil

    folder = shutil.copytree(tiny_model_dir, tmp_path / "short-context")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 128}))
    return folder


def test_a_default_max_length_the_model_cannot_hold_is_lowered_with_a_notice(
    short_context_model, data, tmp_path, caplog
):
    overrides = [f"model.name={json.dumps(str(short_context_model))}", "training.max_steps=2",
                 "training.eval_steps=2", "training.logging_steps=1", "generation.samples=2",
                 "generation.max_new_tokens=4"]  # fmt: skip
    recipe = load_recipe("json-output", overrides)
    assert recipe.training.max_length == 512
    with caplog.at_level("WARNING", logger="peftkit"):
        train(with_data(recipe, data), tmp_path / "out")
    assert "default of 512 is more than the 128 positions" in caplog.text
    from peftkit import recipes

    assert recipes.load(tmp_path / "out" / "recipe.yaml").training.max_length == 128


def test_a_max_length_the_user_set_is_still_refused(short_context_model, data, tmp_path):
    recipe = load_recipe(
        "json-output",
        [f"model.name={json.dumps(str(short_context_model))}", "training.max_length=256"],
    )
    with pytest.raises(RecipeError, match=r"training\.max_length=128"):
        train(with_data(recipe, data), tmp_path / "out")
    assert not (tmp_path / "out").exists()
