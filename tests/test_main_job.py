"""``peftkit.run.train.train`` and ``peftkit train``: real runs of a few steps on the tiny model.

One module-scoped json-output run is shared by the checks of its outputs; other runs each test
one thing (a data format, a stop, an interruption). In-process runs take a second or two once
the HF stack is imported; a CLI run pays ~8 s of imports.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from train_helpers import (
    adapter_weights,
    cli_env,
    earlier_output,
    load_recipe,
    logits,
    merged,
    peftkit_cli,
    short,
    with_adapter,
    with_data,
)

from peftkit import recipes
from peftkit.core.errors import RecipeError
from peftkit.core.folders import MARKER
from peftkit.data import prepare
from peftkit.run.outputs import STAGING
from peftkit.run.train import train
from peftkit.testing import messages_rows, prompt_completion_rows, text_rows, write_data

SCHEMA = {
    "type": "object",
    "properties": {"code": {"type": "integer"}, "phrase": {"type": "string"}},
    "required": ["code", "phrase"],
}
METRIC_FIELDS = (
    "recipe",
    "model",
    "data",
    "before",
    "after",
    "stop_reason",
    "best_step",
    "train_time_s",
    "tokens_per_s",
    "peak_memory_gb",
    "global_step",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- one json-output run, shared ---------------------------------------------------------------


@pytest.fixture(scope="module")
def json_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """json-output with a JSON Schema on 40 prompt/completion rows (.jsonl, format detected),
    4 steps.

    ``train()`` returns only the metrics; the model it trained is caught on its way through a
    forward pass (a global forward hook sees every module call), to compare with what was saved.
    """
    import torch
    from peft import PeftModel

    folder = tmp_path_factory.mktemp("json-run")
    data = write_data(folder / "train.jsonl", prompt_completion_rows(40))
    overrides = short(
        tiny_model_dir,
        "data.format=auto",
        f"json_schema={json.dumps(SCHEMA)}",
        "training.save=steps",
    )
    recipe = load_recipe("json-output", overrides)
    seen: list[Any] = []

    def remember(module: Any, args: Any, output: Any) -> None:
        if isinstance(module, PeftModel):
            seen[:] = [module]

    hook = torch.nn.modules.module.register_module_forward_hook(remember)
    try:
        metrics = train(with_data(recipe, data), folder / "out")
    finally:
        hook.remove()
    assert seen, "no forward pass of a PeftModel was seen during train()"
    return SimpleNamespace(
        metrics=metrics, out=folder / "out", recipe=recipe, data=data, model=seen[0]
    )


def test_metrics_json_has_every_field(json_run: SimpleNamespace, tiny_model_dir: Path):
    written = json.loads((json_run.out / "metrics.json").read_text())
    assert written == json.loads(json.dumps(json_run.metrics, default=str))  # what train returned
    for field in METRIC_FIELDS:
        assert field in written, field
    assert written["recipe"] == "json-output"
    assert written["model"] == str(tiny_model_dir)
    assert written["global_step"] == 4
    assert written["stop_reason"] is None  # ran the planned steps
    assert written["best_step"] in (0, 2, 4)
    assert written["train_time_s"] > 0
    assert written["tokens_per_s"] > 0
    assert written["peak_memory_gb"] > 0


def test_json_output_reports_json_and_schema_rates(json_run: SimpleNamespace, tiny_model_dir: Path):
    """The rates are those of the model's own answers to the held-out prompts: answering the
    same prompts again with the trained model (after) and with its adapter off (before: LoRA
    starts as a no-op) gives the reported examples and rates exactly. (A random model answers
    no JSON, so bounds like 0 <= rate <= 1 would say nothing.)"""
    from transformers import AutoTokenizer

    from peftkit.evaluation import content_rates, generate_answers, json_rates

    recipe = json_run.recipe
    held_out = prepare(recipe, json_run.data, None).eval
    prompts = held_out["prompt"][: recipe.generation.samples]
    references = held_out["completion"][: recipe.generation.samples]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    settings = (recipe.generation.max_new_tokens, recipe.generation.batch_size)
    after = generate_answers(json_run.model, tokenizer, prompts, *settings)
    with json_run.model.disable_adapter():
        before = generate_answers(json_run.model, tokenizer, prompts, *settings)
    for when, generated in (("before", before), ("after", after)):
        found, answers = json_run.metrics[when], generated.texts
        assert found["count"] == len(prompts) == 4  # generation.samples
        rates = {
            **json_rates(answers, SCHEMA),
            **content_rates(answers, references),  # the completions are JSON objects
            **generated.stop_rates(),
        }
        assert {"exact_match_rate", "key_match_rate", "stopped_rate", "truncated_rate"} <= set(
            rates
        )
        assert {k: found[k] for k in rates} == rates, when
        # Only a trained model is told it never learned to stop (8 new tokens: it rarely does).
        note = generated.stop_note() if when == "after" else None
        assert found.get("notes") == (None if note is None else [note]), when
        assert found["examples"] == [
            {"prompt": p, "answer": a} for p, a in list(zip(prompts, answers, strict=True))[:3]
        ]
        assert math.isfinite(found["eval_loss"])
        assert found["perplexity"] == pytest.approx(math.exp(found["eval_loss"]))


def test_format_and_held_out_split_are_reported(json_run: SimpleNamespace):
    data = json_run.metrics["data"]
    assert data["format"] == "prompt-completion"
    assert data["eval_rows"] == round(40 * 0.1)
    assert data["train_rows"] + data["eval_rows"] == 40
    assert data["eval_source"] == "4 of 40 rows held out (eval_fraction 0.1, seed 42)"


def test_output_folder_holds_the_outputs(json_run: SimpleNamespace):
    names = {p.name for p in json_run.out.iterdir()}
    assert {"adapter", "recipe.yaml", "metrics.json", "training.png"} <= names
    assert [n for n in names if n.startswith(".")] == [MARKER]  # no staging folder left
    adapter = {p.name for p in (json_run.out / "adapter").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json"} <= adapter


def test_saved_adapter_gives_the_trained_models_logits(
    json_run: SimpleNamespace, tiny_model_dir: Path
):
    import torch
    from accelerate.utils import extract_model_from_parallel
    from peft import get_peft_model_state_dict

    # Training with mixed precision left an autocast wrapper on the model's forward; without it
    # the trained model computes in float32, as the reloaded one does.
    trained = extract_model_from_parallel(json_run.model, keep_fp32_wrapper=False)
    loaded = with_adapter(tiny_model_dir, json_run.out / "adapter")
    in_memory = get_peft_model_state_dict(trained)
    on_disk = adapter_weights(json_run.out / "adapter")
    assert in_memory.keys() == on_disk.keys()
    assert all(torch.equal(in_memory[k].cpu(), on_disk[k]) for k in on_disk)
    expected, reloaded = logits(trained), logits(loaded)
    assert torch.allclose(expected, reloaded, atol=1e-5), (expected - reloaded).abs().max()
    with loaded.disable_adapter():  # sanity: the adapter is not a no-op
        untouched = logits(loaded)
    assert not torch.allclose(untouched, reloaded, atol=1e-5)


def test_saved_adapter_is_the_best_evaluations(json_run: SimpleNamespace):
    """Early stopping restores the best weights before the save: adapter/ is the best adapter
    it kept with the checkpoints."""
    import torch

    best_adapter = json_run.out / "checkpoints" / "best-adapter"
    saved = adapter_weights(json_run.out / "adapter")
    best = adapter_weights(best_adapter)
    assert saved.keys() == best.keys()
    assert all(torch.equal(saved[k], best[k]) for k in saved)
    marker = json.loads((best_adapter / "peftkit_best.json").read_text())
    assert marker["step"] == json_run.metrics["best_step"]
    assert json_run.metrics["restored_best"] is True
    assert json_run.metrics["after"]["eval_loss"] == pytest.approx(json_run.metrics["best_metric"])


def test_training_png_is_a_real_image(json_run: SimpleNamespace):
    import matplotlib.image

    path = json_run.out / "training.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert path.stat().st_size > 10_000
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert height >= 200 and width >= 300
    assert image.std() > 0.01  # drawn on, not a blank canvas


def test_recipe_yaml_loads_back_as_the_recipe_that_ran(json_run: SimpleNamespace):
    saved = recipes.load(json_run.out / "recipe.yaml")
    assert saved.model.name == json_run.recipe.model.name
    assert saved.json_schema == SCHEMA
    ran = json_run.recipe.model_dump()
    written = saved.model_dump()
    # The saved recipe is the one that ran, with the data it ran on, its detected format and the
    # learning rate `auto` resolved to for this model (a number, so that a rerun learns alike).
    assert ran["training"]["learning_rate"] == "auto"
    ran["training"]["learning_rate"] = json_run.metrics["resolved"]["training.learning_rate"][
        "value"
    ]
    assert isinstance(ran["training"]["learning_rate"], float)
    assert written["data"] == {
        **ran["data"],
        "format": "prompt-completion",
        "train_path": str(json_run.data),
        "eval_path": None,
    }
    assert {k: v for k, v in written.items() if k != "data"} == {
        k: v for k, v in ran.items() if k != "data"
    }
    # The run's own best-adapter folder is not baked into the recipe (a rerun must not use it).
    assert saved.callbacks.early_stopping.save_best_to is None


def test_recipe_yaml_records_the_data_it_was_trained_on(json_run: SimpleNamespace):
    """recipe.yaml says which data the run used (an absolute path), or the run cannot be
    repeated from its own outputs."""
    saved = recipes.load(json_run.out / "recipe.yaml")
    assert saved.data.train_path == str(json_run.data)


def test_rerunning_the_saved_recipe_leaves_the_first_run_alone(
    json_run: SimpleNamespace, tmp_path: Path
):
    """recipe.yaml names the first run's best-adapter folder (save_best_to); training again
    from that file into a new folder must not write into the first run's outputs."""
    marker = json_run.out / "checkpoints" / "best-adapter" / "peftkit_best.json"
    first = marker.stat()
    again = recipes.load(json_run.out / "recipe.yaml")
    train(again, tmp_path / "again")  # the saved recipe names its data
    now = marker.stat()  # rewritten (same content: same seed) if the rerun wrote there
    assert (now.st_ino, now.st_mtime_ns) == (first.st_ino, first.st_mtime_ns), (
        "training from the saved recipe.yaml wrote into the first run's best-adapter/"
    )
    assert (tmp_path / "again" / "checkpoints" / "best-adapter").is_dir()


