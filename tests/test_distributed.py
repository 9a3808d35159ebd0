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
        ".peftkit-output.json",  # the inventory every folder peftkit writes carries
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "peftkit_best.json",
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _vote(rank: int, store: str, flags: tuple[bool, bool], results: object) -> None:
    """One of two processes: join the group, share this rank's flag, report what it got. torch's
    default device is set to "meta" (where nothing can be reduced), as a user's
    ``torch.set_default_device`` may be: the vote names its device itself."""
    import torch
    import torch.distributed as dist

    from peftkit.callbacks.distributed import any_rank

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.set_default_device("meta")
    try:
        results.put((rank, any_rank(flags[rank])))  # type: ignore[attr-defined]
    except Exception as error:  # reported, so that the test fails at once rather than waiting
        results.put((rank, repr(error)))  # type: ignore[attr-defined]
    finally:
        torch.set_default_device(None)
        dist.destroy_process_group()


def test_a_flag_on_any_rank_is_true_on_every_rank(tmp_path: Path):
    """The shared stop itself, between two real processes (forked from this one, so that they
    run the code this process imported): true on both ranks when either rank says so."""
    import multiprocessing

    from peftkit.callbacks.distributed import any_rank

    assert any_rank(True) is True and any_rank(False) is False  # one process: its own flag
    context = multiprocessing.get_context("fork")
    for number, flags in enumerate([(False, True), (True, False), (False, False), (True, True)]):
        results = context.Queue()
        store = tmp_path / f"store-{number}"
        workers = [
            context.Process(target=_vote, args=(rank, str(store), flags, results))
            for rank in (0, 1)
        ]
        for worker in workers:
            worker.start()
        got = dict(results.get(timeout=60) for _ in workers)
        for worker in workers:
            worker.join(timeout=60)
            assert worker.exitcode == 0
        assert got == {0: any(flags), 1: any(flags)}, flags


def test_the_device_of_a_collective_follows_the_backend():
    """NCCL reduces CUDA tensors (on the current device), gloo and the others CPU tensors. (An
    NCCL run needs two GPUs; the choice itself is checked here.)"""
    from peftkit.callbacks.distributed import reduce_device

    assert [reduce_device(b) for b in ("nccl", "gloo", "mpi")] == ["cuda", "cpu", "cpu"]
