"""Cost of peftkit's callbacks, measured side by side in one run.

1. Overhead: the same training run with and without EarlyStopping + OverfitDetector +
   GradientCheck (per step, through GradientNormMixin), on SmolLM2-135M-Instruct (a real
   step) and on the tiny model (a step of milliseconds, where any per-step cost shows most);
   runs alternate, the best of each kind is compared, and the time spent inside the callbacks'
   own code is timed around every event call.
2. Keeping the best adapter, on SmolLM2: ``EarlyStopping(restore_best=True)`` (a copy in CPU
   memory, no checkpoint) against the Trainer's fairest own way, ``save_strategy="best"`` with
   ``load_best_model_at_end=True`` (a checkpoint only when the evaluation improved): wall time
   and bytes the process wrote (``wchar`` of /proc/self/io).

Writes the "callbacks" section of docs/benchmarks.md. ``--quick`` runs a few steps of each on
the tiny model only, to check the script.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from report import git_revision, machine, write_section

from peftkit.testing import build_tiny_model, peft_model, text_rows, trainer

warnings.simplefilter("ignore")


def bytes_written() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def timed_run(model_dir: Path, out: Path, callbacks: list, **args: Any) -> tuple[float, int]:
    """Seconds and bytes written by ``train()`` alone (the model is loaded before the clock)."""
    return timed_runs(model_dir, out, callbacks, **args)[::2]


def timed_runs(
    model_dir: Path, out: Path, callbacks: list, **args: Any
) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of this process (all its threads) and bytes written by
    ``train()``. CPU time does not count the time the machine's other guests take from this
    one, which makes it the steadier measure on a shared machine."""
    run = trainer(
        model_dir, out, callbacks, model=peft_model(model_dir), train_rows=text_rows(256), **args
    )
    start, cpu, written = time.perf_counter(), time.process_time(), bytes_written()
    run.train()
    return time.perf_counter() - start, time.process_time() - cpu, bytes_written() - written


def instrument(callbacks: list, spent: list[float]) -> list:
    """Time every event method of ``callbacks`` into ``spent`` (a one-element accumulator)."""
    for callback in callbacks:
        for name in dir(callback):
            if name.startswith("on_"):
                setattr(callback, name, _timed(getattr(callback, name), spent))
    return callbacks


def _timed(method, spent: list[float]):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    return wrapper


def overhead(model_dir: Path, work: Path, repeats: int, settings: dict) -> dict[str, float]:
    from transformers import Trainer

    from peftkit.callbacks import EarlyStopping, GradientCheck, GradientNormMixin, OverfitDetector

    class Checked(GradientNormMixin, Trainer):
        pass

    wall: dict[str, list[float]] = {"plain": [], "checked": []}
    cpu: dict[str, list[float]] = {"plain": [], "checked": []}
    shares = []
    for i in range(repeats):
        order = ["plain", "checked"] if i % 2 == 0 else ["checked", "plain"]  # no order bias
        for kind in order:
            if kind == "plain":
                took, used, _ = timed_runs(model_dir, work / f"plain{i}", [], **settings)
            else:
                spent = [0.0]
                callbacks = instrument(
                    [EarlyStopping(patience=100), OverfitDetector(), GradientCheck()], spent
                )
                took, used, _ = timed_runs(
                    model_dir, work / f"cb{i}", callbacks, trainer_class=Checked, **settings
                )
                shares.append(spent[0] / took)
            wall[kind].append(took)
            cpu[kind].append(used)
    return {
        "plain": statistics.median(wall["plain"]),
        "checked": statistics.median(wall["checked"]),
        **_ratios("wall", wall),
        **_ratios("cpu", cpu),
        "inside": statistics.median(shares),
    }


def _ratios(name: str, times: dict[str, list[float]]) -> dict[str, float]:
    """The median ratio of the runs paired in order, and the spread between the pairs."""
    pairs = [c / p for p, c in zip(times["plain"], times["checked"], strict=True)]
    return {name: statistics.median(pairs), f"{name}_spread": max(pairs) - min(pairs)}


def best_adapter(model_dir: Path, work: Path, repeats: int, settings: dict) -> dict[str, Any]:
    from peftkit.callbacks import EarlyStopping

    ours, theirs = [], []
    for i in range(repeats):
        ours.append(
            timed_run(model_dir, work / f"es{i}", [EarlyStopping(patience=100)], **settings)
        )
        theirs.append(
            timed_run(
                model_dir,
                work / f"lb{i}",
                [],
                load_best_model_at_end=True,
                save_strategy="best",
                metric_for_best_model="eval_loss",
                **settings,
            )
        )
    return {
        "ours": (statistics.median(t for t, _ in ours), statistics.median(b for _, b in ours)),
        "theirs": (
            statistics.median(t for t, _ in theirs),
            statistics.median(b for _, b in theirs),
        ),
    }


