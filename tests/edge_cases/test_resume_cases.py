"""``--resume`` and the folders a run replaces: a resume never replaces an output it does not
continue, a folder peftkit wrote is replaced only while it holds nothing else (the inventory
rule, for the output and for early stopping's ``save_best_to`` alike), and a checkpoint is
checked against the run before anything loads.

Every case is a real earlier run of the tiny model (its checkpoints, its outputs) made in the
case's folder, so that the folder is hashed before and after with what a user would have there.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from corpus import Case, run_case, snapshot, write_files
from train_helpers import SHORT_GENERATION, SHORT_RUN, load_recipe, merged, run_main, with_data

from peftkit.core.folders import MARKER
from peftkit.run.outputs import STAGING
from peftkit.testing import prompt_completion_rows

ROWS = prompt_completion_rows(12)
SAVING = ("training.max_steps=4", "training.save_steps=2", "callbacks.early_stopping.patience=10")
"""A short run that writes checkpoint-2 and checkpoint-4."""


def train_args(*extra: str) -> tuple[str, ...]:
    return tuple(merged("train", "json-output", "--model", "{model}", "--data", "t.jsonl",
                        *SHORT_RUN, *SHORT_GENERATION, *extra))  # fmt: skip


def earlier_run(folder: Path, output: str, *overrides: str) -> Path:
    """A finished `peftkit train` of the tiny model in ``folder`` (the case's model and data),
    written to ``folder/output``."""
    from peftkit.run.train import train

    write_files(folder, {"t.jsonl": ROWS})
    recipe = load_recipe(
        "json-output",
        merged(f"model.name={json.dumps(str(folder / 'model'))}", *SHORT_RUN, *SHORT_GENERATION,
               *overrides),
    )  # fmt: skip
    train(with_data(recipe, folder / "t.jsonl"), folder / output)
    return folder / output


def runs(*steps: Callable[[Path], object]) -> Callable[[Path], None]:
    """The ``steps`` run in the case's folder (relative paths in them are relative to it)."""

    def setup(folder: Path) -> None:
        with contextlib.chdir(folder):
            for step in steps:
                step(folder)

    return setup


def run_to(output: str, *overrides: str) -> Callable[[Path], Path]:
    return lambda folder: earlier_run(folder, output, *overrides)


def add_file(path: str, text: str = "mine") -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)

    return setup


CKPT = "first/checkpoints/checkpoint-4"

FILE_LOSS = [
    Case("resume-another-runs-checkpoint-into-a-finished-run",
         train_args("--output", "victim", "--resume", CKPT, *SAVING),
         ("--resume", "victim", "first"),
         setup=runs(run_to("first", *SAVING), run_to("victim")), model=True),
    Case("save-best-to-holds-a-file-added-since-peftkit-wrote-it",
         train_args("--output", "second", "callbacks.early_stopping.save_best_to=best"),
         ("callbacks.early_stopping.save_best_to", "notes.txt", "did not write"),
         setup=runs(run_to("first", "callbacks.early_stopping.save_best_to=best"),
                    add_file("best/notes.txt")),
         model=True),
]  # fmt: skip
"""The two ways a run lost a user's files (issue 24): both fail on the code before the fix."""


def edit(path: str, text: str | None) -> Callable[[Path], None]:
    """Damage a file of an earlier run: new ``text``, or None to delete it."""

    def setup(folder: Path) -> None:
        if text is None:
            (folder / path).unlink()
        else:
            (folder / path).write_text(text)

    return setup


def resume_out(*extra: str) -> tuple[str, ...]:
    return train_args("--output", "out", "--resume", "auto", *SAVING, *extra)


OUT = run_to("out", *SAVING)


def killed(folder: Path) -> None:
    """``out`` as a run killed after checkpoint-4 leaves it: its staging folder with the
    checkpoints and the recipe, no results, no output."""
    staging = folder / f".out{STAGING}"
    (folder / "out").rename(staging)
    for name in ("adapter", "metrics.json", "training.png", MARKER):
        path = staging / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


KILLED = runs(OUT, killed)
LAST = f".out{STAGING}/checkpoints/checkpoint-4"
STATE = f"{LAST}/trainer_state.json"

