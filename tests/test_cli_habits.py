"""What a user of the HF stack expects of a CLI: --version, `env` for bug reports, --json on the
commands that report, and quiet runs (with --verbose for everything)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import peftkit_cli, short

from peftkit import __version__, recipes
from peftkit.testing import prompt_completion_rows, write_data

NOISE = (
    "kernels",  # bitsandbytes' optional CPU kernels
    "FutureWarning",
    "is_gradient_checkpointing",
    "Tokenizing train dataset",  # datasets' progress bars in TRL's preparation
    "Loading weights",
)


def test_version(tmp_path: Path):
    result = peftkit_cli("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"peftkit {__version__}"


def test_env_names_the_versions_a_bug_report_needs(tmp_path: Path):
    import torch
    import transformers

    text = peftkit_cli("env", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert f"torch: {torch.__version__}" in text.stdout
    assert f"transformers: {transformers.__version__}" in text.stdout
    found = json.loads(peftkit_cli("env", "--json", cwd=tmp_path).stdout)
    assert found["versions"]["peftkit"] == __version__
    assert found["gpus"] == [] if not torch.cuda.is_available() else found["gpus"]
    assert isinstance(found["bf16"], bool)


def test_validate_json_lists_the_warnings_and_the_problems(tmp_path: Path):
    ok = peftkit_cli("validate", "json-output", "lora.r=300", "--json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    found = json.loads(ok.stdout)
    assert found["valid"] and found["recipe"] == "json-output"
    assert any("lora.r=300" in warning for warning in found["warnings"])
    bad = peftkit_cli("validate", "json-output", "lora.r=abc", "lora.dropout=2", "--json",
                      cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 2
    errors = json.loads(bad.stdout)["errors"]
    assert {e["field"] for e in errors} == {"lora.r", "lora.dropout"}
    assert all(e["rule"] and e["fix"] for e in errors)


def test_show_json_is_the_recipe(tmp_path: Path):
    result = peftkit_cli("show", "qlora-budget", "lora.r=8", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert recipes.from_dict(shown) == recipes.load("qlora-budget", ["lora.r=8"])


@pytest.fixture(scope="module")
def cli_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """`peftkit train --json` as a user runs it: progress bars and warnings left on."""
    folder = tmp_path_factory.mktemp("cli-run")
    data = write_data(folder / "d.jsonl", prompt_completion_rows(40))
    args = ["train", "json-output", *short(tiny_model_dir), "--data", str(data)]

    def run(*extra: str, out: str) -> subprocess.CompletedProcess[str]:
        bars_on = {k: v for k, v in os.environ.items() if "PROGRESS" not in k and "TQDM" not in k}
        return subprocess.run(
            [sys.executable, "-m", "peftkit", *args, "--output", str(folder / out), *extra],
            cwd=folder, env={**bars_on, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip

    return run


def test_train_json_prints_only_the_metrics_on_stdout(cli_run):
    result = cli_run("--json", out="quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout)
    assert metrics["global_step"] == 4 and metrics["output"].endswith("quiet")


def test_a_run_is_quiet_by_default_and_verbose_on_request(cli_run):
    """No line a user cannot act on, and one progress bar: the training one."""
    quiet = cli_run(out="quiet-run")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    for noise in NOISE:
        assert noise not in quiet.stderr, f"{noise!r} in a default run:\n{quiet.stderr[-3000:]}"
    bars = {line.split("|")[0].strip() for line in quiet.stderr.replace("\r", "\n").splitlines()
            if "it/s]" in line or "s/it]" in line}  # fmt: skip
    assert all(bar.endswith("%") for bar in bars), bars  # no named bars (datasets, weights)
    assert "eval_loss" in quiet.stderr  # the Trainer's log lines stay
    verbose = cli_run("--verbose", out="verbose-run")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "Tokenizing train dataset" in verbose.stderr
