"""The ``lora`` section: the adapter's shape (rank, scaling, where it attaches)."""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_core import InitErrorDetails

from peftkit.core.errors import PeftkitWarning, raise_all, rule_error
from peftkit.core.limits import MAX_RANK
from peftkit.recipes.foreign_keys import suggestions
from peftkit.recipes.keywords import PassThrough, extra_field

ATTENTION_ONLY = frozenset(
    {"q_proj", "k_proj", "v_proj", "o_proj", "c_attn", "query_key_value", "qkv_proj", "Wqkv"}
)
"""Module names of attention projections across the common architectures."""
OUTPUT_LAYERS = frozenset({"lm_head", "embed_out", "output"})
"""Names of the output head that TRL refuses to put an adapter on."""

# alpha/r (alpha/sqrt(r) with rsLoRA) is the factor the adapter's update is scaled by. Published
# recipes sit between 0.25 (QLoRA: r=64, alpha=16) and 4 (PEFT example: r=8, alpha=32); far
# outside that the update is either invisible or blows up the first steps.
SCALE_USUAL = (0.25, 4.0)
SCALE_LIMITS = (1 / 16, 16.0)


class LoraSection(PassThrough):
    """The LoRA adapter. Ignored by ``method: full``."""

    TARGET = "lora"

    SUGGEST: ClassVar[dict[str, str]] = suggestions(
        "lora", rank="r", target="target_modules", targets="target_modules"
    )

    r: int = Field(16, ge=1, le=MAX_RANK, description="Rank of the low-rank update matrices.")
    alpha: float = Field(
        32.0,
        gt=0,
        description="Scaling numerator: the update is scaled by alpha/r "
        "(alpha/sqrt(r) with rsLoRA).",
    )
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: Literal["all-linear"] | tuple[str, ...] = Field(
        "all-linear",
        description=(
            "Modules that get an adapter: 'all-linear' (every linear layer but the output head) "
            "or a list of module names such as [q_proj, v_proj]."
        ),
    )
    use_rslora: bool = Field(
        False, description="Rank-stabilised LoRA: scale by alpha/sqrt(r) so high ranks learn."
    )
    use_dora: bool = Field(
        False, description="DoRA: learn magnitude and direction separately (slower per step)."
    )
    bias: Literal["none", "all", "lora_only"] = Field(
        "none", description="Which biases train along with the adapter."
    )
    modules_to_save: tuple[str, ...] = Field(
        (),
        description="Modules trained in full and saved with the adapter "
        "(e.g. lm_head, embed_tokens).",
    )

    @classmethod
    def _prepare(cls, data: dict[str, Any]) -> tuple[dict[str, Any], list[InitErrorDetails]]:
        """A comma-separated string (what a command line gives) is a list the user meant."""
        data, errors = super()._prepare(data)
        targets = data.get("target_modules")
        if isinstance(targets, str) and targets != "all-linear":
            names = [name.strip() for name in targets.split(",") if name.strip()]
            errors.append(
                rule_error(
                    ["target_modules"],
                    targets,
                    "a list of module names, or 'all-linear'",
                    f"set lora.target_modules=[{','.join(names)}], or "
                    "lora.target_modules=all-linear",
                )
            )
            data = {key: value for key, value in data.items() if key != "target_modules"}
        return data, errors

    @property
    def scale(self) -> float:
        """The factor the adapter's update is multiplied by."""
        return self.alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    @property
    def usual_alpha(self) -> float:
        """The alpha that gives a scale of 2 (alpha = 2r, or 2*sqrt(r) with rsLoRA)."""
        return round(2 * (math.sqrt(self.r) if self.use_rslora else self.r), 1)

    @property
    def scale_formula(self) -> str:
        return "alpha/sqrt(r)" if self.use_rslora else "alpha/r"

    @property
    def attention_only(self) -> bool:
        return self.target_modules != "all-linear" and set(self.target_modules) <= ATTENTION_ONLY

    extra: dict[str, Any] = extra_field(
        "LoraConfig",
        "init_lora_weights such as pissa or olora, layers_to_transform, rank_pattern, ...",
    )

    @model_validator(mode="after")
    def _check(self) -> LoraSection:
        errors = []
        heads = [t for t in self.target_modules if t in OUTPUT_LAYERS]
        if self.target_modules != "all-linear" and heads:
            kept = [t for t in self.target_modules if t not in OUTPUT_LAYERS]
            targets = f"[{','.join(kept)}]" if kept else "all-linear"
            errors.append(
                rule_error(
                    ["target_modules"],
                    list(self.target_modules),
                    f"TRL's SFTTrainer refuses a LoRA adapter on the output head "
                    f"({', '.join(heads)}); it can be trained in full instead",
                    f"set lora.target_modules={targets} lora.modules_to_save=[{','.join(heads)}]",
                )
            )
        if self.target_modules != "all-linear" and not self.target_modules:
            errors.append(
                rule_error(
                    ["target_modules"],
                    [],
                    "no module would get an adapter",
                    "set lora.target_modules=all-linear",
                )
            )
        low, high = SCALE_LIMITS
        if not low <= self.scale <= high:
            errors.append(
                rule_error(
                    ["alpha"],
                    self.alpha,
                    f"{self.scale_formula} = {self.scale:.3g} with r={self.r}; outside "
                    f"[{low:g}, {high:g}] the update is either negligible or unstable",
                    f"set lora.alpha={self.usual_alpha:g} (a scale of 2)",
                )
            )
        raise_all(type(self).__name__, errors)
        self._warn_doubts()
        return self

    def _warn_doubts(self) -> None:
        """Legal settings that are rarely right, each with what usually is."""
        usual_low, usual_high = SCALE_USUAL
        if not usual_low <= self.scale <= usual_high:
            warnings.warn(
                f"lora.alpha: {self.scale_formula} = {self.scale:.3g} is outside the usual "
                f"[{usual_low:g}, {usual_high:g}]; lora.alpha={self.usual_alpha:g} gives the usual "
                "scale of 2.",
                PeftkitWarning,
                stacklevel=3,
            )
        if self.attention_only:
            warnings.warn(
                "lora.target_modules: attention projections only. Adapters on every linear layer "
                "match full fine-tuning far better (Dettmers et al. 2023, QLoRA, sec. 4); use "
                "'all-linear' unless memory forbids it.",
                PeftkitWarning,
                stacklevel=3,
            )
        if self.r > 256:
            warnings.warn(
                f"lora.r={self.r}: ranks above 256 cost memory and rarely help; "
                "consider lora.r=128 with lora.use_rslora=true.",
                PeftkitWarning,
                stacklevel=3,
            )
