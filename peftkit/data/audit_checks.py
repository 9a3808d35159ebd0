"""The checks of the data audit (:mod:`peftkit.data.audit`), one function per topic, each
adding its findings and figures to the audit."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from peftkit.core.limits import LONGEST_SEQUENCE
from peftkit.data.measure import Measured, normalized

if TYPE_CHECKING:
    from peftkit.data.audit import Audit
    from peftkit.data.splits import Splits
    from peftkit.recipes.base import Recipe

KEEP_WHOLE = 0.99
"""The share of rows the suggested max_length keeps whole."""
TRUNCATED_WARN = 0.01
"""Warn when more than this share of rows loses trained tokens to max_length."""
NO_EOS_WARN = 0.01
"""Warn when more than this share of whole trained rows does not end with a trained EOS."""
DUPLICATES_WARN = 0.01
"""Warn when more than this share of training rows repeats another (fewer: a note)."""
FEW_STEPS = 10
"""Fewer optimizer steps than this make warmup and the evaluation cadence meaningless."""
LENGTH_STEP = 64
"""The suggested max_length is rounded up to a multiple of this."""


@dataclass(frozen=True)
class Row:
    """One training row as the trainer sees it: where it is, its lengths, and what truncation
    to ``max_length`` leaves of its trained tokens."""

    place: str
    total: int
    trained: int
    trained_kept: int
    ends_with_eos: bool
    key: int
    """The hash of the row's normalized text, for finding copies."""


def rows_of(measured: list[Measured], places: tuple[str, ...]) -> list[Row]:
    return [
        Row(places[i] if i < len(places) else f"row {i + 1}", *numbers)
        for i, numbers in enumerate(measured)
    ]


def percentile(values: list[int], share: float) -> int:
    """The value below which ``share`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def spread(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "min": min(values),
        "median": statistics.median(values),
        "p95": percentile(values, 0.95),
        "max": max(values),
    }


# --- template ------------------------------------------------------------------------------------


def check_template(found: Audit, splits: Splits, tokenizer: Any, masked: bool) -> bool:
    """Chat data needs a chat template, and assistant-only loss a template that marks the
    assistant's turns; False when the rest of the audit cannot go on."""
    from peftkit.core.errors import RecipeError
    from peftkit.data.splits import check_chat

    if splits.format != "messages":
        return True
    try:
        check_chat(splits, tokenizer)
    except RecipeError as error:
        message, _, fix = str(error).partition(" Fix: ")
        found.add("error", "no-chat-template", message, fix.rstrip("."))
        return False
    if masked:
        first = tokenizer.apply_chat_template(
            splits.train[0]["messages"], return_assistant_tokens_mask=True
        )
        if 1 not in first["assistant_masks"]:
            found.add(
                "error",
                "template-cannot-mark-assistant",
                "the chat template marks no assistant tokens (it has no {% generation %} "
                "block), so assistant-only loss would train on nothing",
                "set data.completion_only_loss=false (train on every token), or use a model "
                "whose chat template marks the assistant turns",
                [splits.train_places[0]] if splits.train_places else [],
            )
            return False
    return True


# --- lengths and labels --------------------------------------------------------------------------


