"""The base ``Recipe``: its sections, the rules that span sections, and its builders.

Rules that involve one section live in that section; rules that relate sections to each other
live here, in :meth:`Recipe.problems`, which a recipe subclass extends with its own. All of them
are checked together and reported in one ``ValidationError``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_core import InitErrorDetails

from peftkit.errors import PeftkitWarning, RecipeError, raise_all, rule_error
from peftkit.recipes.callback_settings import CallbackSettings
from peftkit.recipes.data import DataFormat, DataSection, describe_formats
from peftkit.recipes.distributed import DistributedSection
from peftkit.recipes.lora import LoraSection
from peftkit.recipes.model import ModelSection
from peftkit.recipes.quantization import QuantizationSection
from peftkit.recipes.section import Section
from peftkit.recipes.training import TrainingSection

if TYPE_CHECKING:
    from pathlib import Path

    from peft import LoraConfig
    from transformers import BitsAndBytesConfig, TrainerCallback
    from trl import SFTConfig

Method = Literal["full", "lora", "qlora"]

# Usual peak learning rates. LoRA: 1e-4..3e-4 in the LoRA/QLoRA papers and PEFT examples; 2e-5
# (SFTConfig's default, tuned for full fine-tuning) barely moves an adapter. Full fine-tuning of
# LLMs: 1e-5..5e-5 (InstructGPT, Llama 2 chat, Alpaca).
LEARNING_RATE_USUAL: dict[str, tuple[float, float]] = {
    "full": (1e-6, 1e-4),
    "lora": (5e-5, 1e-3),
    "qlora": (5e-5, 1e-3),
}
MAX_USUAL_EPOCHS = 3


@dataclass(frozen=True)
class DataMisfit:
    """A data format a recipe cannot train on: the field that decides it, the rule, and the fix
    in the recipe (a declared format) or in the data (a detected one)."""

    field: tuple[str, ...]
    value: Any
    rule: str
    recipe_fix: str
    data_fix: str


def section(kind: type[Section]) -> Any:
    """A recipe field holding a section, described by the section's docstring."""
    return Field(default_factory=kind, description=(kind.__doc__ or "").strip())


