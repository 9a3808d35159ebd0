"""Seconds per training step with ``model.dtype: auto`` against ``model.dtype: float32``, on the
machine at hand: `peftkit train` of ``json-output`` on SmolLM2-135M-Instruct (the bf16 folder
``peftkit demo`` converts), a few optimizer steps each, the two interleaved.

``auto`` and ``training.precision: auto`` are one decision (peftkit.core.hardware): on a CPU without
native bf16 both resolve to fp32, where the checkpoint's bf16 weights would run emulated (161.8
against 15.8 s/step on an AMD EPYC, issue 21); on a CPU with native bf16 the weights stay bf16
and autocast computes in bf16. The last two rows resolve both settings as a CPU without native
bf16 would (its facts injected): there ``auto`` becomes exactly what ``float32`` does, so the two
run alike (here, at fp32 speed).

    python weights_dtype.py [--quick]       # a few minutes
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from report import git_revision, machine, write_section
from sft_runs import options as cli_options

from peftkit.core import hardware
from peftkit.core.hardware import Machine
from peftkit.demo.tasks import json_task
from peftkit.run.train import train
from peftkit.testing import write_data

STEPS = 4
REPEATS = 3
CONFIGS = {
    "auto (the default)": ([], None),
    "float32": (["model.dtype=float32"], None),
    "auto, resolved as on a CPU without native bf16": ([], Machine()),
    "float32, resolved as on a CPU without native bf16": (["model.dtype=float32"], Machine()),
}


def run(model: Path, data: Path, work: Path, overrides: list[str], facts: Machine | None) -> dict:
    from peftkit import recipes

    recipe = recipes.load(
        "json-output",
        [
            f"model.name={model}",
            f"data.train_path={data}",
            f"training.max_steps={STEPS}",
            "training.eval_strategy=no",
            "training.eval_fraction=0",
            "training.logging_steps=1",
            "callbacks.early_stopping.enabled=false",
            "callbacks.overfit.enabled=false",
            *overrides,
        ],
    )
    real = hardware.this_machine
    if facts is not None:
        hardware.this_machine = lambda: facts  # type: ignore[assignment]
    try:
        metrics = train(recipe, work / f"run-{time.monotonic_ns()}", check=False)
    finally:
        hardware.this_machine = real  # type: ignore[assignment]
    return metrics


def section(results: dict[str, list[dict]], minutes: float) -> str:
    native = "with" if hardware.this_machine().cpu_bf16 else "without"
    per_step = {
        name: statistics.median(m["train_time_s"] / m["global_step"] for m in runs)
        for name, runs in results.items()
    }
    lines = [
        "## Weights' dtype: `model.dtype` auto against float32",
        f"`benchmarks/weights_dtype.py` at {git_revision()} on {machine()} (a CPU {native} "
        f"native bf16); {minutes:.0f} minutes. `peftkit train json-output` on "
        f"SmolLM2-135M-Instruct (bf16 checkpoint), {STEPS} optimizer steps of 4 x 2 rows, "
        f"median of {REPEATS} interleaved runs.",
        "",
        "| model.dtype | resolved: weights, precision | seconds per step | against float32 "
        "resolved alike |",
        "|---|---|---|---|",
    ]
    for name, runs in results.items():
        base = per_step[name.replace("auto", "float32", 1).replace(" (the default)", "")]
        resolved = runs[0]["resolved"]
        chosen = f"{resolved['model.dtype']['value']}, {resolved['training.precision']['value']}"
        lines.append(f"| {name} | {chosen} | {per_step[name]:.2f} | {per_step[name] / base:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    options = cli_options(__doc__ or "")
    started = time.perf_counter()
    rows, _, _ = json_task()
    results: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        data = write_data(work / "train.jsonl", rows[:16] if options.quick else rows)
        for _ in range(1 if options.quick else REPEATS):
            for name, (overrides, facts) in CONFIGS.items():
                results[name].append(run(options.model, data, work, overrides, facts))
    minutes = (time.perf_counter() - started) / 60
    write_section("weights-dtype", section(results, minutes), options.doc)


if __name__ == "__main__":
    main()
