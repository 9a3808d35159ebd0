"""``training.learning_rate: auto``: a LoRA learning rate from the model's size.

The best LoRA learning rate falls with the model's width. Thinking Machines fitted it as a power
of the hidden size H, with an exponent per model family (Schulman et al. 2025, "LoRA Without
Regret"; tinker-cookbook ``hyperparam_utils.get_lr``, Oct. 2025):

    lr(H) = C * (2000 / H) ** P,   P = 0.781 for Llama, 0.0775 for Qwen,

with C = 5e-4 for their setup (batch 128, hundreds of steps). The exponent is the transferable
part; C depends on the data, the batch and the run's length, so peftkit calibrates C at its own
measurement: 8e-4 was best on SmolLM2-135M-Instruct (a Llama, H = 576) over both recipes' epochs
(docs/benchmarks.md, "Learning rate from the model's size", where the published C's 1.3e-3 is
measured against it). Anchored there, the law gives 1.7e-4 at H = 4096 (7-8B) and 1.0e-4 at
H = 8192 (65-70B), against the QLoRA paper's 2e-4 (7B, 13B) and 1e-4 (33B, 65B): the table in
docs/learning-rates.md. Full fine-tuning learns at a tenth of LoRA's rate (LoRA Without Regret).

Families without a published exponent (Mistral, Gemma, Phi, GPT-2, ...) use Llama's: it is the
one fitted on a dense decoder family across widths (Qwen's is nearly flat), and the reason says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from peftkit.core.errors import RecipeError

PUBLISHED_WIDTH = 2000
"""The hidden size at which Tinker's law gives its constant."""
PUBLISHED_CONSTANT = 5e-4
"""Tinker's LoRA rate at hidden size 2000 (5e-5 for full fine-tuning, times 10 for LoRA)."""
EXPONENTS = {"llama": 0.781, "qwen2": 0.0775, "qwen3": 0.0775, "qwen2_moe": 0.0775}
"""Published exponents by ``model_type`` (tinker-cookbook ``get_lr``)."""
FALLBACK_FAMILY = "llama"
ANCHOR_WIDTH = 576
ANCHOR_RATE = 8e-4
"""peftkit's measured best LoRA rate on SmolLM2-135M-Instruct (hidden size 576, a Llama)."""
FULL_DIVISOR = 10
"""LoRA's best rate is about 10x full fine-tuning's (LoRA Without Regret)."""
CONSTANT = ANCHOR_RATE / (PUBLISHED_WIDTH / ANCHOR_WIDTH) ** EXPONENTS["llama"]
"""The law's constant calibrated at peftkit's measurement (3.0e-4, against Tinker's 5e-4)."""


@dataclass(frozen=True)
class AutoRate:
    """The rate ``auto`` gives a model, and the rule that gave it (for summaries and comments)."""

    value: float
    why: str


def exponent(family: str) -> tuple[float, bool]:
    """The family's exponent, and whether it is published (else Llama's stands in)."""
    if family in EXPONENTS:
        return EXPONENTS[family], True
    return EXPONENTS[FALLBACK_FAMILY], False


def law(hidden: int, family: str, constant: float = CONSTANT) -> float:
    """The law's rate at ``hidden``, unrounded (``constant``: Tinker's published one, or
    peftkit's calibration)."""
    power, _ = exponent(family)
    return constant * (PUBLISHED_WIDTH / hidden) ** power


def auto_rate(hidden: int, family: str, method: str = "lora") -> AutoRate:
    """The learning rate ``auto`` stands for on a model of width ``hidden`` and ``family``
    (its config's ``model_type``), rounded to two significant digits."""
    value = law(hidden, family)
    if method == "full":
        value /= FULL_DIVISOR
    power, published = exponent(family)
    source = (
        f"{family}'s exponent {power:g} (LoRA Without Regret)"
        if published
        else f"no published exponent for {family}: Llama's {power:g}"
    )
    why = (
        f"auto: {ANCHOR_RATE:g} measured at hidden size {ANCHOR_WIDTH} (SmolLM2-135M), scaled "
        f"to hidden size {hidden} by ({ANCHOR_WIDTH}/{hidden})^p with {source}"
    )
    if method == "full":
        why += f"; full fine-tuning learns at 1/{FULL_DIVISOR} of LoRA's rate"
    return AutoRate(_two_digits(value), why)


def _two_digits(value: float) -> float:
    digits = 1 - math.floor(math.log10(value))
    return round(value, digits)


HIDDEN_KEYS = ("hidden_size", "n_embd", "d_model")


def model_width(config: Mapping[str, Any], name: str) -> tuple[int, str]:
    """(hidden size, model_type) from a model config, or a RecipeError saying what to do."""
    text = config.get("text_config")
    if isinstance(text, Mapping) and not any(key in config for key in HIDDEN_KEYS):
        config = text
    family = config.get("model_type")
    hidden = next((config[key] for key in HIDDEN_KEYS if key in config), None)
    if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
        raise RecipeError(
            f"training.learning_rate: auto takes the rate from the model's hidden size, and the "
            f"config of {name} has none ({'/'.join(HIDDEN_KEYS)}). Fix: set "
            "training.learning_rate to a number, e.g. 2e-4"
        )
    return hidden, family if isinstance(family, str) else "unknown"
