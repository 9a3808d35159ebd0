"""The before/after scores of a run: what ``peftkit train`` reports before and after training,
what ``peftkit evaluate`` reports for an adapter, and what your own trainer can report.

    from peftkit.evaluation import evaluate
    scores = evaluate(trainer, recipe, eval_rows)   # eval_loss, perplexity; JSON rates for
                                                    # json-output
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from peftkit.core.errors import RecipeError
from peftkit.core.formats import row_format
from peftkit.evaluation.json_answers import content_rates, generate_answers, json_rates

if TYPE_CHECKING:
    from peftkit.recipes.base import Recipe


def data_format(rows: Any) -> str:
    """The format of evaluation rows (a Dataset), by their columns as TRL reads them."""
    columns = set(rows.column_names)
    found = row_format(columns)
    if found is not None:
        return found
    raise RecipeError(
        f"evaluation data: columns {sorted(columns)} are no data format TRL reads. Fix: give "
        "messages, prompt and completion, or text columns."
    )


def held_out_prompts(rows: Any, fmt: str, limit: int) -> tuple[list[Any], list[Any]]:
    """The first ``limit`` prompts of ``rows`` (a Dataset of format ``fmt``) and their reference
    answers: a conversation's turns before its last answer, and that answer."""
    chosen = rows.select(range(min(limit, len(rows))))
    if fmt == "prompt-completion":
        return list(chosen["prompt"]), list(chosen["completion"])
    prompts, answers = [], []
    for messages in chosen["messages"]:
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        prompts.append(messages[:last])
        answers.append(messages[last]["content"])
    return prompts, answers


def evaluate(
    trainer: Any, recipe: Recipe, rows: Any = None, trained: bool = False
) -> dict[str, Any]:
    """What the recipe's user cares about, on the trainer's evaluation data: ``eval_loss`` and
    ``perplexity``; for a recipe that generates (json-output) answers to the prompts of
    ``rows`` (the evaluation rows as given, before the trainer tokenized them), their JSON and
    schema-valid rates, match with the reference answers, and how many stopped by themselves.
    Once ``trained``, a model that rarely stops is named in ``notes`` (before, it has not
    learned). Empty when the trainer has no evaluation data. Evaluations outside ``train()``
    are left alone by peftkit's callbacks."""
    found: dict[str, Any] = {}
    if trainer.eval_dataset is None:
        return found
    loss = trainer.evaluate()["eval_loss"]
    found["eval_loss"] = loss
    found["perplexity"] = math.exp(loss) if loss < 50 else math.inf
    checks = recipe.answer_checks()
    fmt = None if rows is None else data_format(rows)
    if checks is None or fmt is None or fmt == "text":
        return found
    prompts, references = held_out_prompts(rows, fmt, checks.samples)
    generated = generate_answers(
        trainer.model,
        trainer.processing_class,
        prompts,
        checks.max_new_tokens,
        checks.batch_size,
    )
    answers = generated.texts
    found.update(json_rates(answers, checks.schema))
    found.update(content_rates(answers, references))
    found.update(generated.stop_rates())
    if trained and (note := generated.stop_note()) is not None:
        found["notes"] = [note]
    found["examples"] = [
        {"prompt": p if isinstance(p, str) else p[-1]["content"], "answer": a}
        for p, a in list(zip(prompts, answers, strict=True))[:3]
    ]
    return found
