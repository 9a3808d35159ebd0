"""Two processes with torchrun on CPU (gloo): a stop decided on one rank only (rank 1 runs out
of patience, rank 0 keeps improving) stops every rank at the same step, none hangs, and only the
main process writes the best adapter."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_two_ranks_stop_together_and_write_once(tiny_model_dir: Path, tmp_path: Path):
    """Without the shared stop, rank 0 would train on alone and wait for rank 1 forever (or
    crash with "Connection closed by peer"): the run would fail or time out."""
    # CPU and gloo even where a GPU is: the test is about the processes, not the device.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    env["CUDA_VISIBLE_DEVICES"] = ""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--master_port", str(_free_port())]
    command += [str(HERE / "ddp_run.py"), str(tiny_model_dir), str(tmp_path)]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert {r["world_size"] for r in reports} == {2}
    assert [r["global_step"] for r in reports] == [5, 5]
    assert [r["reason"] for r in reports] == ["patience", "patience"]
    rank0, rank1 = reports
    assert rank1["message"].startswith("eval_loss did not improve"), rank1["message"]
    assert rank0["message"] == "another process decided to stop", rank0["message"]
    assert (rank0["best_step"], rank1["best_step"]) == (5, 2)  # each rank's own metrics
    assert all(r["restored"] for r in reports)
    marker = json.loads((tmp_path / "best" / "peftkit_best.json").read_text())
    assert marker["step"] == 5  # written by rank 0 (the main process), at its best
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["best", "rank0.json", "rank1.json", "run"]  # no staging or stale copies
    assert sorted(p.name for p in (tmp_path / "best").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "peftkit_best.json",
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
