"""Rich tables for people: a plan's memory breakdown, verdict, reasons and cost."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from peftkit.memory import Plan

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
    for reason in plan.reasons or ["no GPU memory given: pass --gpu-memory for a verdict"]:
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
    before, after = metrics["before"], metrics["after"]
    table = Table("held-out", "before", "after", title=f"{metrics['recipe']}: {metrics['model']}")
    for key, label in RESULT_ROWS.items():
        if key in before or key in after:
            rate = key.endswith("_rate")
            table.add_row(label, _fmt(before.get(key), rate), _fmt(after.get(key), rate))
    console.print(table)
    stop = metrics["stop_reason"] or "finished the planned steps"
    console.print(
        f"{metrics['global_step']} steps in {metrics['train_time_s']:.0f} s "
        f"({metrics['tokens_per_s'] or 0:,.0f} tokens/s); stop: {stop}; best step: "
        f"{metrics['best_step']}"
    )
    for note in metrics["data"].get("notes", []):
        console.print(f"note: {note}")
    if metrics.get("output") is None:
        console.print(
            f"interrupted: the earlier results in {output} are kept as they were; this run's "
            "results were discarded"
        )
        return
    for name in ("adapter", "metrics.json", "training.png", "recipe.yaml"):
        console.print(f"  {output / name}")


RESULT_ROWS = {
    "eval_loss": "loss",
    "perplexity": "perplexity",
    "json_valid_rate": "valid JSON",
    "schema_valid_rate": "schema-valid JSON",
}


def _fmt(value: float | None, rate: bool) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if rate else f"{value:.3f}"
