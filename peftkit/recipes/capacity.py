"""What LoRA tolerates: the effective batch, and how much data an adapter's rank can hold.

Both from Schulman et al. 2025, "LoRA Without Regret" (Thinking Machines):

- LoRA "pays a larger penalty in loss as batch size increases beyond some point", which a higher
  rank does not mitigate (a property of the product-of-matrices parametrization); on their
  10,000-example OpenThoughts3 subset "the gap is smaller and shrinks over time for the smaller
  batch size of 32" (TRL's guide to the post reads it as: keep the effective batch under 32).
  peftkit warns far above that, at more than :data:`BATCH_WARN` examples per optimizer step.
- LoRA matches full fine-tuning while its trainable parameters hold more than the data's
  information: a network stores about 2 bits per parameter (Allen-Zhu & Li 2024, "Physics of
  Language Models 3.3"), and SFT data carries at most about 1 bit (0.69 nats) per trained token
  (the post's upper bound). Past that, LoRA trains less efficiently than full fine-tuning.
  Far below it, a high rank only costs memory: early learning curves are the same for every
  rank.

:func:`batch_doubt` is a recipe doubt (validation) and a finding of the data audit (with the
number of processes); the capacity findings need the data's trained tokens and the model's
shapes, so only the audit (``peftkit check`` and ``train``) makes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peftkit.recipes.base import Recipe

GOOD_BATCH = 32
"""The batch at which LoRA's gap to full fine-tuning was small and shrinking."""
BATCH_WARN = 4 * GOOD_BATCH
BITS_PER_PARAMETER = 2
BITS_PER_TOKEN = 1
ROOMY = 100
"""Capacity this many times the data's information is far more than it needs."""
MODEST_RANK = 16


def batch_doubt(recipe: Recipe, processes: int = 1) -> tuple[str, str] | None:
    """Why the effective batch is too large for LoRA, and the fix; None when it is not."""
    t = recipe.training
    effective = t.batch_size * t.gradient_accumulation_steps * processes
    if recipe.method == "full" or effective <= BATCH_WARN:
        return None
    per_step = t.batch_size * processes
    if per_step <= GOOD_BATCH:
        fix = f"set training.gradient_accumulation_steps={max(GOOD_BATCH // per_step, 1)}"
    else:
        fix = f"set training.batch_size={max(GOOD_BATCH // processes, 1)}"
        fix += " training.gradient_accumulation_steps=1"
    return (
        f"an effective batch of {effective} examples per optimizer step is more than "
        f"{BATCH_WARN}: LoRA loses more than full fine-tuning at large batches, and a higher "
        f"rank does not help (LoRA Without Regret, Schulman et al. 2025: the gap shrinks at "
        f"{GOOD_BATCH})",
        fix,
    )


@dataclass(frozen=True)
class Capacity:
    """The adapter's parameters and the data's trained tokens, as the two rules read them."""

    adapter_params: int
    trained_tokens: int

    @property
    def ratio(self) -> float:
        """Bits the adapter holds per bit the data can carry at most."""
        data_bits = max(self.trained_tokens * BITS_PER_TOKEN, 1)
        return self.adapter_params * BITS_PER_PARAMETER / data_bits


def adapter_params(recipe: Recipe, model_config: Mapping[str, Any] | None) -> int | None:
    """The LoRA parameters ``recipe`` trains on the model of ``model_config``; None for full
    fine-tuning or a config the memory package cannot size."""
    if recipe.method == "full" or model_config is None:
        return None
    from peftkit.core.errors import RecipeError
    from peftkit.memory.peak import Setup, lora_params
    from peftkit.memory.shapes import shape_of

    try:
        shape = shape_of(model_config)
    except RecipeError:  # an architecture the estimate does not know: no finding
        return None
    lora = recipe.lora
    setup = Setup(r=lora.r, targets=lora.target_modules, use_dora=lora.use_dora)
    return lora_params(shape, setup)


def rank_for(recipe: Recipe, capacity: Capacity) -> int:
    """The smallest power-of-two rank whose adapter holds the data's bits."""
    needed = recipe.lora.r / capacity.ratio
    return 2 ** math.ceil(math.log2(max(needed, 1)))


def capacity_finding(recipe: Recipe, capacity: Capacity) -> tuple[str, str, str, str] | None:
    """(level, code, message, fix) when the rank is far from the data's size, else None."""
    r = recipe.lora.r
    held = capacity.adapter_params * BITS_PER_PARAMETER
    if capacity.ratio < 1:
        wanted = rank_for(recipe, capacity)
        return (
            "warning",
            "rank-too-small",
            f"the data has {capacity.trained_tokens:,} trained tokens, up to ~1 bit each, and "
            f"lora.r={r} gives {capacity.adapter_params:,} parameters that hold ~{held:,} bits "
            "(2 per parameter): past that, LoRA learns less per example than full fine-tuning "
            "(LoRA Without Regret, Schulman et al. 2025)",
            f"set lora.r={wanted} lora.alpha={_alpha_at(recipe, wanted)}"
            + (" (or method=full)" if wanted > r * 8 else ""),
        )
    if capacity.ratio > ROOMY and r > MODEST_RANK:
        return (
            "note",
            "rank-roomy",
            f"lora.r={r} holds ~{held:,} bits for {capacity.trained_tokens:,} trained tokens, "
            f"over {ROOMY} times what the data can carry: learning curves are the same for "
            "every rank this early (LoRA Without Regret), so a lower rank trains as well with "
            "less memory",
            f"set lora.r={MODEST_RANK} lora.alpha={_alpha_at(recipe, MODEST_RANK)} to save "
            "memory, or keep the rank for a larger corpus",
        )
    return None


def _alpha_at(recipe: Recipe, rank: int) -> str:
    """The alpha that keeps the recipe's scale alpha/r at ``rank`` (the rank rules check it)."""
    return f"{recipe.lora.alpha / recipe.lora.r * rank:g}"
