"""The command line around the commands: ``--json`` answers an error with JSON on stdout too,
Ctrl-C always prints a line, and ``peftkit new newdir/`` writes into the folder.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from corpus import Case, run_case, snapshot, write_files
from train_helpers import SHORT_GENERATION, SHORT_RUN, cli_env, run_main

from peftkit.testing import prompt_completion_rows

ROWS = prompt_completion_rows(12)
TRAIN = ("train", "json-output", "--model", "{model}", "--data", "t.jsonl", "--output", "out",
         *SHORT_RUN, *SHORT_GENERATION)  # fmt: skip

JSON_ERRORS = [
    Case("json-show-an-unknown-recipe", ("show", "nope", "--json"), ("nope",)),
    Case("json-validate-a-bad-override", ("validate", "json-output", "lora.r=0", "--json"),
         ("lora.r",)),
    Case("json-plan-a-missing-config", ("plan", "json-output", "--model", "no.json", "--json"),
         ("no.json",)),
    Case("json-estimate-a-bad-option", ("estimate", "--model", "c.json", "--seq-len", "many",
                                        "--json"), ("--seq-len",), {"c.json": {}}),
    Case("json-estimate-a-bad-config", ("estimate", "--model", "c.json", "--json"),
         ("model_type",), {"c.json": {"hidden_size": 64}}),
    Case("json-check-missing-data",
         ("check", "json-output", "--model", "{model}", "--data", "no.jsonl", "--json"),
         ("no.jsonl",), model=True),
    Case("json-train-a-refused-output", (*TRAIN, "--json"), ("notes.txt", "did not write"),
         {"t.jsonl": ROWS, "out/notes.txt": "mine"}, model=True),
    Case("json-train-an-override-given-twice", (*TRAIN, "lora.r=8", "lora.r=4", "--json"),
         ("lora.r", "set twice"), {"t.jsonl": ROWS}, model=True),
]  # fmt: skip


@pytest.mark.parametrize("case", [c.param() for c in JSON_ERRORS])
def test_json_answers_an_error_with_json_on_stdout(
    case: Case, tmp_path: Path, monkeypatch, tiny_model_dir: Path
) -> None:
    """Exit 2, the plain message on stderr, nothing touched (the corpus' checks), and on stdout
    one JSON object with the error: its message and its problems."""
    run_case(case, tmp_path, monkeypatch, tiny_model_dir)
    args = [a.replace("{model}", str(tmp_path / "model")) for a in case.args]
    _, out, err = run_main(monkeypatch, *args)
    found = json.loads(out)["error"]
    assert found["exit_code"] == 2 and found["problems"]
    first_line = err.removeprefix("error: ").splitlines()[0]
    assert found["message"].splitlines()[0] == first_line
    for text in case.mentions:
        assert text in json.dumps(found)


def test_json_after_a_failed_push_names_the_kept_results(tiny_model_dir: Path, tmp_path: Path):
    """Offline, the upload fails after the run: stdout is the error as JSON (it used to be
    empty), and the results stay."""
    shutil.copytree(tiny_model_dir, tmp_path / "model")
    write_files(tmp_path, {"t.jsonl": ROWS})
    args = [a.replace("{model}", str(tmp_path / "model")) for a in TRAIN]
    result = subprocess.run(
        [sys.executable, "-m", "peftkit", *args, "--push-to-hub", "me/adapter", "--json"],
        cwd=tmp_path, env={**cli_env(), "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    found = json.loads(result.stdout)["error"]
    assert "hf upload me/adapter" in found["message"]
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("when", ["before-training", "during-training"])
def test_ctrl_c_always_prints_a_line(
    as_json: bool, when: str, tmp_path: Path, monkeypatch, tiny_model_dir: Path
) -> None:
    """A real SIGINT before training (in the first evaluation) or during it: exit 130 and a
    line on stderr that says so, with --json too (whose stdout then holds JSON)."""
    import torch

    shutil.copytree(tiny_model_dir, tmp_path / "model")
    write_files(tmp_path, {"t.jsonl": ROWS})
    monkeypatch.chdir(tmp_path)
    args = [a.replace("{model}", str(tmp_path / "model")) for a in TRAIN]
    training = when == "during-training"

    def interrupt(module, inputs, output):
        if torch.is_grad_enabled() == training and module.training == training:
            signal.raise_signal(signal.SIGINT)

    hook = torch.nn.modules.module.register_module_forward_hook(interrupt)
    try:
        code, out, err = run_main(monkeypatch, *args, *(["--json"] if as_json else []))
    finally:
        hook.remove()
    assert code == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted"), err[-2000:]
    if training:
        assert last.startswith("interrupted after step") and "out" in last
    if as_json:
        found = json.loads(out)
        assert found.get("stop_reason") == "interrupted" or found["error"]["exit_code"] == 130


def test_new_into_a_folder_writes_the_recipe_inside(tmp_path: Path, monkeypatch) -> None:
    """`peftkit new newdir/` wrote a file named newdir; now newdir/json-output.yaml."""
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(monkeypatch, "new", "newdir/", "--from", "qlora-budget")
    assert code == 0, err
    assert (tmp_path / "newdir" / "qlora-budget.yaml").is_file()
    assert "newdir/qlora-budget.yaml" in out
    code, _, err = run_main(monkeypatch, "validate", "newdir/qlora-budget.yaml")
    assert code == 0, err


NEW = [
    Case("new-into-a-folder-that-holds-the-recipe", ("new", "d/"),
         ("d/json-output.yaml", "already exists"), {"d/json-output.yaml": "mine\n"}),
    Case("new-onto-an-existing-folder-says-how-to-write-inside", ("new", "d"),
         ("d already exists", "d/ to write inside"), {"d/keep.txt": "keep"}),
]  # fmt: skip


@pytest.mark.parametrize("case", [c.param() for c in NEW])
def test_new_never_replaces_anything(case: Case, tmp_path, monkeypatch, tiny_model_dir):
    run_case(case, tmp_path, monkeypatch, tiny_model_dir)
    assert snapshot(tmp_path)