RESUMES = [
    Case("resume-auto-with-overwrite", resume_out("--overwrite"),
         ("--resume auto --overwrite", "drop --overwrite", "drop --resume"), setup=OUT,
         model=True),
    Case("resume-another-runs-checkpoint-into-a-new-output",
         train_args("--output", "new", "--resume", "out/checkpoints/checkpoint-2", *SAVING),
         ("checkpoint-2 belongs to run", "--fork"), setup=OUT, model=True),
    Case("resume-a-loose-checkpoint-without-fork",
         train_args("--output", "new", "--resume", "saved/checkpoint-4", *SAVING),
         ("not an output of peftkit", "--fork"),
         setup=runs(OUT, lambda f: (f / "out/checkpoints").rename(f / "saved")), model=True),
    Case("resume-with-another-rank", resume_out("training.max_steps=6", "lora.r=8"),
         ("lora.r", "got 8", "lora.r=16"), setup=OUT, model=True),
    Case("resume-with-another-model",
         tuple(merged("train", "json-output", "--model", "model2", "--data", "t.jsonl",
                      *SHORT_RUN, *SHORT_GENERATION, "--output", "out", "--resume", "auto",
                      *SAVING, "training.max_steps=6")),
         ("model.name", "model2", "model.name="),
         setup=runs(OUT, lambda f: shutil.copytree(f / "model", f / "model2")), model=True),
    Case("resume-with-another-learning-rate",
         resume_out("training.max_steps=6", "training.learning_rate=0.001"),
         ("training.learning_rate", "got 0.001", "optimizer and schedule"), setup=OUT,
         model=True),
    Case("resume-with-another-schedule",
         resume_out("training.max_steps=6", "training.lr_scheduler=linear"),
         ("training.lr_scheduler", "got 'linear'", "lr_scheduler=cosine"), setup=OUT, model=True),
    Case("resume-with-nothing-left-to-train", resume_out(),
         ("step 4", "training.max_steps is 4", "training.max_steps above 4"), setup=OUT,
         model=True),
    Case("resume-an-empty-trainer-state", resume_out("training.max_steps=6"),
         ("checkpoint-4", "damaged", "it is empty", "checkpoint-2"),
         setup=runs(KILLED, edit(STATE, "")), model=True),
    Case("resume-a-trainer-state-that-is-not-json", resume_out("training.max_steps=6"),
         ("checkpoint-4", "damaged", "trainer_state.json cannot be read"),
         setup=runs(KILLED, edit(STATE, "{'global_step': 4")), model=True),
    Case("resume-a-trainer-state-without-a-step", resume_out("training.max_steps=6"),
         ("damaged", "global_step"), setup=runs(KILLED, edit(STATE, "[]")), model=True),
    Case("resume-a-checkpoint-without-adapter-weights", resume_out("training.max_steps=6"),
         ("damaged", "no adapter weights"),
         setup=runs(KILLED, edit(f"{LAST}/adapter_model.safetensors", None)),
         model=True),
    Case("resume-a-damaged-checkpoint-of-a-finished-run", resume_out("training.max_steps=6"),
         ("checkpoint-4", "damaged", "it is empty"),
         setup=runs(OUT, edit("out/checkpoints/checkpoint-4/trainer_state.json", "")),
         model=True),
    Case("resume-a-checkpoint-whose-adapter-config-is-damaged",
         resume_out("training.max_steps=6"), ("damaged", "adapter_config.json"),
         setup=runs(KILLED, edit(f"{LAST}/adapter_config.json", "{")),
         model=True),
]  # fmt: skip
"""A resume that cannot continue the run as asked: refused before the model loads, naming the
checkpoint's value and the run's."""


@pytest.mark.parametrize("case", [c.param() for c in RESUMES])
def test_a_resume_that_cannot_continue_the_run(case: Case, tmp_path, monkeypatch, tiny_model_dir):
    run_case(case, tmp_path, monkeypatch, tiny_model_dir)


@pytest.mark.parametrize("case", [c.param() for c in FILE_LOSS])
def test_a_run_never_loses_a_users_files(case: Case, tmp_path, monkeypatch, tiny_model_dir):
    run_case(case, tmp_path, monkeypatch, tiny_model_dir)


def test_resume_of_an_outputs_own_checkpoint_still_replaces_it(
    tmp_path: Path, monkeypatch, tiny_model_dir: Path
) -> None:
    """The run a checkpoint belongs to is continued in place, without --overwrite."""
    shutil.copytree(tiny_model_dir, tmp_path / "model")
    earlier_run(tmp_path, "first", *SAVING)
    monkeypatch.chdir(tmp_path)
    more = train_args("--output", "first", "--resume", CKPT, *SAVING, "training.max_steps=6")
    args = [a.replace("{model}", str(tmp_path / "model")) for a in more]
    code, _, err = run_main(monkeypatch, *args)
    assert code == 0, err
    metrics = json.loads((tmp_path / "first" / "metrics.json").read_text())
    assert metrics["global_step"] == 6
    assert snapshot(tmp_path / "model")  # the model folder is still there


def test_an_interrupted_run_resumed_keeps_the_logs_of_its_first_part(
    tmp_path: Path, monkeypatch, tiny_model_dir: Path
) -> None:
    """Ctrl-C (a real SIGINT) after checkpoint-4 of 6 steps, then ``--resume auto``: the
    TensorBoard events written before the interruption are still in OUTPUT/logs, byte for byte,
    beside those of the resumed part; so is the best adapter the first part saved."""
    import signal

    import torch

    shutil.copytree(tiny_model_dir, tmp_path / "model")
    write_files(tmp_path, {"t.jsonl": ROWS})
    monkeypatch.chdir(tmp_path)
    more = train_args("--output", "out", *SAVING, "training.max_steps=6",
                      "training.report_to=tensorboard")  # fmt: skip
    args = [a.replace("{model}", str(tmp_path / "model")) for a in more]
    complete = tmp_path / f".out{STAGING}" / "checkpoints" / "checkpoint-4" / "trainer_state.json"

    def interrupt(module, inputs, output):
        if complete.exists():
            signal.raise_signal(signal.SIGINT)

    hook = torch.nn.modules.module.register_module_forward_hook(interrupt)
    try:
        code, _, err = run_main(monkeypatch, *args)
    finally:
        hook.remove()
    assert code == 130, err
    logs = tmp_path / "out" / "logs"
    first = {p.relative_to(logs): p.read_bytes() for p in logs.rglob("*") if p.is_file()}
    assert first, "the first part wrote no TensorBoard events"
    code, _, err = run_main(monkeypatch, *args, "--resume", "auto")
    assert code == 0, err
    after = {p.relative_to(logs): p.read_bytes() for p in logs.rglob("*") if p.is_file()}
    assert {name: after.get(name) for name in first} == first
    assert len(after) > len(first)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["global_step"] == 6 and metrics["stop_reason"] != "interrupted"
    assert (tmp_path / "out" / "checkpoints" / "best-adapter").is_dir()