# --- data formats and file types -----------------------------------------------------------------


def test_domain_adaptation_trains_on_text_from_a_saved_dataset(tiny_model_dir, tmp_path):
    data = write_data(tmp_path / "corpus", text_rows(40))
    recipe = load_recipe(
        "domain-adaptation", short(tiny_model_dir, "data.format=auto", json_output=False)
    )
    metrics = train(with_data(recipe, data), tmp_path / "out")
    assert metrics["data"]["format"] == "text"
    assert metrics["data"]["eval_rows"] == round(40 * 0.05)
    for when in ("before", "after"):
        assert metrics[when]["perplexity"] == pytest.approx(math.exp(metrics[when]["eval_loss"]))
        assert "json_valid_rate" not in metrics[when]
    assert metrics["global_step"] == 4
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()


def test_chat_data_trains_through_the_cli_with_eval_data_and_overwrite(tiny_model_dir, tmp_path):
    """messages (.json array) detected with data.format=auto, --eval-data (.jsonl) used as the
    held-out set, and --overwrite replacing an earlier peftkit output."""
    data = write_data(tmp_path / "chat.json", messages_rows(20))
    held_out = write_data(tmp_path / "held-out.jsonl", messages_rows(26)[20:])
    out = earlier_output(tmp_path / "out", {"old.txt": "an earlier run"})
    overrides = short(tiny_model_dir, "data.format=auto")
    result = peftkit_cli(
        "train", "json-output", *overrides, "--data", str(data), "--eval-data", str(held_out),
        "--output", str(out), "--overwrite", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (out / "old.txt").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"] == {
        "format": "messages",
        "train_rows": 20,
        "eval_rows": 6,
        "eval_source": str(held_out),
        "notes": [],
    }
    assert metrics["before"]["count"] == 4
    # The reference answers are the last assistant turns: their content is scored, in the
    # metrics and in the summary.
    content = {"exact_match_rate", "key_match_rate", "stopped_rate", "truncated_rate"}
    assert content <= set(metrics["before"]) and content <= set(metrics["after"])
    assert "keys matching the reference" in result.stdout
    saved = recipes.load(out / "recipe.yaml")
    assert saved.model.name == str(tiny_model_dir)
    assert saved.data.train_path == str(data)
    assert saved.data.eval_path == str(held_out)
    rate = metrics["resolved"]["training.learning_rate"]["value"]
    expected = load_recipe(
        "json-output",
        merged(*overrides, f"data.train_path={json.dumps(str(data))}", "data.format=messages")
        + [f"data.eval_path={json.dumps(str(held_out))}", f"training.learning_rate={rate}"],
    )
    assert saved == expected  # detected format, data paths and resolved learning rate recorded