def check_lengths(found: Audit, recipe: Recipe, rows: list[Row], model_config: Any) -> None:
    """Token counts against max_length; rows whose trained tokens it cuts; the max_length that
    keeps KEEP_WHOLE of the rows whole, and its memory."""
    limit, packing = recipe.training.max_length, recipe.training.packing
    totals = [r.total for r in rows]
    found.stats["tokens"] = {
        "total": spread(totals),
        "prompt": spread([r.total - r.trained for r in rows]),
        "completion": spread([r.trained for r in rows]),
        "max_length": limit,
    }
    if packing or not rows:
        return
    cut = [r for r in rows if r.total > limit]
    answers_cut = [r for r in cut if r.trained_kept < r.trained]
    wanted = math.ceil(percentile(totals, KEEP_WHOLE) / LENGTH_STEP) * LENGTH_STEP
    if wanted <= limit:  # the cut rows are the last 1%: keep them whole too
        wanted = math.ceil(max(totals) / LENGTH_STEP) * LENGTH_STEP
    longest, why = longest_length(model_config)
    suggested = max(min(wanted, longest), limit)
    found.stats["truncated_share"] = len(cut) / len(rows)
    found.stats["completion_truncated_share"] = len(answers_cut) / len(rows)
    found.stats["suggested_max_length"] = suggested
    memory = _memory(recipe, model_config, suggested)
    if memory:
        found.stats["memory_gb"] = memory
    over = len([r for r in rows if r.total > suggested])
    shorten = f"shorten or split the {over} row(s) longer than {suggested} tokens"
    if suggested == limit:  # no longer length is possible: the rows must be shorter
        fix = f"{shorten} ({suggested} is the most {why})"
    else:
        cost = f" (estimated peak {memory['suggested']:.1f} GB)" if memory else ""
        share = len([r for r in rows if r.total <= suggested]) / len(rows)
        fix = f"set training.max_length={suggested}, which keeps {share:.0%} of the rows whole"
        fix += cost if suggested == wanted else f" ({suggested} is the most {why}), and {shorten}"
    if answers_cut and len(answers_cut) == len([r for r in rows if r.trained]):
        found.add(
            "error",
            "every-completion-truncated",
            f"max_length={limit} cuts the trained part of every row: the model would learn "
            "only beginnings",
            fix,
            [r.place for r in answers_cut],
        )
    elif len(answers_cut) > TRUNCATED_WARN * len(rows):
        found.add(
            "warning",
            "completions-truncated",
            f"{len(answers_cut)} of {len(rows)} rows ({len(answers_cut) / len(rows):.0%}) lose "
            f"trained tokens to max_length={limit}"
            + ("" if recipe.data.format == "text" else ": cut answers teach cut answers"),
            fix,
            [r.place for r in answers_cut],
        )


def longest_length(model_config: Any) -> tuple[int, str]:
    """The longest training.max_length that `peftkit train` takes with this model, and why: the
    field's own bound, or the model's context (stretched by its rope scaling)."""
    from peftkit.memory.shapes import usable_context

    context, key = usable_context(model_config or {})
    if context is not None and context < LONGEST_SEQUENCE:
        return context, f"the model takes: {key}"
    return LONGEST_SEQUENCE, "training.max_length takes"


def _memory(recipe: Recipe, model_config: Any, length: int) -> dict[str, float] | None:
    """Estimated peak GB at the recipe's max_length and at ``length`` (what `peftkit estimate`
    says of the recipe and of the recipe with that max_length); None without a config."""
    if model_config is None:
        return None
    from peftkit.core.errors import RecipeError

    longer = recipe.training.model_copy(update={"max_length": length})
    try:
        return {
            "current": recipe.estimate(model_config).total / 1e9,
            "suggested": recipe.model_copy(update={"training": longer}).estimate(model_config).total
            / 1e9,
        }
    except RecipeError:  # an architecture the estimate does not know
        return None


def check_labels(found: Audit, recipe: Recipe, rows: list[Row], eos: str) -> None:
    """Rows the trainer drops for having no trained token, the share of trained tokens, and
    trained rows that do not end with a trained EOS."""
    limit = recipe.training.max_length if not recipe.training.packing else math.inf
    empty = [r for r in rows if r.trained_kept == 0]
    total = sum(min(r.total, limit) for r in rows)
    found.stats["trained_token_share"] = sum(r.trained_kept for r in rows) / max(total, 1)
    found.stats["rows_without_trained_tokens"] = len(empty)
    if rows and len(empty) == len(rows):
        found.add(
            "error",
            "no-trained-token",
            "no row has a trained token left after masking and truncation: there is nothing to "
            "learn",
            "set data.completion_only_loss=false, or raise training.max_length",
            [r.place for r in empty],
        )
    elif empty:
        found.add(
            "warning",
            "rows-dropped",
            f"{len(empty)} row(s) have no trained token after masking and truncation; the "
            "trainer drops them without a word",
            "shorten their prompts, or raise training.max_length",
            [r.place for r in empty],
        )
    whole = [r for r in rows if r.trained and r.total <= limit]
    no_eos = [r for r in whole if not r.ends_with_eos]
    found.stats["rows_without_trained_eos"] = len(no_eos)
    if len(no_eos) > NO_EOS_WARN * len(whole):
        found.add(
            "warning",
            "no-trained-eos",
            f"{len(no_eos)} of {len(whole)} whole rows do not end with a trained end-of-text "
            f"token ({eos}): the model does not learn to stop",
            "end every answer with the tokenizer's EOS token, or use a chat template that "
            "ends the assistant turn with it",
            [r.place for r in no_eos],
        )


