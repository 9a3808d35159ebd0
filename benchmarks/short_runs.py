"""Short runs: what the json recipe's default epochs, warmup and early stopping give on a
small dataset, the json task of recipe_quality.py (48 records; users often start with a few
hundred).

One run of ``json-output`` exactly as the recipe builds it (3 epochs, cosine, warmup 0.03),
evaluated every 3 steps on held-out records of unseen MIME types, gives the learning curve; the
recipe's 1-epoch run of recipe_quality.py (the schedule then ends sooner) gives the model a
shorter budget produces. The sweep's best learning rate, trained the same way, says whether
its lead at one epoch holds at the recipe's three. Early stopping is read off the recipe's
curve with peftkit's own comparison (``Monitor``): when patience 3 stops with ``min_delta`` 0
and with a relative ``min_delta`` (a share of the best loss), and the best adapter such a stop
restores. Training up to the stop
is the same run with or without the callback, so the curve answers exactly; the callback's
cost is in the "callbacks" section.

recipe_quality.py writes this ``short-runs`` section of docs/benchmarks.md after its json
task; ``python short_runs.py`` measures and writes it alone.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from report import git_revision, machine, write_section
from sft_runs import RECIPE, Contender, Run, Task, common_args, dataset, load, score, tasks, train
from sft_runs import options as cli_options

from peftkit.callbacks.monitor import Monitor

PATIENCE = 3
EPOCHS = 3.0  # the json recipe's default
RELATIVE_DELTAS = (0.0, 0.005, 0.01, 0.02)


@dataclass
class Curve:
    """One run: held-out loss by optimizer step, its time and its final scores."""

    config: str
    epochs: float
    points: list[tuple[int, float]]
    seconds: float
    steps: int
    scores: dict[str, float]


def curve(task: Task, contender: Contender, model_path: Path, work: Path, eval_steps: int) -> Curve:
    """``contender`` trained for 3 epochs, evaluated every ``eval_steps``."""
    from transformers import TrainerCallback
    from trl import SFTTrainer

    model, tokenizer = load(model_path)
    common = common_args(work / f"short-{contender.name}".replace(" ", "-"), task, 42, None)
    common.update(num_train_epochs=EPOCHS, eval_strategy="steps", eval_steps=eval_steps)
    lora, args = contender.build(task, model_path, **common)
    args.per_device_eval_batch_size = 32
    points: list[tuple[int, float]] = []
    evaluating = [0.0]

    class Record(TrainerCallback):
        """The curve, and the time spent evaluating (not part of the training budget)."""

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            evaluating[0] -= time.perf_counter() if control.should_evaluate else 0.0

        def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            evaluating[0] += time.perf_counter()
            points.append((state.global_step, kwargs["metrics"]["eval_loss"]))

    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset(task.train),
        eval_dataset=dataset(task.eval),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[Record()],
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started - evaluating[0]
    scores = score(trainer.model, tokenizer, task, work)
    print(f"{contender.name}, {EPOCHS:g} epochs: {trainer.state.global_step} steps, {scores}")
    return Curve(contender.name, EPOCHS, points, seconds, trainer.state.global_step, scores)


def stop(points: list[tuple[int, float]], share: float) -> tuple[int, int, float]:
    """(step it stops at, best step, best loss) for patience 3 and ``min_delta`` = ``share`` of
    the best loss so far; a run that never stops ends at its last evaluation."""
    best_step, best, waited = 0, None, 0
    for step, loss in points:
        monitor = Monitor("min", share * best if best is not None else 0.0)
        if monitor.improved(loss, best):
            best_step, best, waited = step, loss, 0
        else:
            waited += 1
            if waited >= PATIENCE:
                return step, best_step, best
    assert best is not None
    return points[-1][0], best_step, best


def study(
    task: Task, one_epoch: list[Run], rival: Contender | None, model_path: Path, work: Path
) -> str:
    """The section: 1 epoch (the given runs of recipe_quality.py) against 3 epochs, for the
    recipe and for ``rival``, the sweep's best learning rate (does its lead at 1 epoch hold at
    the recipe's own epochs?), and early stopping read off the recipe's 3-epoch curve."""
    started = time.perf_counter()
    every = 1 if len(task.train) < 16 else 3
    contenders = [Contender(RECIPE, "recipe"), *([rival] if rival else [])]
    curves = []
    for contender in contenders:
        run = next(r for r in one_epoch if r.config == contender.name)
        curves.append(Curve(run.config, 1.0, [], run.seconds, run.steps, run.scores))
        curves.append(curve(task, contender, model_path, work, every))
    return section(curves, task, (time.perf_counter() - started) / 60)


def section(curves: list[Curve], task: Task, minutes: float) -> str:
    full = curves[1]
    lines = [
        "## Short runs: epochs, warmup and early stopping of the json recipe",
        f"`benchmarks/short_runs.py` at {git_revision()} on {machine()}; {minutes:.0f} minutes "
        "for the 3-epoch runs. `json-output` as built (cosine, warmup 0.03, batch 4 x 2, seed "
        f"42), and the sweep's best learning rate at 1 epoch, on {len(task.train)} records; "
        f"held-out loss on {len(task.eval)} records of "
        "unseen MIME types; schema-valid rate from greedy answers to the same prompts. Wall "
        "seconds are training only (evaluation time taken out).",
        "",
        "| configuration | epochs | optimizer steps | wall s | final held-out loss | "
        "schema-valid (JSON) |",
        "|---|---|---|---|---|---|",
    ]
    for c in curves:
        lines.append(
            f"| {c.config} | {c.epochs:g} | {c.steps} | {c.seconds:.0f} | "
            f"{c.scores['eval_loss']:.3f} | "
            f"{c.scores['schema_valid_rate']:.0%} ({c.scores['json_valid_rate']:.0%}) |"
        )
    lines += [
        "",
        f"Held-out loss of the recipe's {full.epochs:g}-epoch run by step: "
        + ", ".join(f"{step}: {loss:.3f}" for step, loss in full.points)
        + ".",
        "",
        f"Early stopping on that curve (patience {PATIENCE}, evaluation every "
        f"{full.points[0][0]} steps), ``min_delta`` as a share of the best loss:",
        "",
        "| min_delta | stops at step | share of the full run | best step restored | its loss |",
        "|---|---|---|---|---|",
    ]
    for share in RELATIVE_DELTAS:
        at, best_step, best = stop(full.points, share)
        lines.append(
            f"| {share:.1%} of best | {at} | {at / full.steps:.0%} | {best_step} | {best:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    options = cli_options(__doc__.splitlines()[0])
    model_path = options.model
    task = tasks(options.quick)[0]
    with tempfile.TemporaryDirectory() as work:
        one_epoch = [train(task, Contender(RECIPE, "recipe"), model_path, Path(work))]
        body = study(task, one_epoch, None, model_path, Path(work))
    write_section("short-runs", body, options.doc)
    print(body)


if __name__ == "__main__":
    main()
