"""``QLoRABudget``: 4-bit QLoRA, for fine-tuning a large model on a small GPU budget."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_core import InitErrorDetails

from peftkit.core.errors import rule_error
from peftkit.core.section import with_defaults
from peftkit.memory.peak import Method
from peftkit.recipes.base import Recipe, section
from peftkit.recipes.budget import BudgetSection
from peftkit.recipes.lora import LoraSection
from peftkit.recipes.quantization import QuantizationSection
from peftkit.recipes.training import TrainingSection

_Lora = with_defaults(
    LoraSection, "QLoRABudgetLora", LoraSection.__doc__ or "", r=64, alpha=16.0, dropout=0.1
)
_Quantization = with_defaults(
    QuantizationSection, "QLoRABudgetQuantization", QuantizationSection.__doc__ or "", bits=4
)
_Training = with_defaults(
    TrainingSection,
    "QLoRABudgetTraining",
    TrainingSection.__doc__ or "",
    learning_rate="auto",
    lr_scheduler="constant_with_warmup",
    max_grad_norm=0.3,
    optimizer="paged_adamw_32bit",
    activation_checkpointing=True,
)


class QLoRABudget(Recipe):
    """4-bit QLoRA: the largest model a GPU (or a dollar budget) allows.

    Use it when the model in 16-bit would not fit the GPU for training, or when a cheaper GPU is
    the point. The base weights are stored in 4-bit NF4 and stay frozen; only the adapter trains.

    Why the defaults (all from Dettmers et al. 2023, "QLoRA", sec. 3-5 and appendix B):

    - ``quantization: bits=4, nf4, double_quant``: NF4 with double quantization matches 16-bit
      fine-tuning quality at ~4.5 bits per parameter; the compute dtype follows the precision
      (bfloat16 where the GPU has it, float16 on a T4).
    - ``lora.r=64, alpha=16, dropout=0.1`` on ``all-linear``: the paper's setting for models up
      to 13B; adapters on every linear layer are what closes the gap to 16-bit.
    - ``learning_rate=auto``: the paper's rates fall with size, 2e-4 for 7B and 13B, 1e-4 for
      33B and 65B; peftkit's size law gives 1.7e-4, 1.5e-4, 1.2e-4 and 1.0e-4 for those widths
      (docs/learning-rates.md), within 0.75-1.2x of each, where a fixed 2e-4 is twice the
      paper's rate from 33B on.
    - constant schedule, ``max_grad_norm=0.3``: the paper's hyperparameters. The paper's
      scripts pass ``warmup_ratio 0.03`` with ``lr_scheduler_type constant``, whose warmup
      transformers silently ignores; ``constant_with_warmup`` does what they asked for (3%
      warmup, then constant).
    - ``optimizer=paged_adamw_32bit``: paged optimizer states absorb memory spikes from long
      sequences instead of failing with out-of-memory.
    - ``activation_checkpointing=true``: trades a forward pass more per step (the planner's
      time model counts it) for the activation memory that otherwise dominates at small
      budgets.

    ``budget`` names the GPU (memory, count, price) and the data size; :meth:`plan` (and
    ``peftkit plan``) then chooses micro-batch, gradient accumulation, activation checkpointing,
    rank and length that fit with headroom and train fastest, and estimates time and cost.
    """

    recipe: Literal["qlora-budget"] = Field(  # type: ignore[assignment]
        "qlora-budget", description="Which recipe this is."
    )
    method: Method = Field("qlora", description="Always 'qlora' for this recipe.")
    lora: _Lora = section(_Lora)  # type: ignore[valid-type]
    quantization: _Quantization = section(_Quantization)  # type: ignore[valid-type]
    training: _Training = section(_Training)  # type: ignore[valid-type]
    budget: BudgetSection = section(BudgetSection)

    def gpu_budget(self) -> BudgetSection:
        return self.budget

    def problems(self) -> list[InitErrorDetails]:
        found = super().problems()
        if self.method != "qlora":
            found.append(
                rule_error(
                    ["method"],
                    self.method,
                    "the qlora-budget recipe is 4-bit QLoRA",
                    "set method=qlora, or use the json-output or domain-adaptation recipe for LoRA",
                )
            )
        return found