# --- duplicates and leakage ----------------------------------------------------------------------


def check_duplicates(found: Audit, splits: Splits, rows: list[Row]) -> None:
    """Rows repeated in the training data, and evaluation rows that are training rows (by the
    hash of :func:`~peftkit.data.measure.normalized`, computed where the rows were measured)."""
    where: dict[int, list[int]] = defaultdict(list)
    for index, row in enumerate(rows):
        where[row.key].append(index)
    repeated = [index for places in where.values() for index in places[1:]]
    places = splits.train_places
    found.stats["duplicate_rows"] = len(repeated)
    if repeated:
        level = "warning" if len(repeated) > DUPLICATES_WARN * len(rows) else "note"
        found.add(
            level,
            "duplicates",
            f"{len(repeated)} training row(s) repeat an earlier one: they weigh double",
            "remove the repeats",
            [places[i] for i in repeated if i < len(places)],
        )
    if splits.eval is None:
        return
    leaked = [i for i, row in enumerate(splits.eval.to_list()) if hash(normalized(row)) in where]
    found.stats["eval_rows_in_train"] = len(leaked)
    if leaked:
        found.add(
            "warning",
            "eval-in-train",
            f"{len(leaked)} of {len(splits.eval)} evaluation rows are also training rows: the "
            "evaluation overstates what the model learned",
            "remove them from the training data (or deduplicate before the split)",
            [splits.eval_places[i] for i in leaked if i < len(splits.eval_places)],
        )


# --- JSON answers --------------------------------------------------------------------------------


def check_json(found: Audit, recipe: Recipe, splits: Splits, records: list[dict[str, Any]]) -> None:
    """For a recipe that trains JSON answers: the share of training answers that parse, and that
    satisfy its schema; a schema no answer satisfies is an error."""
    checks = recipe.answer_checks() if recipe.JSON_ANSWERS else None
    if checks is None:
        return
    from jsonschema import validators

    from peftkit.evaluation.json_answers import NOT_JSON, parsed_json

    schema = checks.schema
    validator = validators.validator_for(schema)(schema) if schema is not None else None
    answers = _answers(splits.format, records)
    not_json, invalid = [], []
    for index, answer in enumerate(answers):
        value = parsed_json(answer)
        if value is NOT_JSON:
            not_json.append(index)
        elif validator is not None and (error := next(validator.iter_errors(value), None)):
            invalid.append((index, error.message))
    count = max(len(answers), 1)
    found.stats["answers_json_share"] = 1 - len(not_json) / count
    place = _placer(splits.train_places)
    if not_json:
        found.add(
            "error" if len(not_json) == len(answers) else "warning",
            "answers-not-json",
            f"{len(not_json)} of {len(answers)} training answers are not JSON: the model learns "
            "to answer in other ways too",
            "correct or remove those rows",
            [place(i) for i in not_json],
        )
    if validator is None:
        return
    found.stats["answers_schema_share"] = 1 - (len(not_json) + len(invalid)) / count
    if invalid and len(invalid) + len(not_json) == len(answers):
        level, message = "error", "no training answer satisfies json_schema"
    elif invalid:
        level, message = "warning", f"{len(invalid)} training answers fail json_schema"
    else:
        return
    found.add(
        level,
        "answers-fail-schema",
        f"{message} (first: {invalid[0][1]})",
        "correct json_schema or the answers",
        [f"{place(i)}: {why}" for i, why in invalid],
    )


def _answers(fmt: str, records: list[dict[str, Any]]) -> list[str]:
    """The text each training row teaches as its answer: the completion, or the last
    assistant turn of a conversation."""
    column = "completion" if fmt == "prompt-completion" else "messages"
    return [_last_answer(row[column]) for row in records]


def _last_answer(value: Any) -> str:
    if isinstance(value, str):
        return value
    return next((m["content"] for m in reversed(value) if m["role"] == "assistant"), "")


def _placer(places: tuple[str, ...]) -> Any:
    return lambda index: places[index] if index < len(places) else f"row {index + 1}"


# --- the run's length ----------------------------------------------------------------------------


