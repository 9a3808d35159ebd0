"""The verdict of recipe_quality.py: where the recipe ranks, whether it meets its goals, and
which differences are wins rather than seed noise.

Goals (issue 15): within 2 points of the best schema-valid rate and within 2% of the best
held-out loss; ahead of every published configuration. A difference counts only when it is
larger than the spread (max - min over seeds) of either side; for a configuration trained with
one seed, the recipe's spread stands in for its own.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

VALID_POINTS = 0.02
LOSS_SHARE = 0.02
PHRASE = {"ahead": "ahead of", "behind": "behind", "tie": "tie with"}


@dataclass(frozen=True)
class Entry:
    """One configuration at one budget: the mean and spread of its runs' scores."""

    name: str
    json: bool
    valid: float
    valid_spread: float | None
    loss: float
    loss_spread: float | None
    seeds: int

    @classmethod
    def of(cls, json: bool, runs: list[Any]) -> Entry:
        losses = [r.scores["eval_loss"] for r in runs]
        valid = [r.scores.get("schema_valid_rate", 0.0) for r in runs]
        several = len(runs) > 1
        return cls(
            runs[0].config,
            json,
            statistics.mean(valid),
            max(valid) - min(valid) if several else None,
            statistics.mean(losses),
            max(losses) - min(losses) if several else None,
            len(runs),
        )

    def order(self) -> tuple[float, ...]:
        """Best first: schema-valid rate, then loss (json); loss alone (docs)."""
        return (-self.valid, self.loss) if self.json else (self.loss,)

    def cells(self) -> str:
        """Two table cells: the metric and the loss (json), or the loss and perplexity (docs)."""
        loss = f"{self.loss:.3f}" + _spread(self.loss_spread, "{:.3f}")
        if not self.json:
            return f"{loss} | {math.exp(self.loss):.2f}"
        spread = None if self.valid_spread is None else self.valid_spread * 100
        return f"{self.valid:.0%}" + _spread(spread, "{:.0f}") + f" | {loss}"


def _spread(spread: float | None, fmt: str) -> str:
    return "" if spread is None else " ± " + fmt.format(spread)


def compare(recipe: Entry, other: Entry) -> str:
    """ "ahead", "behind" or "tie" for the recipe against ``other``, beyond the seeds' spread."""

    def noise(a: float | None, b: float | None) -> float:
        return max(x for x in (a, b, 0.0) if x is not None)

    if recipe.json:
        gap = recipe.valid - other.valid
        if abs(gap) > noise(recipe.valid_spread, other.valid_spread):
            return "ahead" if gap > 0 else "behind"
    gap = other.loss - recipe.loss
    if abs(gap) > noise(recipe.loss_spread, other.loss_spread):
        return "ahead" if gap > 0 else "behind"
    return "tie"


def goals(recipe: Entry, entries: list[Entry]) -> list[str]:
    """The recipe against the best schema-valid rate and the best held-out loss."""
    best_loss = min(e.loss for e in entries)
    loss_gap = recipe.loss / best_loss - 1
    said = [
        f"within 2% of the best held-out loss ({best_loss:.3f}): "
        f"{'yes' if loss_gap <= LOSS_SHARE else '**no**'} ({loss_gap:+.1%})"
    ]
    if recipe.json:
        best_valid = max(e.valid for e in entries)
        gap = round((best_valid - recipe.valid) * 100, 1)
        said.insert(
            0,
            f"within 2 points of the best schema-valid rate ({best_valid:.0%}): "
            f"{'yes' if gap <= VALID_POINTS * 100 else '**no**'} ({-gap or 0:+.0f} points)",
        )
    return said


def rank_lines(
    entries: dict[str, list[Entry]], kinds: dict[str, str], recipe: str, json: bool
) -> list[str]:
    """The verdict table: every configuration at both budgets, ranked."""
    metric = "schema-valid | held-out loss" if json else "held-out loss | perplexity"
    head = (
        f"| configuration | kind | same examples: {metric} | rank | same wall time: {metric} "
        "| rank |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    examples, wall = (entries[b] for b in ("same examples", "same wall time"))
    places = {budget: _places(es) for budget, es in entries.items()}
    by_name = {e.name: e for e in wall}
    for entry in sorted(examples, key=Entry.order):
        name = f"**{entry.name}**" if entry.name == recipe else entry.name
        other = by_name[entry.name]
        lines.append(
            f"| {name} | {kinds[entry.name]} | {entry.cells()} | "
            f"{places['same examples'][entry.name]} | {other.cells()} | "
            f"{places['same wall time'][entry.name]} |"
        )
    return lines


def _places(entries: list[Entry]) -> dict[str, int]:
    return {e.name: i for i, e in enumerate(sorted(entries, key=Entry.order), start=1)}


def verdict_lines(
    task: str, entries: dict[str, list[Entry]], kinds: dict[str, str], recipe: str
) -> list[str]:
    """Sentences for each budget: rank, goals, the published configurations, and any sweep
    point that beats the recipe beyond the spread and outside the goals (a default to change)."""
    lines = []
    for budget, es in entries.items():
        mine = next(e for e in es if e.name == recipe)
        place = _places(es)[recipe]
        baselines = [e for e in es if kinds[e.name] == "baseline"]
        against = ", ".join(f"{PHRASE[compare(mine, b)]} {b.name}" for b in baselines)
        beaten_by = [
            e.name
            for e in es
            if kinds[e.name] == "sweep"
            and compare(mine, e) == "behind"
            and any("**no**" in g for g in goals(mine, [e]))
        ]
        lines.append(
            f"- **{task}, {budget}**: the recipe ranks {place} of {len(es)}; "
            + "; ".join(goals(mine, es))
            + f"; against the published configurations: {against}."
            + (
                f" Sweep points clearly ahead: {', '.join(beaten_by)}."
                if beaten_by
                else " No sweep point is ahead beyond the spread and outside the goals."
            )
        )
    return lines
