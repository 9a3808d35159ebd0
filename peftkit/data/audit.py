"""The data audit: what the trainer would silently do to the data, found before training.

`peftkit check` and the start of every `peftkit train` (one preparation for both,
:func:`peftkit.run.prepare.audit_data`) tokenize the rows as ``SFTTrainer`` will
(:mod:`peftkit.data.tokens`) and report what goes wrong there and nowhere else: answers cut
by ``max_length`` (a JSON answer cut in half teaches broken JSON), rows left with no trained
token (the trainer drops them without a word), trained rows that do not end with a trained EOS
(a model that never learns to stop), a chat template that cannot mark the assistant's turns,
duplicates and evaluation rows that are also training rows, JSON answers that do not parse or
fail the schema, and a run too short for its own cadences. No model weights are loaded.

Each finding is an error (training would be meaningless), a warning (past a threshold below)
or a note. ``Audit.as_dict()`` is the stable form behind ``--json`` and ``metrics.json``
(``peftkit/data/audit.schema.json``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from peftkit.data.audit_checks import (
    check_duplicates,
    check_json,
    check_labels,
    check_lengths,
    check_lora_fit,
    check_run_length,
    check_template,
    rows_of,
)
from peftkit.data.measure import measure

if TYPE_CHECKING:
    from peftkit.data.splits import Splits
    from peftkit.recipes.base import Recipe

SCHEMA_VERSION = 1
EXAMPLES = 5
"""Rows named in a finding at most."""
Level = Literal["error", "warning", "note"]


@dataclass(frozen=True)
class Finding:
    """One thing the audit found: how bad, a stable code, what it means, the fix, and where."""

    level: Level
    code: str
    message: str
    fix: str = ""
    rows: tuple[str, ...] = ()


@dataclass
class Audit:
    """Findings, and the figures they were drawn from."""

    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    def add(self, level: Level, code: str, message: str, fix: str = "", rows: Any = ()) -> None:
        self.findings.append(Finding(level, code, message, fix, tuple(rows)[:EXAMPLES]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "errors": len(self.errors),
            "findings": [{**asdict(f), "rows": list(f.rows)} for f in self.findings],
            "stats": self.stats,
        }


def audit(
    recipe: Recipe, splits: Splits, tokenizer: Any, model_config: Any = None, world_size: int = 1
) -> Audit:
    """Every check on ``splits`` as ``recipe`` will train on them with ``tokenizer``;
    ``model_config`` (the model's config) adds the memory of the suggested max_length."""
    found = Audit()
    masked = bool(recipe.data.completion_only_loss)
    if not check_template(found, splits, tokenizer, masked):
        return found
    records = splits.train.to_list()  # once: every check reads the rows
    # A turn ends with EOS, or with a token a chat template adds (<|im_end|>, <|eot_id|>).
    stops = {tokenizer.eos_token_id, *tokenizer.all_special_ids, *tokenizer.added_tokens_decoder}
    limit = recipe.training.max_length
    measured = measure(records, splits.format, tokenizer, masked, limit, stops)
    rows = rows_of(measured, splits.train_places)
    check_lengths(found, recipe, rows, model_config)
    check_labels(found, recipe, rows, tokenizer.eos_token)
    check_duplicates(found, splits, rows)
    check_json(found, recipe, splits, records)
    check_run_length(found, recipe, rows, world_size)
    check_lora_fit(found, recipe, rows, model_config, world_size)
    return found


def refuse_errors(found: Audit) -> None:
    """Stop before training when the audit found that training would be meaningless."""
    from peftkit.core.errors import Problem, ProblemsError

    if found.errors:
        raise ProblemsError(
            "in the data, as the trainer would see it (peftkit check shows the whole audit; "
            "--no-check skips it)",
            [Problem(f.code, list(f.rows) or "-", f.message, f.fix or "-") for f in found.errors],
        )
