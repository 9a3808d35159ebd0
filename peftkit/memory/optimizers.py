"""The optimizers a recipe trains with, and what each means for memory and for the install: one
table for the recipe's ``training.optimizer``, the memory estimate, the planner's fallback,
the builder's bitsandbytes check and `peftkit estimate --optimizer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class OptimizerFacts:
    """What the estimate and the builder need to know of one optimizer.

    ``state_bytes``: bytes of state per trainable parameter; None for AdamW in torch, which
    keeps two states in the parameter's own dtype. ``eight_bit``: bitsandbytes' blockwise 8-bit
    states (Dettmers et al. 2022). ``bitsandbytes``: the optimizer is bitsandbytes'.
    """

    state_bytes: int | None
    eight_bit: bool = False
    bitsandbytes: bool = False


OPTIMIZERS: dict[str, OptimizerFacts] = {
    "adamw_torch": OptimizerFacts(None),
    "adamw_torch_fused": OptimizerFacts(None),
    "adamw_8bit": OptimizerFacts(2, eight_bit=True, bitsandbytes=True),
    "paged_adamw_8bit": OptimizerFacts(2, eight_bit=True, bitsandbytes=True),
    "paged_adamw_32bit": OptimizerFacts(8, bitsandbytes=True),
    "adafactor": OptimizerFacts(0),  # factored states: counted as none
    "sgd": OptimizerFacts(0),
}
"""Every optimizer a recipe takes, by its SFTConfig name (``optim``)."""

OptimizerName = Literal[tuple(OPTIMIZERS)]  # type: ignore[valid-type]
"""The names, as the type ``training.optimizer`` is validated against."""

SMALLER_STATES = "paged_adamw_8bit"
"""What the planner switches to when nothing fits with the recipe's optimizer's states."""
