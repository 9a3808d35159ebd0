"""What `peftkit train` and `peftkit check` prepare before any weight loads: the recipe as it
runs, its data split as the trainer gets it, the tokenizer, the model's config (checked against
the recipe) and what every ``auto`` resolves to. One preparation for both commands, so that the
audit `check` prints is the one `train` runs; it imports no trainer (`check` never trains).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftkit import data
from peftkit.core.errors import RecipeError
from peftkit.core.limits import SHORTEST_SEQUENCE
from peftkit.core.metrics import eval_name
from peftkit.core.names import is_local
from peftkit.core.processes import world_size
from peftkit.recipes.base import Recipe
from peftkit.recipes.chat_templates import is_template_file
from peftkit.recipes.resolution import Resolved, for_model
from peftkit.run import loading

if TYPE_CHECKING:
    from peftkit.data.audit import Audit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """What `peftkit train` and `peftkit check` prepare before any weight loads."""

    recipe: Recipe
    """The recipe as it runs: format detected, paths absolute, length fitted, the learning
    rate ``auto`` gave."""
    splits: Any
    tokenizer: Any
    config: Any
    """The model's config (transformers'), checked against the recipe."""
    resolved: Resolved


def prepare(recipe: Recipe) -> Prepared:
    """The recipe as it runs, its data split as the trainer gets it, the tokenizer and what the
    recipe's ``auto`` settings resolve to, after every check that needs no weights (the model's
    context, its LoRA targets): the one preparation of `peftkit train` and `peftkit check`, so
    that the two never disagree."""
    splits = data.prepare(recipe, recipe.data.train_path, recipe.data.eval_path)
    recipe = _as_run(recipe, splits.format)
    _check_monitored_metric(recipe)
    recipe = _fitted_length(recipe)
    config = loading.check_model(recipe, recipe.training.max_length)
    resolved, recipe = for_model(recipe, config)
    return Prepared(recipe, splits, loading.load_tokenizer(recipe), config, resolved)


def audit_data(recipe: Recipe) -> Audit:
    """`peftkit check`: the audit that `peftkit train` runs before training, of the same data,
    recipe and model as train prepares them, without loading weights or training; its stats
    name the learning rate the run would use."""
    from peftkit.data.audit import audit

    if recipe.data.train_path is None:
        raise RecipeError("no data to check. Fix: pass --data FILE (or set data.train_path).")
    prepared = prepare(recipe)
    found = audit(
        prepared.recipe,
        prepared.splits,
        prepared.tokenizer,
        prepared.config.to_dict(),
        world_size(),
    )
    rate = prepared.resolved.learning_rate
    found.stats["learning_rate"] = {"value": rate.value, "why": rate.why}
    return found


def _check_monitored_metric(recipe: Recipe) -> None:
    """Early stopping must watch a metric this run produces: found now, not after the model
    loaded and trained until the first evaluation."""
    stopping = recipe.callbacks.early_stopping
    if not stopping.enabled or recipe.training.eval_strategy == "no":
        return
    produced = recipe.train_metrics()
    if stopping.metric in produced or eval_name(stopping.metric) in produced:
        return
    raise RecipeError(
        f"callbacks.early_stopping.metric: got '{stopping.metric}', which `peftkit train` does "
        f"not produce with this recipe (it produces: {', '.join(produced)}). Fix: "
        f"{recipe.metric_fix(stopping.metric)}."
    )


def _as_run(recipe: Recipe, fmt: str) -> Recipe:
    """The recipe as it runs: the detected format, and absolute data and model paths, so that
    recipe.yaml reruns the same run from any folder (and the adapter names its base so)."""

    def absolute(path: str) -> str:
        return str(Path(path).expanduser().resolve())

    data_section = recipe.data
    template = data_section.chat_template
    section = data_section.model_copy(
        update={
            "format": fmt,
            "train_path": absolute(data_section.train_path or ""),
            "eval_path": None
            if data_section.eval_path is None
            else absolute(data_section.eval_path),
            "chat_template": absolute(template) if is_template_file(template) else template,
        }
    )
    name = recipe.model.name
    model = recipe.model.model_copy(update={"name": absolute(name) if is_local(name) else name})
    return recipe.model_copy(update={"data": section, "model": model})


def _fitted_length(recipe: Recipe) -> Recipe:
    """The recipe's default ``max_length``, when the model has no positions for it, is
    lowered to the model's context, with a notice; another length (one the user chose) is
    left for :func:`~peftkit.run.loading.check_model` to refuse. The default is recognised by
    its value: a built-in recipe file spells out every field, so "set" cannot tell."""
    training = recipe.training
    if training.max_length != type(training).model_fields["max_length"].default:
        return recipe
    config = loading.load_config(recipe.model.name, recipe.model.trust_remote_code)
    context = getattr(config, "max_position_embeddings", None)
    if not isinstance(context, int) or not SHORTEST_SEQUENCE <= context < training.max_length:
        return recipe
    log.warning(
        "training.max_length: the recipe's default of %d is more than the %d positions of %s, "
        "so this run uses %d; set training.max_length to choose another length.",
        training.max_length,
        context,
        recipe.model.name,
        context,
    )
    fitted = training.model_copy(update={"max_length": context})
    return recipe.model_copy(update={"training": fitted})
