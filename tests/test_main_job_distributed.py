"""``torchrun --nproc_per_node 2 -m peftkit train`` on CPU (gloo): both ranks train and
evaluate, only the main process writes the outputs, and nothing hangs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import cli_env, logits, short, with_adapter

from peftkit.core.folders import MARKER
from peftkit.testing import prompt_completion_rows, write_data

EXPECTED = {
    "adapter",
    "metrics.json",
    "recipe.yaml",
    "training.png",
    MARKER,
}


def test_two_processes_train_and_write_the_outputs_once(tiny_model_dir: Path, tmp_path: Path):
    data = write_data(tmp_path / "train.jsonl", prompt_completion_rows(40))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--master_port", str(_free_port()), "-m", "peftkit", "train", "json-output"]
    command += [*short(tiny_model_dir), "--data", str(data), "--output", str(out)]
    # CPU and gloo even where a GPU is (one GPU cannot host two ranks): the test is about the
    # processes, not the device.
    env = {**cli_env(), "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert {p.name for p in out.iterdir()} == EXPECTED  # no second copy, no staging folders
    assert len(list(out.rglob("metrics.json"))) == 1
    assert len(list(out.rglob("training.png"))) == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 4
    assert metrics["data"]["format"] == "prompt-completion"
    assert metrics["data"]["eval_rows"] == 4
    # The adapter written once is the best evaluation's, as in a one-process run: both ranks
    # restored it, and evaluated after training it gives the best evaluation's loss again.
    assert metrics["restored_best"] is True and metrics["best_step"] in (0, 2, 4)
    assert metrics["after"]["eval_loss"] == pytest.approx(metrics["best_metric"])
    assert metrics["stop_reason"] is None  # ran the planned steps on both ranks
    loaded = with_adapter(tiny_model_dir, out / "adapter")
    assert logits(loaded).isfinite().all()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
