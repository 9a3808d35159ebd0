"""Learning rate from the model's size, checked where it can be run: on SmolLM2-135M-Instruct,
does ``learning_rate: auto`` (the size law anchored at peftkit's measurement, 8e-4 there) do at
least as well as Tinker's law as published (its constant 5e-4 at hidden size 2000: 1.3e-3
there)? If the published law won by more than the seeds' spread, the anchor would be wrong.

Both demo tasks, each recipe as built for its own epochs (``short_runs.longer_tasks``: all 85
json records for 2 epochs, 48 documentation chunks for 1), three seeds each, scored by the common
evaluation of ``sft_runs`` (held-out loss; schema-valid rate for json, perplexity for docs).

    python learning_rate_check.py [--quick]     # ~15 minutes on 2 idle cores
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from competitors import Point
from report import git_revision, machine, write_section
from sft_runs import RECIPE, SEEDS, Contender, Run, Task, train
from sft_runs import options as cli_options
from short_runs import longer_tasks

from peftkit import recipes
from peftkit.memory import load_shape
from peftkit.recipes.learning_rate import PUBLISHED_CONSTANT, law

SECTION = "learning-rate-law"


def rivals(model_path: Path) -> tuple[float, Contender]:
    """The rate auto gives the model, and Tinker's law as published as a contender."""
    shape = load_shape(model_path)
    published = float(f"{law(shape.hidden, shape.family, PUBLISHED_CONSTANT):.2g}")
    label = f"Tinker's law as published (lr {published:g})"
    point = Point("learning rate", label, (f"training.learning_rate={published:g}",))
    auto = recipes.load("json-output", [f"model.name={model_path}"]).resolve(model_path)
    return float(auto.learning_rate.value), Contender(label, "sweep", point=point)


def measure(task: Task, model_path: Path, work: Path, seeds: tuple[int, ...]) -> list[Run]:
    _, published = rivals(model_path)
    runs = []
    for seed in seeds:  # interleaved, so that a slow spell of the machine hits both
        for contender in (Contender(RECIPE, "recipe"), published):
            runs.append(train(task, contender, model_path, work, seed))
    return runs


def _summary(runs: list[Run], key: str) -> tuple[float, float]:
    values = [r.scores[key] for r in runs]
    return statistics.mean(values), max(values) - min(values)


def table(task: Task, runs: list[Run], auto_rate: float) -> list[str]:
    metric = "schema_valid_rate" if task.schema is not None else "perplexity"
    heading = "schema-valid" if task.schema is not None else "perplexity"
    lines = [
        f"| configuration | seeds | held-out loss (mean ± spread) | {heading} (mean ± spread) |",
        "|---|---|---|---|",
    ]
    for name in dict.fromkeys(r.config for r in runs):
        mine = [r for r in runs if r.config == name]
        loss, loss_spread = _summary(mine, "eval_loss")
        value, spread = _summary(mine, metric)
        shown = (
            f"{value:.0%} ± {spread * 100:.0f}"
            if metric.endswith("rate")
            else f"{value:.2f} ± {spread:.2f}"
        )
        label = f"**auto** (lr {auto_rate:g})" if name == RECIPE else name
        lines.append(f"| {label} | {len(mine)} | {loss:.3f} ± {loss_spread:.3f} | {shown} |")
    return lines


def verdict(runs: list[Run]) -> str:
    """Whether auto loses to the published law by more than the seeds' spread."""
    auto = [r for r in runs if r.config == RECIPE]
    other = [r for r in runs if r.config != RECIPE]
    mean_auto, spread_auto = _summary(auto, "eval_loss")
    mean_other, spread_other = _summary(other, "eval_loss")
    gap = mean_auto - mean_other
    if gap > max(spread_auto, spread_other):
        return f"auto loses by {gap:.3f}, more than the seeds' spread: the anchor is wrong"
    if -gap > max(spread_auto, spread_other):
        return f"auto wins by {-gap:.3f} in held-out loss, more than the seeds' spread"
    return f"a tie within the seeds' spread (difference {abs(gap):.3f})"


def section(results: list[tuple[Task, list[Run]]], auto_rate: float, minutes: float) -> str:
    lines = [
        "## Learning rate from the model's size",
        f"`benchmarks/learning_rate_check.py` at {git_revision()} on {machine()}; "
        f"{minutes:.0f} minutes. SmolLM2-135M-Instruct (hidden size 576): `learning_rate: auto` "
        "(the size law anchored at peftkit's measurement) against Tinker's law as published "
        "(constant 5e-4 at hidden size 2000), each recipe as built for its own epochs, seeds "
        f"{', '.join(str(s) for s in SEEDS[: len(results[0][1]) // 2])}. The table of rates for "
        "other models is in docs/learning-rates.md.",
    ]
    for task, runs in results:
        steps = runs[0].steps
        lines += [
            "",
            f"**{task.name}** (`{task.recipe}`): {len(task.train)} training rows, "
            f"{task.epochs:g} epoch(s), {steps} optimizer steps; {len(task.eval)} held-out rows. "
            f"Verdict: {verdict(runs)}.",
            "",
            *table(task, runs, auto_rate),
        ]
    return "\n".join(lines)


def main() -> None:
    options = cli_options(__doc__ or "")
    started = time.perf_counter()
    seeds = SEEDS[:1] if options.quick else SEEDS
    auto_rate, _ = rivals(options.model)
    results = []
    with tempfile.TemporaryDirectory() as work:
        for task in longer_tasks(options.quick):
            results.append((task, measure(task, options.model, Path(work), seeds)))
    minutes = (time.perf_counter() - started) / 60
    write_section(SECTION, section(results, auto_rate, minutes), options.doc)


if __name__ == "__main__":
    main()
