"""Longer runs: what the recipes' default epochs, learning rate and early stopping give past
the few optimizer steps of recipe_quality.py, whose equal budget is small enough to train ~45
configurations (and so favours high learning rates).

- json: ``json-output`` exactly as the recipe builds it on all 85 training records of the demo's
  task (the standard library's MIME table holds no more), for its default epochs, evaluated
  every 3 steps on held-out records of unseen MIME types, and for one epoch more; with warmup
  0.1 instead of 0.03; the sweep's best learning rate for the default epochs.
- docs: ``domain-adaptation`` for its default one epoch on 48 chunks (3x recipe_quality.py's),
  against the sweep's best learning rate, both evaluated every 3 steps: does a lead at 4
  optimizer steps hold at 12?

Early stopping is read off the recipe's json curve with peftkit's own comparison (``Monitor``):
when patience 3 stops with ``min_delta`` 0 and with a relative ``min_delta`` (a share of the
best loss), and the best adapter such a stop restores. Training up to the stop is the same run
with or without the callback, so the curve answers exactly; the callback's cost is in the
"callbacks" section.

recipe_quality.py writes this ``short-runs`` section of docs/benchmarks.md after its tasks,
with their best learning rates; ``python short_runs.py`` measures it alone, with the learning
rate twice the recipe's as the rival.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from competitors import Point, sweep
from report import git_revision, machine, write_section
from sft_runs import (
    DOCS_CHUNK_CHARS,
    RECIPE,
    Contender,
    Task,
    common_args,
    dataset,
    load,
    score,
    tasks,
    train,
)
from sft_runs import options as cli_options

from peftkit import recipes
from peftkit.callbacks.monitor import Monitor
from peftkit.demo.tasks import docs_task, json_task

PATIENCE = 3
RELATIVE_DELTAS = (0.0, 0.005, 0.01, 0.02)
DOCS_CHUNKS = 48
WARMUP = Point("warmup", "warmup 0.1", ("training.warmup_steps=0.1",))  # axolotl's; 0.03 built


@dataclass
class Curve:
    """One run: held-out loss by optimizer step (empty: scored at the end only), its training
    time and its final scores."""

    config: str
    epochs: float
    points: list[tuple[int, float]]
    seconds: float
    steps: int
    scores: dict[str, float]

    @property
    def best(self) -> str:
        """The curve's lowest held-out loss as "step: loss", or "-" for a run scored once."""
        if not self.points:
            return "-"
        step, loss = min(self.points, key=lambda p: p[1])
        return f"{step}: {loss:.3f}"


def longer_tasks(quick: bool) -> tuple[Task, Task]:
    """The json task on every training record for the recipe's default epochs, and 48 docs
    chunks for the recipe's one epoch; the held-out sets are recipe_quality.py's."""
    json_, docs = tasks(quick)
    json_train, _, _ = json_task()
    docs_train, _ = docs_task(chunk_chars=DOCS_CHUNK_CHARS)
    json_epochs = recipes.load(json_.recipe).training.epochs
    docs_epochs = recipes.load(docs.recipe).training.epochs
    if quick:
        return dataclasses.replace(json_, epochs=json_epochs), docs
    return (
        dataclasses.replace(json_, train=json_train, epochs=json_epochs),
        dataclasses.replace(docs, train=docs_train[:DOCS_CHUNKS], epochs=docs_epochs),
    )


def curve(task: Task, contender: Contender, model_path: Path, work: Path, eval_steps: int) -> Curve:
    """``contender`` trained for the task's epochs, evaluated every ``eval_steps``."""
    from transformers import TrainerCallback
    from trl import SFTTrainer

    model, tokenizer = load(model_path)
    name = f"longer-{task.name}-{contender.name}".replace(" ", "-")
    common = common_args(work / name, task, 42, None)
    common.update(eval_strategy="steps", eval_steps=eval_steps)
    lora, args = contender.build(task, model_path, **common)
    args.per_device_eval_batch_size = 16
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
    print(f"{name}, {task.epochs:g} epochs: {trainer.state.global_step} steps, {scores}")
    return Curve(contender.name, task.epochs, points, seconds, trainer.state.global_step, scores)


def at_end(task: Task, contender: Contender, model_path: Path, work: Path) -> Curve:
    """``contender`` trained for the task's epochs (its own schedule), scored at the end."""
    run = train(task, contender, model_path, work)
    return Curve(contender.name, task.epochs, [], run.seconds, run.steps, run.scores)


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


