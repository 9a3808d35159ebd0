"""What a recipe's ``auto`` settings become on a machine and a model: one decision, in one place.

The builders, the loader, ``peftkit train``, ``check``, ``plan`` and ``show --model`` all ask
:func:`resolve`, so a run uses, records and reports the same values. Machine-dependent choices
(precision, the weights' and the 4-bit compute dtype, attention, Liger) come from
:mod:`peftkit.core.hardware`; the learning rate from the model's size
(:mod:`peftkit.recipes.learning_rate`). A resolved choice is checked again by the rules that
relate precision and dtypes (:mod:`peftkit.recipes.rules`), with the same text as at validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from peftkit.core import hardware
from peftkit.core.errors import RecipeError, format_problems, problems, warn
from peftkit.core.hardware import (
    Choice,
    Machine,
    ResolvedPrecision,
    attention,
    compute_dtype,
    liger,
    resolve_precision,
    storage_dtype,
    weights_dtype,
)
from peftkit.core.names import is_local
from peftkit.recipes.learning_rate import auto_rate, model_width

if TYPE_CHECKING:
    from peftkit.recipes.base import Recipe

TRL_FUSED_HEAD = (1, 15)
"""From this TRL release on, SFTTrainer computes the loss without the full logits tensor (a
fused, tiled LM head, ``trl.trainer.utils.add_fused_lm_head``), and Liger's fused cross-entropy
is off."""


@dataclass(frozen=True)
class Resolved:
    """Every ``auto`` of a recipe as it runs here, each with its reason."""

    precision: ResolvedPrecision
    dtype: Choice
    compute_dtype: Choice | None
    storage_dtype: Choice | None
    learning_rate: Choice
    attention: Choice
    liger: Choice
    machine: Machine

    def as_dict(self) -> dict[str, Any]:
        """For metrics.json and ``--json``: each setting's value and why."""
        found = {
            "training.precision": Choice(self.precision.name, self.precision.reason),
            "model.dtype": self.dtype,
            "quantization.compute_dtype": self.compute_dtype,
            "quantization.storage_dtype": self.storage_dtype,
            "training.learning_rate": self.learning_rate,
            "model.attention": self.attention,
            "training.liger": self.liger,
        }
        return {
            key: {"value": choice.value, "why": choice.why}
            for key, choice in found.items()
            if choice is not None
        }

    def notes(self) -> dict[str, str]:
        """Comments for the recipe written with these values: how ``auto`` gave the learning
        rate (the one ``auto`` a written recipe replaces by its number)."""
        choice = self.learning_rate
        return {} if choice.why == "as the recipe says" else {"training.learning_rate": choice.why}

    def lines(self) -> list[str]:
        """One line per setting, for the run summary and ``peftkit show --model``."""
        return [f"{key}: {item['value']} ({item['why']})" for key, item in self.as_dict().items()]


def model_config(model: Any, name: str) -> dict[str, Any] | None:
    """The config mapping of ``model``: a loaded model, a transformers config, a mapping, a
    config.json or folder path, or a hub id whose config is in the local Hugging Face cache
    (loading the model puts it there); None for a hub id that is not (nothing is downloaded
    here: offline, that would only retry for half a minute)."""
    from peftkit.memory import read_config

    source = name if model is None else model
    if hasattr(source, "config") and hasattr(source.config, "to_dict"):
        return source.config.to_dict()
    try:
        return read_config(source)
    except RecipeError:
        if isinstance(source, Mapping) or is_local(str(source)):
            raise
    return None


def model_name(recipe: Recipe, model: Any) -> str:
    """How messages name the model: the path or id it was given as."""
    if model is None:
        return recipe.model.name
    return str(getattr(model, "name_or_path", None) or getattr(model, "_name_or_path", model))


def checkpoint_dtype(config: Mapping[str, Any] | None) -> str | None:
    """The dtype the checkpoint is stored in, as its config says; None where it does not."""
    if config is None:
        return None
    found = config.get("torch_dtype") or config.get("dtype")
    return found if found in ("bfloat16", "float16", "float32") else None


def resolve(recipe: Recipe, model: Any = None, machine: Machine | None = None) -> Resolved:
    """The recipe's settings as they run on ``machine`` (default: this one) with ``model``
    (default: ``recipe.model.name``; see :func:`model_config`)."""
    machine = machine or hardware.this_machine()
    t, q = recipe.training, recipe.quantization
    wants_config = t.learning_rate == "auto" or recipe.model.dtype == "auto"
    config = model_config(model, recipe.model.name) if wants_config else None
    precision = resolve_precision(t.precision, machine)
    dtype = weights_dtype(
        recipe.model.dtype, precision, checkpoint_dtype(config), recipe.method == "full", machine
    )
    compute = compute_dtype(q.compute_dtype, precision) if q.bits == 4 else None
    storage = None
    if compute is not None:
        fsdp = recipe.distributed.strategy == "fsdp"
        storage = storage_dtype(q.storage_dtype, str(compute.value), fsdp)
    _check_resolved(recipe, precision, dtype, compute, machine)
    _warn_emulated(precision, dtype, machine)
    return Resolved(
        precision=precision,
        dtype=dtype,
        compute_dtype=compute,
        storage_dtype=storage,
        learning_rate=_learning_rate(recipe, config, model_name(recipe, model)),
        attention=attention(recipe.model.attention, str(dtype.value), machine),
        liger=liger(t.liger, machine),
        machine=machine,
    )