def test_auto_format_trains_chat_data_like_the_messages_format(tiny_model_dir, tmp_path):
    """data.format=auto on chat data must train as data.format=messages does: json-output's
    completion-only loss (assistant turns only). Same model, data and split, so the held-out
    loss before training must be the same number."""
    data = write_data(tmp_path / "chat.jsonl", messages_rows(20))
    found = {}
    for fmt in ("messages", "auto"):
        recipe = load_recipe(
            "json-output", short(tiny_model_dir, f"data.format={fmt}", "training.max_steps=1")
        )
        metrics = train(with_data(recipe, data), tmp_path / fmt)
        assert metrics["data"]["format"] == "messages"
        found[fmt] = metrics["before"]["eval_loss"]
    assert found["auto"] == pytest.approx(found["messages"], abs=1e-6)


# --- the held-out split --------------------------------------------------------------------------


def _split(model_dir: Path, data: Path, *extra: str, eval_data: Path | None = None) -> Any:
    recipe = load_recipe("json-output", short(model_dir, *extra))
    return prepare(recipe, data, eval_data)


@pytest.mark.parametrize(("rows", "fraction"), [(40, 0.1), (25, 0.2), (30, 0.5), (12, 0.25)])
def test_held_out_rows_are_the_eval_fraction(rows, fraction, tiny_model_dir, tmp_path):
    data = write_data(tmp_path / "d.jsonl", prompt_completion_rows(rows))
    splits = _split(tiny_model_dir, data, f"training.eval_fraction={fraction}")
    assert len(splits.eval) == int(rows * fraction)  # rounded down
    assert len(splits.train) + len(splits.eval) == rows
    prompts = set(splits.train["prompt"]) | set(splits.eval["prompt"])
    assert len(prompts) == rows  # disjoint, and nothing lost


