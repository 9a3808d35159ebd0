"""Shared by the end-to-end tests of ``peftkit train`` and ``peftkit merge``: short-run
overrides, recipes with their data, earlier outputs, the CLI in a subprocess or in-process, and
logits to compare models by. (The tiny model and data builders are in :mod:`peftkit.testing`;
subprocesses get one torch thread through ``cli_env``, see tests/conftest.py.)
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from peftkit import recipes
from peftkit.core.errors import PeftkitWarning

EXIT_USER_ERROR = 2

SHORT_RUN = [
    "training.max_steps=4",
    "training.eval_steps=2",
    "training.logging_steps=1",
    "training.batch_size=4",
    "training.max_length=64",
]
"""A few steps of training with two evaluations: seconds on the tiny model."""

SHORT_GENERATION = ["generation.samples=4", "generation.max_new_tokens=8"]
"""For json-output: answer 4 held-out prompts with at most 8 tokens, before and after."""


def merged(*args: str) -> list[str]:
    """``args`` with each dotted override kept once, at its first place with its last value:
    what a user who changes a setting writes (peftkit refuses a field given twice)."""
    last = {arg.partition("=")[0]: arg for arg in args if _is_override(arg)}
    found, seen = [], set()
    for arg in args:
        key = arg.partition("=")[0]
        if _is_override(arg):
            if key in seen:
                continue
            seen.add(key)
            arg = last[key]
        found.append(arg)
    return found


def _is_override(arg: str) -> bool:
    return "=" in arg and not arg.startswith("-")


def short(model_dir: Path, *extra: str, json_output: bool = True) -> list[str]:
    """Overrides for a short run of the tiny model, then ``extra`` (which replace those of the
    same field)."""
    generation = SHORT_GENERATION if json_output else []
    return merged(f"model.name={json.dumps(str(model_dir))}", *SHORT_RUN, *generation, *extra)


def load_recipe(name: str | Path, overrides: list[str]) -> recipes.Recipe:
    """``recipes.load`` without the doubts (an unusual learning rate) that tests ask for."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PeftkitWarning)
        return recipes.load(name, overrides)


def with_data(
    recipe: recipes.Recipe, data: Path | str, eval_data: Path | str | None = None
) -> recipes.Recipe:
    """``recipe`` with its data paths set (what ``--data``/``--eval-data`` do), validated."""
    dumped = recipe.model_dump(mode="json")
    dumped["data"] |= {
        "train_path": str(data),
        "eval_path": None if eval_data is None else str(eval_data),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PeftkitWarning)
        return recipes.from_dict(dumped)


# --- output folders ------------------------------------------------------------------------------


def earlier_output(folder: Path, files: dict[str, str], command: str = "train") -> Path:
    """``folder`` as an earlier peftkit command left it: ``files`` (relative path -> text) and
    the marker that lists them, so that --overwrite may replace it."""
    from peftkit.core.folders import MARKER, inventory

    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    marker = {"command": command, "files": inventory(folder)}
    (folder / MARKER).write_text(json.dumps(marker))
    return folder


# --- the command line ---------------------------------------------------------------------------


def cli_env() -> dict[str, str]:
    """One torch thread; no progress bars, so that stderr holds what a test needs to show."""
    quiet = {"TQDM_DISABLE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **quiet}


def peftkit_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m peftkit ARGS`` in a subprocess, the way a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "peftkit", *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """``peftkit ARGS`` through the console-script entry point, in this process.

    Returns the exit code, stdout and stderr. An exception that escapes ``main`` is what a user
    would see as a traceback, so it fails the test.
    """
    from peftkit import cli

    monkeypatch.setattr(sys, "argv", ["peftkit", *args])
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # main() replaces it
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        _reopen_log_streams()
        try:
            cli.main()
        except SystemExit as exited:
            code = exited.code
        except Exception as error:  # a user would see a traceback
            pytest.fail(f"peftkit {' '.join(args)} raised {error!r} instead of exiting")
        else:
            code = 0
    return (code if isinstance(code, int) else 1), out.getvalue(), err.getvalue()


def _reopen_log_streams() -> None:
    """Point library log handlers left writing to an earlier test's closed capture stream at
    the current stderr (else logging prints '--- Logging error ---' with a traceback)."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.StreamHandler) and getattr(stream, "closed", False):
                handler.stream = sys.stderr


def assert_user_error(code: int, stderr: str, *mentions: str) -> None:
    """Exit code 2 and a plain "error:" message that names ``mentions``; no traceback."""
    assert code == EXIT_USER_ERROR, stderr
    assert "error:" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    for text in mentions:
        assert text in stderr, f"{text!r} not in: {stderr}"


# --- models -------------------------------------------------------------------------------------


def without_chat_template(model_dir: Path, folder: Path) -> Path:
    """A copy of the model in ``folder`` whose tokenizer has no chat template, as a base model
    ships."""
    import shutil

    shutil.copytree(model_dir, folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config.pop("chat_template", None)
    config_file.write_text(json.dumps(config))
    return folder


FIXED_IDS = [[5, 17, 42, 99, 200, 311, 7, 64, 128, 3], [450, 12, 9, 300, 77, 1, 260, 33, 81, 500]]
"""A fixed input (two sequences of ten token ids) to compare models on."""


def logits(model: Any) -> Any:
    """The model's float32 logits on ``FIXED_IDS``, in eval mode (no dropout)."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ids = torch.tensor(FIXED_IDS, device=model.device)
            return model(input_ids=ids).logits.float().cpu()
    finally:
        model.train(was_training)


def base_model(model_dir: Path, **kwargs: Any) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)


def with_adapter(model_dir: Path, adapter: Path, **kwargs: Any) -> Any:
    """The base model with the adapter in ``adapter`` on top (not merged)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model(model_dir, **kwargs), adapter)


def adapter_weights(adapter: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(adapter / "adapter_model.safetensors")