UNKNOWN_MODEL = "unknown: the model's config.json is neither local nor in the Hugging Face cache"


def _learning_rate(recipe: Recipe, config: Mapping[str, Any] | None, name: str) -> Choice:
    """The rate, or ``auto`` with :data:`UNKNOWN_MODEL` where no config says the model's size
    (only what needs the number refuses that: :func:`learning_rate`)."""
    rate = recipe.training.learning_rate
    if rate != "auto":
        return Choice(rate, "as the recipe says")
    if config is None:
        return Choice("auto", UNKNOWN_MODEL)
    hidden, family = model_width(config, name)
    found = auto_rate(hidden, family, recipe.method)
    return Choice(found.value, found.why)


def learning_rate_for(recipe: Recipe, model: Any = None) -> Choice:
    """The learning rate alone, for commands that do not need the machine (``plan``,
    ``check``): no torch is imported."""
    config = (
        model_config(model, recipe.model.name) if recipe.training.learning_rate == "auto" else None
    )
    return _learning_rate(recipe, config, model_name(recipe, model))


def learning_rate(resolved: Resolved, name: str) -> float:
    """The number a trainer needs; ``auto`` without a known model is refused with the fix."""
    value = resolved.learning_rate.value
    if isinstance(value, float):
        return value
    raise RecipeError(
        f"training.learning_rate: auto takes the rate from the model's config.json, and the "
        f"config of '{name}' is neither in a local folder nor in the Hugging Face cache. "
        "Fix: load the model first and pass it (build_sft_config(..., model=model)), or set "
        "training.learning_rate=2e-4"
    )


def _warn_emulated(precision: ResolvedPrecision, dtype: Choice, machine: Machine) -> None:
    """A written dtype or precision the machine does not compute in runs, emulated (said once,
    however often a run resolves the recipe: :func:`peftkit.core.errors.warn`)."""
    slow = []
    if precision.dtype not in machine.native:
        slow.append(f"training.precision={precision.name}")
    if dtype.value not in (*machine.native, "auto"):
        slow.append(f"model.dtype={dtype.value}")
    if slow:
        warn(
            f"{' and '.join(slow)} on this {machine.describe()}: every matmul in that dtype is "
            "emulated, about 10x slower per step (docs/benchmarks.md). Set them to auto, which "
            "picks what this machine computes in."
        )


def _check_resolved(
    recipe: Recipe,
    precision: ResolvedPrecision,
    dtype: Choice,
    compute: Choice | None,
    machine: Machine,
) -> None:
    """The precision and dtype rules on the resolved values: ``auto`` may resolve into a
    combination the recipe could not be checked for (fp16 on a GPU without bf16 with bf16
    weights written in the recipe)."""
    if "auto" not in (recipe.training.precision, recipe.quantization.compute_dtype):
        return
    resolved = recipe.model_copy(
        update={
            "training": recipe.training.model_copy(update={"precision": precision.name}),
            "model": recipe.model.model_copy(
                update={"dtype": dtype.value if dtype.value != "auto" else recipe.model.dtype}
            ),
            "quantization": recipe.quantization.model_copy(
                update={"compute_dtype": compute.value if compute else "auto"}
            ),
        }
    )
    from pydantic import ValidationError

    from peftkit.core.errors import raise_all
    from peftkit.recipes.rules import PRECISION_RULES

    try:
        raise_all(type(recipe).__name__, [p for rule in PRECISION_RULES for p in rule(resolved)])
    except ValidationError as error:
        subject = f"with precision auto resolved to {precision.name} on this {machine.describe()}"
        raise RecipeError(format_problems(subject, problems(error))) from None


def with_learning_rate(recipe: Recipe, resolved: Resolved) -> Recipe:
    """The recipe as a run records it: ``learning_rate: auto`` as the number it resolved to, so
    that recipe.yaml, the model card and a rerun name it. Machine-dependent ``auto`` settings
    stay ``auto``: the same file runs on another machine."""
    rate = resolved.learning_rate.value
    if recipe.training.learning_rate != "auto" or not isinstance(rate, float):
        return recipe
    training = recipe.training.model_copy(update={"learning_rate": rate})
    return recipe.model_copy(update={"training": training})


def for_model(recipe: Recipe, model: Any) -> tuple[Resolved, Recipe]:
    """What ``recipe`` resolves to for ``model`` here, and the recipe a run of it records."""
    resolved = resolve(recipe, model)
    return resolved, with_learning_rate(recipe, resolved)


def fused_loss(recipe: Recipe) -> bool:
    """Whether the run's loss never holds the full logits: TRL's own tiled LM head (TRL 1.15 and
    newer, installed here), or Liger's fused cross-entropy where Liger is on (or ``auto`` with
    liger-kernel installed). Read from package metadata: nothing is imported."""
    import importlib.util
    from importlib import metadata

    try:
        version = tuple(int(part) for part in metadata.version("trl").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        version = (0, 0)
    if version >= TRL_FUSED_HEAD:
        return True
    liger_on = recipe.training.liger
    return liger_on is True or (
        liger_on == "auto" and importlib.util.find_spec("liger_kernel") is not None
    )