def test_held_out_split_depends_on_the_seed_only(tiny_model_dir: Path, tmp_path: Path):
    data = write_data(tmp_path / "d.jsonl", prompt_completion_rows(40))

    def held_out(seed: int) -> list[str]:
        return _split(tiny_model_dir, data, f"training.seed={seed}").eval["prompt"]

    assert held_out(42) == held_out(42)
    assert held_out(7) == held_out(7)
    assert sorted(held_out(42)) != sorted(held_out(7))


def test_eval_data_replaces_the_split(tiny_model_dir: Path, tmp_path: Path):
    rows = prompt_completion_rows(30)
    data = write_data(tmp_path / "train.jsonl", rows[:20])
    held_out = write_data(tmp_path / "held-out.parquet", rows[20:])
    splits = _split(tiny_model_dir, data, eval_data=held_out)
    assert len(splits.train) == 20
    assert splits.eval.to_list() == rows[20:]
    assert splits.eval_source == str(held_out)


# --- the output folder ---------------------------------------------------------------------------


def test_train_refuses_a_non_empty_folder_in_process(tiny_model_dir: Path, tmp_path: Path):
    (tmp_path / "notes.txt").write_text("mine")
    recipe = load_recipe("json-output", short(tiny_model_dir))
    with pytest.raises(RecipeError, match=r"notes\.txt, which peftkit did not write"):
        train(with_data(recipe, tmp_path / "missing.jsonl"), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# --- stops, as metrics.json reports them --------------------------------------------------------


def _stopped(metrics: dict[str, Any], reason: str, by: str) -> None:
    assert metrics["stop_reason"] == reason, metrics["stop_message"]
    assert metrics["stopped_by"] == by
    assert metrics["stop_message"]


def test_early_stopping_threshold_stops_at_the_first_evaluation(tiny_model_dir, tmp_path):
    data = write_data(tmp_path / "d.jsonl", prompt_completion_rows(40))
    recipe = load_recipe(
        "json-output",
        short(
            tiny_model_dir,
            "training.max_steps=20",
            "callbacks.early_stopping.stopping_threshold=100",
        ),
    )
    metrics = train(with_data(recipe, data), tmp_path / "out")
    _stopped(metrics, "stopping_threshold", "EarlyStopping")
    assert metrics["global_step"] == 2  # the first evaluation (eval_steps=2)
    assert metrics["best_step"] == 2
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["stop_reason"] == "stopping_threshold"


def test_a_run_that_kept_improving_reports_no_stop(tiny_model_dir: Path, tmp_path: Path):
    """patience=1, and every evaluation during training improves: nothing stopped training, so
    metrics.json must not report a stop (the evaluation after training is not a training
    evaluation: after the best weights are restored it cannot improve on them)."""
    data = write_data(tmp_path / "d.jsonl", prompt_completion_rows(40))
    recipe = load_recipe(
        "json-output",
        short(tiny_model_dir, "callbacks.early_stopping.patience=1", "training.precision=fp32"),
    )
    metrics = train(with_data(recipe, data), tmp_path / "out")
    assert metrics["best_step"] == 4, "premise: the last evaluation (step 4) was the best"
    assert metrics["global_step"] == 4
    assert metrics["stop_reason"] is None, metrics["stop_message"]


def test_overfit_detector_stops_an_overfitting_run(tiny_model_dir: Path, tmp_path: Path):
    """Four training texts, a high learning rate: train loss falls, eval loss turns up."""
    rows = text_rows(200)
    data = write_data(tmp_path / "train.jsonl", rows[:4])
    held_out = write_data(tmp_path / "held-out.jsonl", rows[100:116])
    recipe = load_recipe(
        "domain-adaptation",
        merged(
            *short(tiny_model_dir, json_output=False),
            "training.max_steps=60",
            "training.eval_steps=3",
            "training.logging_steps=3",
            "training.gradient_accumulation_steps=1",
            "training.learning_rate=1e-2",
            "training.warmup_steps=0",
            "training.lr_scheduler=constant",
            "training.packing=false",
            "training.precision=fp32",
            "callbacks.overfit.action=stop",
            "callbacks.early_stopping.enabled=false",
        ),
    )
    metrics = train(with_data(recipe, data, held_out), tmp_path / "out")
    _stopped(metrics, "overfitting", "OverfitDetector")
    assert metrics["overfit_detected_step"] == metrics["global_step"] < 60
    assert metrics["global_step"] % 3 == 0  # at an evaluation


def test_gradient_check_stops_on_a_non_finite_gradient(tiny_model_dir: Path, tmp_path: Path):
    """A float16 base and a huge learning rate: activations overflow within a few steps."""
    data = write_data(tmp_path / "d.jsonl", prompt_completion_rows(40))
    recipe = load_recipe(
        "json-output",
        merged(
            *short(tiny_model_dir),
            "model.dtype=float16",
            "training.precision=fp32",
            "training.learning_rate=0.9",
            "training.lr_scheduler=constant",
            "training.warmup_steps=0",
            "training.max_steps=20",
            "training.eval_steps=10",
            "training.gradient_accumulation_steps=1",
        ),
    )
    metrics = train(with_data(recipe, data), tmp_path / "out")
    _stopped(metrics, "non_finite_gradient", "GradientCheck")
    assert metrics["global_step"] < 20
    weights = adapter_weights(tmp_path / "out" / "adapter")  # the bad step was never applied
    assert weights and all(w.float().isfinite().all() for w in weights.values())


# --- Ctrl-C --------------------------------------------------------------------------------------


def _best_step(folder: Path) -> int | None:
    try:
        return json.loads((folder / "peftkit_best.json").read_text())["step"]
    except (OSError, ValueError, KeyError):
        return None


def _interrupt_during_training(model_dir: Path, folder: Path, *extra: str) -> tuple[int, str]:
    """Start a long run into ``folder/out``, press Ctrl-C once an evaluation during training
    saved a best adapter; return the exit code and stderr."""
    data = write_data(folder / "d.jsonl", prompt_completion_rows(40))
    out = folder / "out"
    overrides = short(
        model_dir,
        "training.max_steps=100000",
        "training.learning_rate=1e-3",
        "training.lr_scheduler=constant",
        "training.warmup_steps=0",  # 3% of 100000 steps would barely move the adapter
        "callbacks.early_stopping.patience=1000",
        "training.save=steps",  # keeps the best adapter on disk, where the test sees it
        "training.save_steps=100000",
    )
    command = [sys.executable, "-m", "peftkit", "train", "json-output", *overrides]
    command += ["--data", str(data), "--output", str(out), *extra]
    process = subprocess.Popen(
        command, cwd=folder, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    best = folder / f".out{STAGING}" / "checkpoints" / "best-adapter"  # written beside out/
    try:
        deadline = time.monotonic() + 180
        # best-adapter/ is first written by the evaluation before training (step 0); wait for
        # one made by an evaluation during training.
        while (_best_step(best) or 0) < 2:
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no evaluation during training within 180 s"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stderr


def test_ctrl_c_saves_the_best_adapter_says_interrupted_and_exits_130(tiny_model_dir, tmp_path):
    """Ctrl-C: the clean stop (the best adapter so far, saved), and exit code 130, so that
    `peftkit train ... && next-step` does not go on."""
    code, stderr = _interrupt_during_training(tiny_model_dir, tmp_path)
    assert code == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    out = tmp_path / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stop_reason"] == "interrupted"
    assert 2 <= metrics["global_step"] < 100000
    assert metrics["restored_best"] is True
    loaded = with_adapter(tiny_model_dir, out / "adapter")
    assert logits(loaded).isfinite().all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "out"]


def test_ctrl_c_of_an_overwrite_keeps_the_earlier_run(tiny_model_dir, tmp_path):
    """--overwrite onto an earlier run, then Ctrl-C: the earlier run is untouched, nothing
    half-written is left beside it, and the message says so."""
    out = earlier_output(tmp_path / "out", {"metrics.json": '{"earlier": true}'})
    earlier = {p.name: p.read_bytes() for p in out.iterdir()}
    code, stderr = _interrupt_during_training(tiny_model_dir, tmp_path, "--overwrite")
    assert code == 130, stderr[-3000:]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "out"]