def check_run_length(found: Audit, recipe: Recipe, rows: list[Row], world_size: int) -> None:
    """Rows, tokens and optimizer steps the recipe will take, and a run too short for its
    cadences or so long that it passes over the data more often than is usual."""
    from peftkit.recipes.rules import MAX_USUAL_EPOCHS, cadences_longer_than

    t = recipe.training
    kept = [r for r in rows if r.trained_kept]
    per_epoch = _steps_per_epoch(len(kept), t.batch_size, t.gradient_accumulation_steps, world_size)
    steps = t.max_steps or math.ceil(t.epochs * per_epoch)
    passes = steps / per_epoch if per_epoch else 0.0
    tokens = sum(min(r.total, t.max_length) for r in kept)
    found.stats["budget"] = {
        "rows": len(kept),
        "tokens_per_epoch": tokens,
        "optimizer_steps": steps if kept else 0,
        "epochs": round(passes, 3),
    }
    if not kept:  # nothing to train: check_labels has said so
        return
    if t.max_steps is None and steps < FEW_STEPS:
        found.add(
            "warning",
            "few-steps",
            f"{len(kept)} rows make {steps} optimizer step(s) at an effective batch of "
            f"{t.batch_size * t.gradient_accumulation_steps}: too few to warm up, evaluate and "
            "stop early",
            _more_steps(len(kept), t, world_size),
        )
    for doubt in cadences_longer_than(t, steps):
        found.add("warning", "cadence-longer-than-run", doubt)
    if t.max_steps is not None and passes > MAX_USUAL_EPOCHS:
        found.add(
            "warning",
            "many-passes",
            f"training.max_steps={t.max_steps} passes over the {len(kept)} rows {passes:.1f} "
            f"times, more than the usual {MAX_USUAL_EPOCHS}: it is likely to overfit",
            f"set training.max_steps={MAX_USUAL_EPOCHS * per_epoch} or less, or add data",
        )


def _steps_per_epoch(rows: int, batch_size: int, accumulation: int, world_size: int) -> int:
    """Optimizer steps in one pass over ``rows`` (0 for no rows)."""
    return math.ceil(math.ceil(rows / (batch_size * world_size)) / accumulation)


def _more_steps(rows: int, t: Any, world_size: int) -> str:
    """The fix for a run of too few steps that keeps within MAX_USUAL_EPOCHS passes (so that
    it does not call for the many-passes fix): more steps where the data has them, else a
    smaller batch (more steps per pass), else more data."""
    from peftkit.recipes.rules import MAX_USUAL_EPOCHS

    for accumulation in range(t.gradient_accumulation_steps, 0, -1):
        for batch in range(t.batch_size, 0, -1):
            per_epoch = _steps_per_epoch(rows, batch, accumulation, world_size)
            if MAX_USUAL_EPOCHS * per_epoch < FEW_STEPS:
                continue
            steps = min(FEW_STEPS * 3, MAX_USUAL_EPOCHS * per_epoch)
            settings = [] if batch == t.batch_size else [f"training.batch_size={batch}"]
            if accumulation != t.gradient_accumulation_steps:
                settings.append(f"training.gradient_accumulation_steps={accumulation}")
            if math.ceil(t.epochs * per_epoch) < FEW_STEPS:
                settings.append(f"training.max_steps={steps}")
            return f"set {' '.join(settings)}, or add data"
    return (
        f"add data: {rows} row(s) give at most {MAX_USUAL_EPOCHS * rows} steps in "
        f"{MAX_USUAL_EPOCHS} passes, even one row at a time"
    )


# --- what LoRA tolerates -------------------------------------------------------------------------


def check_lora_fit(
    found: Audit, recipe: Recipe, rows: list[Row], model_config: Any, world_size: int
) -> None:
    """An effective batch far above what LoRA tolerates, and a rank far from the data's size
    (:mod:`peftkit.recipes.capacity`)."""
    from peftkit.recipes.capacity import Capacity, adapter_params, batch_doubt, capacity_finding

    doubt = batch_doubt(recipe, world_size)
    if doubt is not None:
        found.add("warning", "lora-batch", *doubt)
    params = adapter_params(recipe, model_config)
    if params is None:
        return
    capacity = Capacity(params, sum(r.trained_kept for r in rows))
    found.stats["adapter_params"] = params
    found.stats["adapter_bits_per_data_bit"] = round(capacity.ratio, 3)
    finding = capacity_finding(recipe, capacity)
    if finding is not None:
        found.add(*finding)
