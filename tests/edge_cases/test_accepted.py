"""Unusual inputs peftkit accepts on purpose, each run for real: they must work, not merely fail
politely. The reason each is accepted rather than refused is in its docstring (and in
docs/training.md where users look for it). Also: what the command line does with a user error
under ``--debug``, and with a genuine bug.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from train_helpers import SHORT_GENERATION, SHORT_RUN, run_main, with_data

from peftkit.core.errors import RecipeError
from peftkit.testing import prompt_completion_rows, write_data


def _train(monkeypatch, model: Path, data: Path, out: Path, *extra: str, recipe="json-output"):
    args = ["train", recipe, "--model", str(model), *SHORT_RUN]
    args += SHORT_GENERATION if recipe == "json-output" else []
    return run_main(monkeypatch, *args, *extra, "--data", str(data), "--output", str(out))


def test_json_object_completions_are_written_as_json_text(monkeypatch, tiny_model_dir, tmp_path):
    """json-output answers are JSON: a completion given as an object (what people write when
    their data is JSON already) means that JSON, so it is serialized, and the run says so."""
    rows = [
        {"prompt": row["prompt"], "completion": json.loads(row["completion"])}
        for row in prompt_completion_rows(12)
    ]
    data = write_data(tmp_path / "objects.jsonl", rows)
    code, out, err = _train(monkeypatch, tiny_model_dir, data, tmp_path / "out")
    assert code == 0, err
    assert "12 answer(s) given as JSON objects" in " ".join(out.split())  # as rich wraps it
    notes = json.loads((tmp_path / "out" / "metrics.json").read_text())["data"]["notes"]
    assert len(notes) == 1 and "JSON text" in notes[0]


def test_qlora_budget_trains_a_small_model_with_early_stopping(
    monkeypatch, tiny_model_dir, tmp_path
):
    """qlora-budget on a model so small that its adapter outweighs its 4-bit base: keeping the
    best adapter copies megabytes, which is what early stopping is for (it used to be refused
    as "full fine-tuning")."""
    data = write_data(tmp_path / "t.jsonl", prompt_completion_rows(12))
    code, _, err = _train(
        monkeypatch, tiny_model_dir, data, tmp_path / "out", recipe="qlora-budget"
    )
    assert code == 0, err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["global_step"] == 4 and metrics["best_step"] is not None


def test_a_utf8_bom_and_windows_line_ends_are_read(monkeypatch, tiny_model_dir, tmp_path):
    """Files saved by Windows tools: a byte-order mark and CRLF line ends are still UTF-8 text."""
    lines = [json.dumps(row) for row in prompt_completion_rows(12)]
    data = tmp_path / "windows.jsonl"
    data.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(b"\xef\xbb\xbfrecipe: json-output\r\nlora:\r\n  r: 8\r\n  alpha: 16\r\n")
    args = ["train", str(recipe), "--model", str(tiny_model_dir), *SHORT_RUN, *SHORT_GENERATION]
    code, _, err = run_main(
        monkeypatch, *args, "--data", str(data), "--output", str(tmp_path / "o")
    )
    assert code == 0, err
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["data"]["train_rows"] + metrics["data"]["eval_rows"] == 12  # every line
    adapter = json.loads((tmp_path / "o" / "adapter" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (8, 16)  # the recipe file was read
    prompts = {row["prompt"] for row in prompt_completion_rows(12)}
    asked = [example["prompt"] for example in metrics["after"]["examples"]]
    assert asked and all(prompt in prompts for prompt in asked)  # no BOM, no \r in the text


def test_debug_shows_the_traceback_of_a_user_error(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(monkeypatch, "validate", "json-output", "lora.r=0", "--debug")
    assert code == 2
    assert "Traceback" in err and "error: 1 problem(s)" in err
    code, _, err = run_main(monkeypatch, "validate", "json-output", "lora.r=0")
    assert code == 2 and "Traceback" not in err


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    """An exception no user input causes is a bug: the CLI must not dress it up as a user
    error. No real input produces one (that is the point of the corpus), so one is injected."""
    from peftkit.recipes import files

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(files, "from_dict", broken)
    monkeypatch.setattr("sys.argv", ["peftkit", "validate", "json-output"])
    from peftkit.cli import main

    with pytest.raises(ZeroDivisionError):
        main()


def test_user_errors_are_value_errors_for_python_callers(tiny_model_dir, tmp_path):
    """Python callers catch what they would catch for a bad argument."""
    from train_helpers import load_recipe

    from peftkit.run.train import train

    recipe = load_recipe("json-output", [f"model.name={json.dumps(str(tiny_model_dir))}"])
    with pytest.raises(ValueError):
        train(with_data(recipe, tmp_path / "missing.jsonl"), tmp_path / "out")
    assert issubclass(RecipeError, ValueError)


def test_relative_paths_are_saved_as_absolute_ones(monkeypatch, tiny_model_dir, tmp_path):
    """A run given relative paths records absolute ones (recipe.yaml, the adapter's base), so
    that rerunning OUT/recipe.yaml or merging the adapter works from any folder, and never
    picks up another folder's file of the same name."""
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "model")
    write_data(tmp_path / "t.jsonl", prompt_completion_rows(12))
    monkeypatch.chdir(tmp_path)
    code, _, err = _train(monkeypatch, Path("model"), Path("t.jsonl"), Path("out"))
    assert code == 0, err
    saved = (tmp_path / "out" / "recipe.yaml").read_text()
    assert f"train_path: {tmp_path / 't.jsonl'}" in saved
    assert f"name: {tmp_path / 'model'}" in saved
    adapter = json.loads((tmp_path / "out" / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(tmp_path / "model")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_data(elsewhere / "t.jsonl", prompt_completion_rows(3))  # a decoy of the same name
    monkeypatch.chdir(elsewhere)
    code, _, err = run_main(
        monkeypatch, "train", str(tmp_path / "out" / "recipe.yaml"), "--output", "again"
    )
    assert code == 0, err
    metrics = json.loads((elsewhere / "again" / "metrics.json").read_text())
    assert metrics["data"]["train_rows"] + metrics["data"]["eval_rows"] == 12