class Recipe(Section):
    """A custom recipe: every section at its general default. Prefer a built-in recipe."""

    SUGGEST: ClassVar[dict[str, str]] = {
        "peft": "lora",
        "lora_config": "lora",
        "bnb": "quantization",
        "quantization_config": "quantization",
        "sft": "training",
        "sft_config": "training",
        "args": "training",
        "dataset": "data",
    }

    DATA_FORMATS: ClassVar[tuple[DataFormat, ...]] = ("text", "prompt-completion", "messages")
    """The data formats this recipe trains on, the first one preferred."""
    DATA_FORMATS_WHY: ClassVar[str] = ""
    JSON_ANSWERS: ClassVar[bool] = False
    """The answers are JSON: a completion given as a JSON object or array is written as JSON
    text (see ``peftkit.data``)."""

    recipe: Literal["custom"] = Field(
        "custom", description="Which recipe this is; decides the defaults of every other field."
    )
    method: Method = Field(
        "lora",
        description="'lora' trains an adapter, 'qlora' an adapter on a 4-bit base, 'full' every "
        "weight.",
    )
    model: ModelSection = section(ModelSection)
    lora: LoraSection = section(LoraSection)
    quantization: QuantizationSection = section(QuantizationSection)
    training: TrainingSection = section(TrainingSection)
    data: DataSection = section(DataSection)
    callbacks: CallbackSettings = section(CallbackSettings)
    distributed: DistributedSection = section(DistributedSection)

    @model_validator(mode="before")
    @classmethod
    def _model_shorthand(cls, data: Any) -> Any:
        """``model: org/name`` (or ``Recipe(model="org/name")``) means ``model: {name: ...}``."""
        if isinstance(data, dict) and isinstance(data.get("model"), str):
            return {**data, "model": {"name": data["model"]}}
        return data

    @model_validator(mode="after")
    def _check_rules(self) -> Recipe:
        raise_all(type(self).__name__, self.problems())
        for doubt in self.doubts():
            warnings.warn(doubt, PeftkitWarning, stacklevel=2)
        return self

    @property
    def has_eval_data(self) -> bool:
        return self.training.eval_fraction > 0 or self.data.eval_path is not None

    def problems(self) -> list[InitErrorDetails]:
        """Contradictions between sections. Subclasses add theirs to this list."""
        found = []
        q, t = self.quantization, self.training
        if self.method == "qlora" and q.bits != 4:
            found.append(
                rule_error(
                    ["quantization", "bits"],
                    q.bits,
                    "method 'qlora' trains an adapter on a 4-bit base model",
                    "set quantization.bits=4, or method=lora",
                )
            )
        if self.method == "lora" and q.bits == 4:
            found.append(
                rule_error(
                    ["method"],
                    self.method,
                    "LoRA on a 4-bit base model is QLoRA",
                    "set method=qlora",
                )
            )
        if self.method == "full" and q.bits is not None:
            found.append(
                rule_error(
                    ["quantization", "bits"],
                    q.bits,
                    "quantized weights cannot be trained in full",
                    "set quantization.bits=null, or method=qlora with quantization.bits=4",
                )
            )
        uses_bf16 = self.model.dtype == "bfloat16" or (
            q.bits == 4 and q.compute_dtype == "bfloat16"
        )
        if t.precision == "fp16" and uses_bf16:
            found.append(
                rule_error(
                    ["training", "precision"],
                    t.precision,
                    "fp16 mixed precision with bfloat16 weights or compute: the fp16 gradient "
                    "scaler cannot unscale bfloat16 gradients",
                    "set training.precision=bf16 (or auto), or, on GPUs without bf16, "
                    "model.dtype=float16 with quantization.compute_dtype=float16",
                )
            )
        if t.precision == "bf16" and q.bits == 4 and q.compute_dtype == "float16":
            found.append(
                rule_error(
                    ["quantization", "compute_dtype"],
                    q.compute_dtype,
                    "bf16 training with float16 4-bit compute mixes two half-precision formats",
                    "set quantization.compute_dtype=bfloat16",
                )
            )
        if (
            self.distributed.strategy == "fsdp"
            and q.bits == 4
            and q.storage_dtype != q.compute_dtype
        ):
            found.append(
                rule_error(
                    ["quantization", "storage_dtype"],
                    q.storage_dtype,
                    "FSDP shards parameters of one dtype, so 4-bit weights must be stored in the "
                    "compute dtype",
                    f"set quantization.storage_dtype={q.compute_dtype}",
                )
            )
        if t.eval_strategy != "no" and not self.has_eval_data:
            found.append(
                rule_error(
                    ["training", "eval_strategy"],
                    t.eval_strategy,
                    "evaluations are scheduled but there is no evaluation data "
                    "(training.eval_fraction is 0 and data.eval_path is not set)",
                    "set training.eval_fraction=0.1 (or give data.eval_path), or switch "
                    "evaluation and the callbacks that need it off: training.eval_strategy=no "
                    "callbacks.early_stopping.enabled=false callbacks.overfit.enabled=false",
                )
            )
        for name in ("early_stopping", "overfit"):
            if getattr(self.callbacks, name).enabled and t.eval_strategy == "no":
                found.append(
                    rule_error(
                        ["callbacks", name, "enabled"],
                        True,
                        f"the {name.replace('_', ' ')} callback decides at evaluations, and "
                        "training.eval_strategy is 'no'",
                        f"set training.eval_strategy=steps, or callbacks.{name}.enabled=false",
                    )
                )
        stopping = self.callbacks.early_stopping
        if (
            self.method == "full"
            and stopping.enabled
            and stopping.restore_best
            and not stopping.allow_full_copy
        ):
            found.append(
                rule_error(
                    ["callbacks", "early_stopping", "restore_best"],
                    True,
                    "with method 'full', keeping the best weights copies the whole model to CPU "
                    "memory at every improved evaluation (4 bytes per parameter in fp32)",
                    "set callbacks.early_stopping.allow_full_copy=true to accept the cost, or "
                    "callbacks.early_stopping.restore_best=false",
                )
            )
        if self.data.format != "auto":
            misfit = self.data_misfit(self.data.format)
            if misfit is not None:
                found.append(rule_error(misfit.field, misfit.value, misfit.rule, misfit.recipe_fix))
        return found

    def data_misfit(self, fmt: DataFormat) -> DataMisfit | None:
        """Why this recipe cannot train on data of format ``fmt``, or None when it can.

        One rule for a format the recipe declares (checked at validation) and for a format
        detected in the data (:meth:`check_data_format`); only the fix differs.
        """
        if fmt not in self.DATA_FORMATS:
            wanted = " or ".join(self.DATA_FORMATS)
            return DataMisfit(
                ("data", "format"),
                fmt,
                f"the {self.recipe} recipe trains on {wanted} data: {self.DATA_FORMATS_WHY}",
                f"set data.format={self.DATA_FORMATS[0]}",
                f"give {describe_formats(self.DATA_FORMATS)} rows",
            )
        if fmt == "text" and self.data.completion_only_loss:
            return DataMisfit(
                ("data", "completion_only_loss"),
                True,
                "raw text has no completion to restrict the loss to",
                "set data.completion_only_loss=false",
                f"give {describe_formats(('prompt-completion', 'messages'))} rows, or set "
                "data.completion_only_loss=false",
            )
        return None

    def check_data_format(self, fmt: DataFormat, where: str) -> None:
        """Refuse data found to be of format ``fmt`` that this recipe cannot train on."""
        misfit = self.data_misfit(fmt)
        if misfit is not None:
            raise RecipeError(
                f"data '{where}' is {fmt} data, and {misfit.rule}. Fix: {misfit.data_fix}."
            )

    def train_metrics(self) -> tuple[str, ...]:
        """The evaluation metrics ``peftkit train`` produces with this recipe."""
        return ("eval_loss",)

    def metric_fix(self, metric: str) -> str:
        """What makes early stopping on ``metric`` work, when ``peftkit train`` does not produce
        it with this recipe."""
        return "set callbacks.early_stopping.metric=eval_loss"

    def doubts(self) -> list[str]:
        """Legal but doubtful choices, each with the reason; emitted as PeftkitWarning."""
        found = []
        t = self.training
        low, high = LEARNING_RATE_USUAL[self.method]
        if not low <= t.learning_rate <= high:
            found.append(
                f"training.learning_rate={t.learning_rate:g} is outside the usual "
                f"[{low:g}, {high:g}] for method '{self.method}'; too low barely trains, too "
                "high diverges."
            )
        if t.max_steps is None and t.epochs > MAX_USUAL_EPOCHS:
            found.append(
                f"training.epochs={t.epochs:g}: more than {MAX_USUAL_EPOCHS} passes over the same "
                "data usually overfits; keep early stopping on and watch the eval loss."
            )
        if t.max_steps is not None:
            found += _short_run_doubts(t.max_steps, t)
        if t.max_grad_norm == 0:
            found.append(
                "training.max_grad_norm=0 switches gradient clipping off; one bad batch can then "
                "wreck the adapter. The usual value is 1.0 (0.3 in QLoRA)."
            )
        return found

    # --- builders: pure functions of the recipe; heavy imports happen only here ---------------

    def build_lora_config(self) -> LoraConfig | None:
        """The ``peft.LoraConfig``; None for ``method: full``, which trains every weight."""
        from peftkit.recipes import build

        return build.lora_config(self)

    def build_bnb_config(self) -> BitsAndBytesConfig | None:
        """The ``transformers.BitsAndBytesConfig``, or None when the base is not quantized."""
        from peftkit.recipes import build

        return build.bnb_config(self)

    def build_sft_config(self, output_dir: str | Path, **overrides: Any) -> SFTConfig:
        """The ``trl.SFTConfig``, resolved for this machine; ``overrides`` win over the recipe."""
        from peftkit.recipes import build

        return build.sft_config(self, output_dir, **overrides)

    def build_callbacks(self, best_adapter_dir: str | Path | None = None) -> list[TrainerCallback]:
        """The enabled peftkit callbacks with this recipe's settings, for any Trainer.

        ``best_adapter_dir`` is where early stopping saves the best adapter when the recipe's
        ``save_best_to`` does not say.
        """
        from peftkit.recipes import build

        return build.callbacks(self, best_adapter_dir)

    def to_yaml(self) -> str:
        """The whole recipe as YAML; ``recipes.load`` reads it back to an equal recipe."""
        from peftkit.recipes import files

        return files.to_yaml(self)


def _short_run_doubts(max_steps: int, t: TrainingSection) -> list[str]:
    """Cadences longer than the run: nothing would be logged or evaluated."""
    found = []
    if t.logging_steps > max_steps:
        found.append(
            f"training.logging_steps={t.logging_steps} is more than the {max_steps} steps of "
            "the run: no training loss is logged, so overfit detection and the plot have none. "
            f"Set training.logging_steps={max_steps} or less."
        )
    every = t.eval_steps or t.logging_steps
    if t.eval_strategy == "steps" and every > max_steps:
        found.append(
            f"evaluations every {every} steps never come in a run of {max_steps} steps, so early "
            f"stopping never acts. Set training.eval_steps={max_steps} or less."
        )
    return found
