"""Rich tables for people: a plan's memory breakdown, verdict, reasons and cost."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from peftkit.memory import Plan
from peftkit.run.checkpoints import CHECKPOINTS
from peftkit.run.outputs import LOGS, RESULTS

if TYPE_CHECKING:
    from peftkit.data.audit import Audit

TERMS = {
    "weights": "frozen weights",
    "quantization_constants": "quantization constants",
    "trainable": "trainable parameters",
    "gradients": "gradients",
    "optimizer": "optimizer states",
    "activations": "activations",
    "logits": "logits and loss",
    "overhead": "CUDA context and slack",
}


def print_plan(plan: Plan, console: Console | None = None) -> None:
    console = console or Console()
    numbers = plan.as_dict()
    table = Table("memory per GPU", "GB", title="Estimated peak GPU memory")
    for key, label in TERMS.items():
        table.add_row(label, f"{numbers[f'{key}_gb']:.2f}")
    table.add_row("[bold]total[/bold]", f"[bold]{numbers['total_gb']:.2f}[/bold]")
    console.print(table)
    console.print(
        f"{numbers['trainable_params']:,} trainable of {numbers['total_params']:,} parameters"
    )
    settings = ", ".join(f"{k}={v}" for k, v in numbers["settings"].items())
    console.print(f"settings: {settings}")
    unjudged = ["no GPU memory given: pass --gpu-memory for a verdict"]
    for reason in [*(unjudged if plan.gpu_memory_gb is None else []), *plan.reasons]:
        console.print(f"- {reason}")
    if plan.cost is not None:
        cost = plan.cost
        money = "" if cost.usd is None else f", ${cost.usd:,.2f}"
        console.print(
            f"time: {cost.hours:.1f} h for {cost.tokens:,} tokens x {cost.epochs:g} epochs at "
            f"~{cost.tokens_per_second:,.0f} tokens/s{money}"
        )
        for assumption in cost.assumptions:
            console.print(f"  assumed: {assumption}")


def print_training(metrics: dict, output: Path, console: Console | None = None) -> None:
    """Before/after, why training stopped, and where the outputs are."""
    console = console or Console()
    after = metrics["after"]
    title = f"{metrics['recipe']}: {metrics['model']}"
    console.print(results_table(metrics["before"], after, title))
    stop = metrics["stop_reason"] or "finished the planned steps"
    console.print(
        f"{metrics['global_step']} steps in {metrics['train_time_s']:.0f} s "
        f"({metrics['tokens_per_s'] or 0:,.0f} tokens/s); stop: {stop}; best step: "
        f"{metrics['best_step']}"
    )
    resolved = metrics.get("resolved") or {}
    for key in RESOLVED_SHOWN:
        if key in resolved and resolved[key]["why"] != "as the recipe says":
            console.print(f"{key}: {resolved[key]['value']} ({resolved[key]['why']})")
    for note in [*metrics["data"].get("notes", []), *after.get("notes", [])]:
        console.print(f"note: {note}")
    if metrics.get("output") is None:
        console.print(
            f"interrupted: the earlier results in {output} are kept as they were; this run's "
            "results were discarded"
        )
        return
    for name in [*RESULTS, CHECKPOINTS, LOGS]:
        if name in RESULTS or (output / name).exists():
            console.print(f"  {output / name}")
    if metrics.get("pushed_to"):
        console.print(f"pushed the adapter to {metrics['pushed_to']}")


def results_table(before: dict, after: dict, title: str) -> Table:
    """The scores before and after, one row each (training's and an adapter's evaluation)."""
    table = Table("held-out", "before", "after", title=title)
    for key, label in RESULT_ROWS.items():
        if key in before or key in after:
            rate = key.endswith("_rate")
            table.add_row(label, formatted(before.get(key), rate), formatted(after.get(key), rate))
    return table


def print_evaluation(found: dict, console: Console | None = None) -> None:
    """`peftkit evaluate`: the base model's scores, then with the adapter, on the given data."""
    console = console or Console()
    title = f"{found['recipe']}: {found['model']} + {found['adapter']}"
    console.print(results_table(found["before"], found["after"], title))
    data = found["data"]
    console.print(
        f"{data['rows']} rows of {data['path']} ({data['format']}); before: the base model, "
        "after: with the adapter"
    )
    for note in found["after"].get("notes", []):
        console.print(f"note: {note}")


RESOLVED_SHOWN = ("training.learning_rate", "training.precision", "model.dtype")
"""The resolved settings the run summary names (all of them are in metrics.json): the ones a
recipe's ``auto`` most often changes between machines and models."""

RESULT_ROWS = {
    "eval_loss": "loss",
    "perplexity": "perplexity",
    "json_valid_rate": "valid JSON",
    "schema_valid_rate": "schema-valid JSON",
    "exact_match_rate": "exact match with the reference",
    "key_match_rate": "keys matching the reference",
    "stopped_rate": "answers that stopped (EOS)",
    "truncated_rate": "answers cut at max_new_tokens",
}


def formatted(value: float | None, rate: bool) -> str:
    """A score as the summary and the model card show it."""
    if value is None:
        return "-"
    return f"{value:.1%}" if rate else f"{value:.3f}"


def print_audit(found: Audit, console: Console | None = None) -> None:
    """The data audit in a few lines: the figures that matter, then each finding and its fix."""
    console = console or Console(stderr=True)
    stats = found.stats
    total = stats.get("tokens", {}).get("total", {})
    budget = stats.get("budget", {})
    if total:
        console.print(
            f"data: {budget.get('rows', '?')} rows, tokens per row median {total['median']:g}, "
            f"p95 {total['p95']}, max {total['max']} (max_length "
            f"{stats['tokens']['max_length']}); {budget.get('optimizer_steps', '?')} optimizer "
            "steps"
        )
    rate = stats.get("learning_rate")
    if rate is not None and rate["why"] != "as the recipe says":
        console.print(f"training.learning_rate: {rate['value']} ({rate['why']})")
    if not found.findings:
        console.print("data audit: nothing found")
        return
    table = Table("", "data audit", "fix", title=None, show_lines=False)
    for finding in found.findings:
        where = f" (e.g. {finding.rows[0]})" if finding.rows else ""
        table.add_row(finding.level, f"{finding.message}{where}", finding.fix)
    console.print(table)
