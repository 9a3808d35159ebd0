"""Recipe quality: are the peftkit recipes' defaults as good as what a careful practitioner would
pick, or a sweep would find, for the same compute?

On SmolLM2-135M-Instruct (offline, as in ``peftkit demo``) and the demo's two tasks, every
configuration trains side by side in one process:

- the peftkit recipe: its ``LoraConfig`` and ``SFTConfig`` exactly as the recipe builds them;
- three published configurations (competitors.py: TRL's documentation, Unsloth's notebook,
  axolotl's small-Llama example), each cited, scaled only where the task size forces it;
- a sweep one axis at a time around the recipe: learning rate (4 values), rank (2 more, so 3
  with the recipe's) and attention-only targets, every other setting the recipe's.

Same base weights (fp32, bf16 autocast), same training examples in the same order, same seed;
``use_cpu=True`` is the one setting added. Two budgets: the same number of training examples
(each configuration's own schedule over them), and the same wall time (the recipe's median
time: a configuration whose time per example differs from the recipe's by more than 10%
retrains with the step count its own measured step time allows; within 10%, or a
learning-rate point, its same-examples run stands). The recipe and the two best competitors
train with two more seeds; the tables give mean and spread (max - min), and a difference
inside the spread is a tie, not a win. One common evaluation scores every adapter: held-out
loss with the same tokenization and length, and the task metric (schema-valid JSON rate from
greedy answers to unseen prompts; perplexity on held-out documentation topics). No
configuration evaluates during training, so early stopping does not
act here (``short_runs.py`` measures it).

``python recipe_quality.py`` rewrites the ``recipe-quality`` and ``short-runs`` sections of
docs/benchmarks.md.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from competitors import BASELINES, sweep
from report import git_revision, machine, write_section
from sft_runs import RECIPE, SEEDS, Contender, Run, Task, common_args, load, score, tasks, train
from sft_runs import options as cli_options
from short_runs import study
from verdict import Entry, rank_lines, verdict_lines

from peftkit import recipes

SAME_TIME_TOLERANCE = 0.10


def contenders(task: Task, model: Path) -> list[Contender]:
    recipe = recipes.load(task.recipe, [f"model.name={model}"])
    rate = float(recipe.resolve(model).learning_rate.value)  # the recipe's auto, for this model
    points = sweep(rate, recipe.lora.r, recipe.lora.alpha)
    return [
        Contender(RECIPE, "recipe"),
        *(Contender(b.name, "baseline", baseline=b) for b in BASELINES),
        *(Contender(p.label, "sweep", point=p) for p in points),
    ]


def run_task(task: Task, model_path: Path, work: Path) -> tuple[dict[str, float], list[Run]]:
    """Every contender once, then two more seeds for the recipe and the two best competitors,
    then the wall-time budget for those whose time per example is not the recipe's."""
    model, tokenizer = load(model_path)
    base = score(model, tokenizer, task, work)
    everyone = contenders(task, model_path)
    runs = [train(task, c, model_path, work) for c in everyone]
    first = {run.config: Entry.of(task.schema is not None, [run]) for run in runs}
    best_two = sorted((e for n, e in first.items() if n != RECIPE), key=Entry.order)[:2]
    seeded = {RECIPE, *(e.name for e in best_two)}
    runs += [
        train(task, c, model_path, work, seed)
        for c in everyone
        if c.name in seeded
        for seed in SEEDS[1:]
    ]
    recipe_seconds = statistics.median(r.seconds for r in runs if r.config == RECIPE)
    for contender in everyone:
        own = [r for r in runs if r.config == contender.name]
        seconds = statistics.median(r.seconds for r in own)
        if abs(seconds / recipe_seconds - 1) <= SAME_TIME_TOLERANCE or rate_point(contender):
            runs += [Run(**{**vars(r), "budget": "same wall time", "copied": True}) for r in own]
            continue
        steps = max(1, round(recipe_seconds / (seconds / max(own[0].steps, 1))))
        runs.append(train(task, contender, model_path, work, steps=steps))
    return base, runs


def rate_point(contender: Contender) -> bool:
    """A learning-rate point of the sweep: it does the recipe's computation exactly (only a
    scalar differs), so a gap in its measured time is the machine's noise, not a budget to even
    out; the best of them is the rival short_runs.py trains for longer."""
    return contender.point is not None and contender.point.axis == "learning rate"


def best_rate(task: Task, runs: list[Run], model_path: Path) -> Contender:
    """The learning-rate point of the sweep that did best at the same examples (seed 42): the
    rival short_runs.py trains for longer."""
    first = [r for r in runs if r.budget == "same examples" and r.seed == SEEDS[0]]
    ranked = sorted(first, key=lambda r: Entry.of(task.schema is not None, [r]).order())
    rates = {c.name: c for c in contenders(task, model_path) if rate_point(c)}
    return next(rates[r.config] for r in ranked if r.config in rates)