def _overhead_rows(name: str, cost: dict[str, float], steps: int) -> str:
    return (
        f"| {name} | {steps} | {cost['plain']:.2f} | {cost['checked']:.2f} | "
        f"**{cost['cpu']:.3f}** (spread {cost['cpu_spread']:.3f}) | "
        f"{cost['wall']:.3f} (spread {cost['wall_spread']:.3f}) | {cost['inside']:.2%} |\n"
    )


def section(
    model: str,
    repeats: int,
    real_cost: dict[str, float],
    real_steps: int,
    tiny_cost: dict[str, float],
    tiny_steps: int,
    best: dict[str, Any],
    best_steps: int,
) -> str:
    """The "callbacks" section of docs/benchmarks.md from what was measured."""
    (t_ours, b_ours), (t_theirs, b_theirs) = best["ours"], best["theirs"]
    return (
        "## Callbacks\n\n"
        f"`benchmarks/callbacks.py` at {git_revision()} on {machine()}; a LoRA r=8 adapter on "
        f"every linear layer, batch 4 x 32 tokens, one torch thread; {model} in bf16 autocast on "
        "the CPU, and the "
        f"tiny Llama (2 layers, hidden 64) in fp32. {repeats} run(s) of each kind, in "
        "alternating order.\n\n"
        "**Overhead** of EarlyStopping + OverfitDetector + GradientCheck (the norm of every "
        "step, through GradientNormMixin), evaluation every 8-20 steps:\n\n"
        "| model | steps | no callbacks, median s | three callbacks, median s | CPU-time "
        "ratio | wall-time ratio | time inside the callbacks |\n|---|---|---|---|---|---|---|\n"
        + _overhead_rows(model, real_cost, real_steps)
        + _overhead_rows("tiny Llama (ms steps)", tiny_cost, tiny_steps)
        + "\nTarget: at most 1.02. A ratio is the median over pairs of runs, one of each kind "
        "back to back (their order alternating); the spread is between the largest and the "
        "smallest pair's ratio. CPU time is this process's own (all threads); wall time also "
        "carries what the other guests of this shared 2-core machine take from it. The time "
        "inside the callbacks' own code, timed around each event call, is what they cost.\n\n"
        f"**Keeping the best adapter** ({model}, {best_steps} steps, evaluation every 4):\n\n"
        "| approach | median s | MB written |\n|---|---|---|\n"
        f"| `EarlyStopping(restore_best=True)` | {t_ours:.2f} | {b_ours / 1e6:.2f} |\n"
        f'| `save_strategy="best"` + `load_best_model_at_end=True` (a checkpoint at each '
        f"improvement) | {t_theirs:.2f} | {b_theirs / 1e6:.2f} |\n\n"
        f"EarlyStopping wrote {b_ours / 1e6:.2f} MB where the Trainer wrote "
        f"{b_theirs / 1e6:.0f} MB, in {t_ours / t_theirs:.2f}x the time: the Trainer's "
        "checkpoints hold the adapter, the optimizer state and the scheduler, written at every "
        "improved evaluation, where EarlyStopping copies the adapter to CPU memory.\n"
    )


def main(quick: bool = False) -> None:
    import torch

    # One thread: two threads spin-waiting on each other on a shared 2-core machine made the
    # CPU time of the very same run vary by up to 40%, which drowns a 1% effect.
    torch.set_num_threads(1)
    repeats = 1 if quick else 5
    tiny_steps, real_steps, best_steps = (10, 4, 4) if quick else (200, 24, 40)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tiny = build_tiny_model(work / "tiny")
        if quick:
            real = tiny
        else:
            from peftkit.demo.pretrained import smollm2

            real = smollm2("bfloat16")
        tiny_cost = overhead(
            tiny, work / "t", repeats,
            {"max_steps": tiny_steps, "eval_steps": 20, "logging_steps": 10},
        )  # fmt: skip
        real_settings = {"bf16": True, "per_device_eval_batch_size": 4}
        real_cost = overhead(
            real, work / "r", repeats,
            {"max_steps": real_steps, "eval_steps": 8, "logging_steps": 4, **real_settings},
        )  # fmt: skip
        best = best_adapter(
            real, work / "b", 1 if quick else 2,
            {"max_steps": best_steps, "eval_steps": 4, "logging_steps": 4, **real_settings},
        )  # fmt: skip
    model = "tiny Llama" if quick else "SmolLM2-135M-Instruct"
    body = section(model, repeats, real_cost, real_steps, tiny_cost, tiny_steps, best, best_steps)
    if quick:
        print(body)
        return
    write_section("callbacks", body)
    print(body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps on the tiny model")
    main(parser.parse_args().quick)
