"""``peftkit train`` with bad input: exit code 2, a plain "error:" message that says what is
wrong and what was found, no traceback, and nothing trained.

Most cases run the console-script entry point in this process (an exception escaping it is what
a user sees as a traceback, and fails the test); two run as real subprocesses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import (
    assert_user_error,
    peftkit_cli,
    run_main,
    short,
    without_chat_template,
)

from peftkit.testing import messages_rows, prompt_completion_rows, write_data


@pytest.fixture(scope="module")
def no_chat_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its tokenizer's chat template removed."""
    return without_chat_template(tiny_model_dir, tmp_path_factory.mktemp("no-chat") / "model")


def _train(monkeypatch, model: Path, data: Path | None, out: Path, *extra: str):
    args = ["train", "json-output", *short(model, *extra), "--output", str(out)]
    args += ["--data", str(data)] if data is not None else []
    return run_main(monkeypatch, *args)


def _nothing_trained(out: Path) -> None:
    for name in ("checkpoints", "best-adapter", "adapter", "metrics.json"):
        assert not (out / name).exists(), name


def _good(tmp_path: Path) -> Path:
    return write_data(tmp_path / "good.jsonl", prompt_completion_rows(12))


# Bad data files (missing, empty, malformed, bad rows, the wrong format) are the corpus in
# tests/edge_cases/test_data_cases.py.


def test_a_model_path_that_does_not_exist(monkeypatch, tmp_path):
    out = tmp_path / "out"
    missing = tmp_path / "no-such-model"
    code, _, err = _train(monkeypatch, missing, _good(tmp_path), out)
    assert_user_error(code, err, str(missing), "model.name")
    _nothing_trained(out)


def test_chat_data_needs_a_chat_template(monkeypatch, no_chat_model_dir, tmp_path):
    data = write_data(tmp_path / "chat.jsonl", messages_rows(8))
    out = tmp_path / "out"
    code, _, err = _train(monkeypatch, no_chat_model_dir, data, out, "data.format=messages")
    assert_user_error(code, err, "chat template", "messages")
    _nothing_trained(out)


def test_max_length_beyond_the_models_context(monkeypatch, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    code, _, err = _train(
        monkeypatch, tiny_model_dir, _good(tmp_path), out, "training.max_length=1024"
    )
    assert_user_error(code, err, "training.max_length", "1024", "512")
    _nothing_trained(out)


def test_a_recipe_that_does_not_validate(monkeypatch, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    code, _, err = _train(
        monkeypatch, tiny_model_dir, _good(tmp_path), out,
        "lora.r=0", "training.learning_rate=5",
    )  # fmt: skip
    assert_user_error(code, err, "2 problem(s)", "lora.r", "training.learning_rate")
    _nothing_trained(out)


def test_a_recipe_file_that_does_not_validate(monkeypatch, tiny_model_dir, tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("recipe: json-output\ntrainig:\n  learning_rate: 1e-4\n")
    args = ["train", str(recipe), "--model", str(tiny_model_dir), "--data", str(_good(tmp_path))]
    code, _, err = run_main(monkeypatch, *args, "--output", str(tmp_path / "out"))
    assert_user_error(code, err, "trainig", "training")
    _nothing_trained(tmp_path / "out")


def test_no_data_at_all(monkeypatch, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    code, _, err = _train(monkeypatch, tiny_model_dir, None, out)
    assert_user_error(code, err, "--data")
    _nothing_trained(out)


def test_completions_cut_off_by_max_length(monkeypatch, tiny_model_dir, tmp_path):
    """Every prompt is longer than training.max_length: truncation leaves no completion token
    to learn from or to evaluate, so there is nothing to train on."""
    rows = [{**row, "prompt": "word " * 200} for row in prompt_completion_rows(12)]
    data = write_data(tmp_path / "long.jsonl", rows)
    out = tmp_path / "out"
    code, _, err = _train(monkeypatch, tiny_model_dir, data, out, "training.max_length=16")
    assert_user_error(code, err, "max_length")


# --- as real processes ---------------------------------------------------------------------------


def test_missing_data_file_in_a_real_process(tiny_model_dir: Path, tmp_path: Path):
    result = peftkit_cli(
        "train", "json-output", *short(tiny_model_dir), "--data", "nope.jsonl",
        "--output", str(tmp_path / "out"), cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert_user_error(result.returncode, result.stderr, "nope.jsonl", "no such file")
    _nothing_trained(tmp_path / "out")


def test_no_data_in_a_real_process(tiny_model_dir: Path, tmp_path: Path):
    result = peftkit_cli(
        "train", "json-output", "--model", str(tiny_model_dir), "--output", str(tmp_path / "o"),
        cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert_user_error(result.returncode, result.stderr, "no training data", "--data")
    assert not (tmp_path / "o").exists()