INTERRUPT_IN_FINAL_EVALUATION = """
import os, signal, sys
from pathlib import Path
import torch
from peftkit.cli import main

final_checkpoint = Path(sys.argv[1])
fired = []

def press_ctrl_c(module, args, output):
    # The first forward pass after training wrote its final checkpoint belongs to the
    # evaluation after training: Ctrl-C there, as a user would while it generates answers.
    if not fired and final_checkpoint.exists():
        fired.append(True)
        os.kill(os.getpid(), signal.SIGINT)

torch.nn.modules.module.register_module_forward_hook(press_ctrl_c)
sys.argv = ["peftkit", *sys.argv[2:]]
main()
"""


def test_ctrl_c_during_the_final_evaluation_keeps_the_trained_adapter(tiny_model_dir, tmp_path):
    """Training is over and the evaluation after it (minutes of generation on a real model)
    is running when the user presses Ctrl-C: the trained adapter must still be saved."""
    data = write_data(tmp_path / "d.jsonl", prompt_completion_rows(40))
    out = tmp_path / "out"
    args = ["train", "json-output", *short(tiny_model_dir, "training.save_steps=4")]
    args += ["--data", str(data), "--output", str(out)]
    final_checkpoint = tmp_path / f".out{STAGING}" / "checkpoints" / "checkpoint-4"
    result = subprocess.run(
        [sys.executable, "-c", INTERRUPT_IN_FINAL_EVALUATION, str(final_checkpoint), *args],
        cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 130, result.stderr[-3000:]  # premise: Ctrl-C after training
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert (out / "adapter" / "adapter_model.safetensors").is_file(), result.stderr[-2000:]
    assert (out / "metrics.json").is_file()


# --- JSON evaluation -----------------------------------------------------------------------------


def test_json_answers_during_training_adds_the_rate_to_the_metrics(tiny_model_dir, tmp_path):
    """With generation.during_training, eval_json_valid_rate is among the evaluation metrics:
    early stopping can monitor it (here it stops at once: any rate reaches 0)."""
    data = write_data(tmp_path / "d.jsonl", prompt_completion_rows(40))
    recipe = load_recipe(
        "json-output",
        merged(
            *short(tiny_model_dir),
            "training.max_steps=20",
            "generation.during_training=2",
            "callbacks.early_stopping.metric=eval_json_valid_rate",
            "callbacks.early_stopping.mode=max",
            "callbacks.early_stopping.stopping_threshold=0",
        ),
    )
    metrics = train(with_data(recipe, data), tmp_path / "out")
    _stopped(metrics, "stopping_threshold", "EarlyStopping")
    assert metrics["global_step"] == metrics["best_step"] == 2
    # The monitored value is a share of the 2 prompts answered at that evaluation, and it is
    # the one the stop names.
    best = metrics["best_metric"]
    assert best in (0.0, 0.5, 1.0)
    assert metrics["stop_message"].startswith(f"eval_json_valid_rate={best:.6g} reached")
