"""The rules that relate a recipe's sections to each other, one named function each, grouped by
what they are about (as axolotl's ``check_*`` validators are). A rule returns the problems it
finds, or none; :meth:`Recipe.problems` runs them all, so every problem is reported at once.
Rules within one section live in that section; doubts (legal but doubtful choices, shown as
warnings) are at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic_core import InitErrorDetails

from peftkit.callbacks.settings import AT_EVALUATIONS, CLIPPING_OFF
from peftkit.core.errors import rule_error
from peftkit.core.metrics import mode_from_name
from peftkit.recipes.overrides import assignments

if TYPE_CHECKING:
    from peftkit.recipes.base import Recipe
    from peftkit.recipes.quantization import QuantizationSection
    from peftkit.recipes.training import TrainingSection

Rule = Callable[["Recipe"], list[InitErrorDetails]]

# Usual peak learning rates. LoRA: 1e-4..3e-4 in the LoRA/QLoRA papers and PEFT examples; 2e-5
# (SFTConfig's default, tuned for full fine-tuning) barely moves an adapter. Full fine-tuning of
# LLMs: 1e-5..5e-5 (InstructGPT, Llama 2 chat, Alpaca).
LEARNING_RATE_USUAL: dict[str, tuple[float, float]] = {
    "full": (1e-6, 1e-4),
    "lora": (5e-5, 1e-3),
    "qlora": (5e-5, 1e-3),
}
MAX_USUAL_EPOCHS = 3


# --- the method and the quantization of the base -------------------------------------------------


def check_qlora_is_4bit(recipe: Recipe) -> list[InitErrorDetails]:
    bits = recipe.quantization.bits
    if recipe.method != "qlora" or bits == 4:
        return []
    return [
        rule_error(
            ["quantization", "bits"],
            bits,
            "method 'qlora' trains an adapter on a 4-bit base model",
            "set quantization.bits=4, or method=lora",
        )
    ]


def check_lora_on_4bit_is_qlora(recipe: Recipe) -> list[InitErrorDetails]:
    if recipe.method != "lora" or recipe.quantization.bits != 4:
        return []
    return [
        rule_error(
            ["method"], recipe.method, "LoRA on a 4-bit base model is QLoRA", "set method=qlora"
        )
    ]


def check_full_is_unquantized(recipe: Recipe) -> list[InitErrorDetails]:
    bits = recipe.quantization.bits
    if recipe.method != "full" or bits is None:
        return []
    return [
        rule_error(
            ["quantization", "bits"],
            bits,
            "quantized weights cannot be trained in full",
            "set quantization.bits=null, or method=qlora with quantization.bits=4",
        )
    ]


# --- precision -----------------------------------------------------------------------------------


def check_fp16_without_bf16(recipe: Recipe) -> list[InitErrorDetails]:
    q, precision = recipe.quantization, recipe.training.precision
    uses_bf16 = recipe.model.dtype == "bfloat16" or (q.bits == 4 and q.compute_dtype == "bfloat16")
    if precision != "fp16" or not uses_bf16:
        return []
    return [
        rule_error(
            ["training", "precision"],
            precision,
            "fp16 mixed precision with bfloat16 weights or compute: the fp16 gradient scaler "
            "cannot unscale bfloat16 gradients",
            "set training.precision=bf16 (or auto), or, on GPUs without bf16, "
            "model.dtype=auto with quantization.compute_dtype=auto (they follow fp16)",
        )
    ]


def check_bf16_with_fp16_compute(recipe: Recipe) -> list[InitErrorDetails]:
    q = recipe.quantization
    if recipe.training.precision != "bf16" or q.bits != 4 or q.compute_dtype != "float16":
        return []
    return [
        rule_error(
            ["quantization", "compute_dtype"],
            q.compute_dtype,
            "bf16 training with float16 4-bit compute mixes two half-precision formats",
            "set quantization.compute_dtype=auto (it follows the precision)",
        )
    ]


# --- several devices -----------------------------------------------------------------------------


def storage_fits_fsdp(q: QuantizationSection) -> bool:
    """Whether 4-bit weights stored as ``q`` says can be sharded: FSDP shards parameters of one
    dtype, so they are stored in the compute dtype, or ``auto``, which then resolves to it
    (:func:`peftkit.core.hardware.storage_dtype`). The rule below and the planner's fix for a
    run that needs sharding ask this."""
    return q.bits != 4 or q.storage_dtype in ("auto", q.compute_dtype)


def check_fsdp_storage_dtype(recipe: Recipe) -> list[InitErrorDetails]:
    """A written storage dtype against a written compute dtype; ``compute_dtype: auto`` is
    judged once it resolves (:data:`PRECISION_RULES`)."""
    q = recipe.quantization
    if recipe.distributed.strategy != "fsdp" or storage_fits_fsdp(q) or q.compute_dtype == "auto":
        return []
    return [
        rule_error(
            ["quantization", "storage_dtype"],
            q.storage_dtype,
            "FSDP shards parameters of one dtype, so 4-bit weights must be stored in the "
            "compute dtype",
            "set quantization.storage_dtype=auto (it follows the compute dtype under FSDP)",
        )
    ]


# --- evaluation and the callbacks that decide at evaluations -----------------------------------

EVALUATION_OFF: dict[str, Any] = {
    "training.eval_strategy": "no",
    **{f"callbacks.{name}.enabled": False for name in AT_EVALUATIONS},
}
"""No evaluations, and so none of the callbacks that decide at them: what every fix that
switches evaluation off sets, and what ``peftkit import`` makes of a config without them."""


def check_evaluation_has_data(recipe: Recipe) -> list[InitErrorDetails]:
    t = recipe.training
    if t.eval_strategy == "no" or recipe.has_eval_data:
        return []
    return [
        rule_error(
            ["training", "eval_strategy"],
            t.eval_strategy,
            "evaluations are scheduled but there is no evaluation data "
            "(training.eval_fraction is 0 and data.eval_path is not set)",
            "set training.eval_fraction=0.1 (or give data.eval_path), or switch evaluation and "
            f"the callbacks that need it off: {assignments(EVALUATION_OFF)}",
        )
    ]


def check_callbacks_have_evaluations(recipe: Recipe) -> list[InitErrorDetails]:
    if recipe.training.eval_strategy != "no":
        return []
    return [
        rule_error(
            ["callbacks", name, "enabled"],
            True,
            f"the {name.replace('_', ' ')} callback decides at evaluations, and "
            "training.eval_strategy is 'no'",
            f"set training.eval_strategy=steps, or callbacks.{name}.enabled=false",
        )
        for name in AT_EVALUATIONS
        if getattr(recipe.callbacks, name).enabled
    ]


def check_early_stopping_direction(recipe: Recipe) -> list[InitErrorDetails]:
    """Resolved at validation, not at the first evaluation after the model loaded: `peftkit
    train` sets no metric_for_best_model, so the name has to say it."""
    stopping = recipe.callbacks.early_stopping
    if stopping.mode != "auto" or mode_from_name(stopping.metric) is not None:
        return []
    return [
        rule_error(
            ["callbacks", "early_stopping", "mode"],
            "auto",
            f"the name '{stopping.metric}' does not say whether higher or lower is better",
            "set callbacks.early_stopping.mode=max (or min)",
        )
    ]


def check_full_copy_is_accepted(recipe: Recipe) -> list[InitErrorDetails]:
    stopping = recipe.callbacks.early_stopping
    copies_model = recipe.method == "full" and stopping.enabled and stopping.restore_best
    if not copies_model or stopping.allow_full_copy:
        return []
    return [
        rule_error(
            ["callbacks", "early_stopping", "restore_best"],
            True,
            "with method 'full', keeping the best weights copies the whole model to CPU memory "
            "at every improved evaluation (4 bytes per parameter in fp32)",
            "set callbacks.early_stopping.allow_full_copy=true to accept the cost, or "
            "callbacks.early_stopping.restore_best=false",
        )
    ]


# --- the data's format ---------------------------------------------------------------------------


def check_declared_data_format(recipe: Recipe) -> list[InitErrorDetails]:
    fmt = recipe.data.format
    misfit = None if fmt == "auto" else recipe.data_misfit(fmt)
    if misfit is None:
        return []
    return [rule_error(misfit.field, misfit.value, misfit.rule, misfit.recipe_fix)]


PRECISION_RULES: tuple[Rule, ...] = (
    check_fp16_without_bf16,
    check_bf16_with_fp16_compute,
    check_fsdp_storage_dtype,
)
"""The rules on precision and dtypes: run at validation on what the recipe says, and again on
what ``auto`` resolves to on the machine at hand."""

RULES: tuple[Rule, ...] = (
    check_qlora_is_4bit,
    check_lora_on_4bit_is_qlora,
    check_full_is_unquantized,
    check_fp16_without_bf16,
    check_bf16_with_fp16_compute,
    check_fsdp_storage_dtype,
    check_evaluation_has_data,
    check_callbacks_have_evaluations,
    check_early_stopping_direction,
    check_full_copy_is_accepted,
    check_declared_data_format,
)
"""Every cross-section rule of the base recipe, in the order problems are listed."""


# --- doubts: legal but doubtful, each with the reason --------------------------------------------


def doubt_learning_rate(recipe: Recipe) -> list[str]:
    rate = recipe.training.learning_rate
    low, high = LEARNING_RATE_USUAL[recipe.method]
    if rate == "auto" or low <= rate <= high:
        return []
    return [
        f"training.learning_rate={rate:g} is outside the usual [{low:g}, {high:g}] for method "
        f"'{recipe.method}'; too low barely trains, too high diverges."
    ]


def doubt_epochs(recipe: Recipe) -> list[str]:
    t = recipe.training
    if t.max_steps is not None or t.epochs <= MAX_USUAL_EPOCHS:
        return []
    return [
        f"training.epochs={t.epochs:g}: more than {MAX_USUAL_EPOCHS} passes over the same data "
        "usually overfits; keep early stopping on and watch the eval loss."
    ]


def doubt_cadences_longer_than_the_run(recipe: Recipe) -> list[str]:
    """Cadences longer than the run: nothing would be logged or evaluated."""
    t: TrainingSection = recipe.training
    return [] if t.max_steps is None else cadences_longer_than(t, t.max_steps)


def cadences_longer_than(t: TrainingSection, steps: int) -> list[str]:
    """What a run of ``steps`` optimizer steps would never log or evaluate (also used by the
    data audit, which knows the steps of a run that counts epochs)."""
    found = []
    if t.logging_steps > steps:
        found.append(
            f"training.logging_steps={t.logging_steps} is more than the {steps} steps of "
            "the run: no training loss is logged, so overfit detection and the plot have none. "
            f"Set training.logging_steps={steps} or less."
        )
    every = t.eval_steps or t.logging_steps
    if t.eval_strategy == "steps" and every > steps:
        found.append(
            f"evaluations every {every} steps never come in a run of {steps} steps, so "
            f"early stopping never acts. Set training.eval_steps={steps} or less."
        )
    return found


def doubt_clipping_off(recipe: Recipe) -> list[str]:
    if recipe.training.max_grad_norm != 0:
        return []
    return [CLIPPING_OFF]


def doubt_lora_batch(recipe: Recipe) -> list[str]:
    from peftkit.recipes.capacity import batch_doubt

    found = batch_doubt(recipe)
    return [] if found is None else [f"training: {found[0]}. Fix: {found[1]}."]


DOUBTS: tuple[Callable[[Recipe], list[str]], ...] = (
    doubt_learning_rate,
    doubt_lora_batch,
    doubt_epochs,
    doubt_cadences_longer_than_the_run,
    doubt_clipping_off,
)