def describe(contender: Contender, task: Task, model_path: Path) -> str:
    """One line of what a configuration sets, read back from the built objects."""
    lora, args = contender.build(
        task, model_path, **common_args(Path("unused"), task, SEEDS[0], None)
    )
    targets = lora.target_modules
    if not isinstance(targets, str):
        targets = ", ".join(sorted(targets))
    warmup = args.warmup_steps
    return (
        f"| {contender.name} | {lora.r} / {lora.lora_alpha:g} / {lora.lora_dropout:g} | "
        f"{targets} | {args.learning_rate:g} {args.lr_scheduler_type.value}, warmup "
        f"{warmup:.3g} | {args.per_device_train_batch_size} x "
        f"{args.gradient_accumulation_steps} | {args.optim.value} | {args.max_length} | "
        f"{'yes' if args.packing else 'no'} | {'yes' if args.gradient_checkpointing else 'no'} |"
    )


def runs_table(task: Task, runs: list[Run]) -> list[str]:
    metric = "schema-valid (JSON)" if task.schema is not None else "perplexity"
    lines = [
        f"| budget | configuration | seed | optimizer steps | wall s | tokens/s | held-out loss "
        f"| {metric} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in (r for r in runs if not r.copied):
        name = f"**{run.config}**" if run.config == RECIPE else run.config
        cell = (
            f"{run.scores['schema_valid_rate']:.0%} ({run.scores['json_valid_rate']:.0%})"
            if task.schema is not None
            else f"{run.scores['perplexity']:.2f}"
        )
        lines.append(
            f"| {run.budget} | {name} | {run.seed} | {run.steps} | {run.seconds:.0f} | "
            f"{run.tokens_per_second:.0f} | {run.scores['eval_loss']:.3f} | {cell} |"
        )
    return lines


def task_section(
    task: Task, base: dict[str, float], runs: list[Run], model_path: Path
) -> tuple[str, list[str]]:
    """The task's Markdown, and its verdict lines (for the summary at the top)."""
    json_task_ = task.schema is not None
    entries = {
        budget: [
            Entry.of(json_task_, [r for r in runs if r.config == name and r.budget == budget])
            for name in dict.fromkeys(r.config for r in runs)
        ]
        for budget in ("same examples", "same wall time")
    }
    everyone = contenders(task, model_path)
    kinds = {c.name: c.kind for c in everyone}
    verdicts = verdict_lines(task.name, entries, kinds, RECIPE)
    untrained = (
        f"schema-valid {base['schema_valid_rate']:.0%}"
        if json_task_
        else f"perplexity {base['perplexity']:.2f}"
    )
    lines = [
        f"### {task.name}: `{task.recipe}` recipe",
        "",
        f"{len(task.train)} training examples x {task.epochs:g} epoch = {task.examples} "
        f"examples for the same-examples budget; {len(task.eval)} held-out examples, scored "
        f"with max length {task.eval_length}. Untrained model: held-out loss "
        f"{base['eval_loss']:.3f}, {untrained}.",
        "",
        *rank_lines(entries, kinds, RECIPE, json_task_),
        "",
        *verdicts,
        "",
        "Every run (a configuration within 10% of the recipe's time per example, or a "
        "learning-rate point, has no same-wall-time run of its own: its same-examples runs "
        "stand for both):",
        "",
        *runs_table(task, runs),
        "",
        "| configuration | LoRA r / alpha / dropout | targets | learning rate | batch x "
        "accumulation | optimizer | max length | packing | activation checkpointing |",
        "|---|---|---|---|---|---|---|---|---|",
        *(describe(c, task, model_path) for c in everyone if c.kind != "sweep"),
    ]
    return "\n".join(lines), verdicts


def sources() -> list[str]:
    lines = ["Sources of the published configurations, and what was scaled:", ""]
    for b in BASELINES:
        lines.append(f"- **{b.name}**: {b.source}. Scaled: {b.scaled}.")
    return lines


def main() -> None:
    options = cli_options(__doc__.splitlines()[0])
    started = time.perf_counter()
    sections, rivals = [], {}
    with tempfile.TemporaryDirectory() as work:
        for task in tasks(options.quick):
            base, runs = run_task(task, options.model, Path(work))
            sections.append(task_section(task, base, runs, options.model)[0])
            rivals[task.name] = best_rate(task, runs, options.model)
        minutes = (time.perf_counter() - started) / 60
        longer = study(rivals, options.model, Path(work), options.quick)
    body = "\n\n".join(
        [
            "## Recipe quality against published configurations and a sweep",
            f"`benchmarks/recipe_quality.py` at {git_revision()} on {machine()}; "
            f"model `{options.model.name}`, {minutes:.0f} minutes. Every configuration "
            "trains on the same examples in the same order from the same fp32 weights (bf16 "
            "autocast), seed 42; the recipe and the two best competitors also with seeds 43 "
            "and 44 (mean and spread = max - min; a difference inside the larger spread is a "
            "tie). One common evaluation scores every adapter. The wall-time budget is the "
            "recipe's median training time; a configuration more than 10% faster or slower "
            "per example retrains with the steps its own measured step time allows (not a "
            "learning-rate point: it does the recipe's computation exactly). The sweep "
            "changes one setting of the recipe at a time (rank at the recipe's alpha/r). "
            "No configuration evaluates during training, so early stopping does not act here.",
            "\n".join(sources()),
            *sections,
        ]
    )
    write_section("recipe-quality", body, options.doc)
    write_section("short-runs", longer, options.doc)
    print(body, longer, sep="\n\n")


if __name__ == "__main__":
    main()