def study(rivals: dict[str, Contender], model_path: Path, work: Path, quick: bool) -> str:
    """The section; ``rivals``: the sweep's best learning rate of each task by name."""
    started = time.perf_counter()
    json_, docs = longer_tasks(quick)
    recipe = Contender(RECIPE, "recipe")
    json_runs = [
        curve(json_, recipe, model_path, work, 3),
        at_end(dataclasses.replace(json_, epochs=json_.epochs + 1), recipe, model_path, work),
        at_end(json_, Contender(WARMUP.label, "sweep", point=WARMUP), model_path, work),
        at_end(json_, rivals["json"], model_path, work),
    ]
    docs_runs = [curve(docs, c, model_path, work, 3) for c in (recipe, rivals["docs"])]
    minutes = (time.perf_counter() - started) / 60
    return section(json_, json_runs, docs, docs_runs, minutes)


def section(
    json_: Task, json_runs: list[Curve], docs: Task, docs_runs: list[Curve], minutes: float
) -> str:
    full = next(c for c in json_runs if c.config == RECIPE and c.points)
    per_epoch = full.steps / full.epochs
    lines = [
        "## Longer runs: epochs, warmup, learning rate and early stopping",
        f"`benchmarks/short_runs.py` at {git_revision()} on {machine()}; {minutes:.0f} minutes. "
        "Each recipe as built (seed 42) unless the row says otherwise; the rival is the "
        "learning rate that ranked best in the sweep above. Wall seconds are training only "
        "(evaluation time taken out); the best step is the curve's lowest held-out loss.",
        "",
        f"**json** (`json-output`): {len(json_.train)} training records (the whole demo task), "
        f"{per_epoch:g} optimizer steps per epoch; held-out loss on {len(json_.eval)} records "
        "of unseen MIME types, schema-valid rate from greedy answers to the same prompts.",
        "",
        "| configuration | epochs | optimizer steps | wall s | final held-out loss | "
        "schema-valid (JSON) | best step: held-out loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in json_runs:
        lines.append(
            f"| {c.config} | {c.epochs:g} | {c.steps} | {c.seconds:.0f} | "
            f"{c.scores['eval_loss']:.3f} | "
            f"{c.scores['schema_valid_rate']:.0%} ({c.scores['json_valid_rate']:.0%}) | {c.best} |"
        )
    lines += [
        "",
        *(
            f"Held-out loss of the {c.config}'s {c.epochs:g}-epoch run by step: "
            + ", ".join(f"{step}: {loss:.3f}" for step, loss in c.points)
            + "."
            for c in json_runs
            if c.points
        ),
        "",
        f"Early stopping on the recipe's curve (patience {PATIENCE}, evaluation every "
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
    lines += [
        "",
        f"**docs** (`domain-adaptation`): {len(docs.train)} chunks for {docs.epochs:g} epoch; "
        f"perplexity on {len(docs.eval)} chunks of unseen topics.",
        "",
        "| configuration | optimizer steps | wall s | final perplexity | held-out loss by step |",
        "|---|---|---|---|---|",
    ]
    for c in docs_runs:
        by_step = ", ".join(f"{step}: {loss:.3f}" for step, loss in c.points)
        lines.append(
            f"| {c.config} | {c.steps} | {c.seconds:.0f} | {c.scores['perplexity']:.2f} | "
            f"{by_step} |"
        )
    return "\n".join(lines)


def twice_the_rate(task: Task, model_path: Path) -> Contender:
    recipe = recipes.load(task.recipe, [f"model.name={model_path}"])
    rate = float(recipe.resolve(model_path).learning_rate.value)  # auto, for this model
    label = f"lr {rate * 2:g}"
    point = next(p for p in sweep(rate, recipe.lora.r, recipe.lora.alpha) if p.label == label)
    return Contender(point.label, "sweep", point=point)


def main() -> None:
    options = cli_options(__doc__.splitlines()[0])
    rivals = {task.name: twice_the_rate(task, options.model) for task in tasks(options.quick)}
    with tempfile.TemporaryDirectory() as work:
        body = study(rivals, options.model, Path(work), options.quick)
    write_section("short-runs", body, options.doc)
    print(body)


if __name__ == "__main__":
    main()
