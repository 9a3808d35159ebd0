"""The base ``Recipe``: its sections, the rules that span sections, and its builders.

Rules that involve one section live in that section; rules that relate sections to each other
live here, in :meth:`Recipe.problems`, which a recipe subclass extends with its own. All of them
are checked together and reported in one ``ValidationError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_core import InitErrorDetails

from peftkit.callbacks.settings import CallbackSettings
from peftkit.core.errors import RecipeError, raise_all, warn
from peftkit.core.formats import DataFormat, describe_formats
from peftkit.core.section import Section
from peftkit.memory.peak import Method
from peftkit.recipes.data_section import TEXT_HAS_NO_COMPLETION, DataSection, restricts_text
from peftkit.recipes.distributed import DistributedSection
from peftkit.recipes.lora import LoraSection
from peftkit.recipes.model import ModelSection
from peftkit.recipes.quantization import QuantizationSection
from peftkit.recipes.rules import DOUBTS, RULES
from peftkit.recipes.training import TrainingSection

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from peft import LoraConfig
    from transformers import BitsAndBytesConfig, TrainerCallback
    from trl import SFTConfig

    from peftkit.memory import Breakdown, ModelShape, Plan, Setup
    from peftkit.recipes.budget import BudgetSection
    from peftkit.recipes.resolution import Resolved


@dataclass(frozen=True)
class DataMisfit:
    """A data format a recipe cannot train on: the field that decides it, the rule, and the fix
    in the recipe (a declared format) or in the data (a detected one)."""

    field: tuple[str, ...]
    value: Any
    rule: str
    recipe_fix: str
    data_fix: str


@dataclass(frozen=True)
class AnswerChecks:
    """How a run scores the answers a recipe's model generates: held-out prompts answered
    before and after training (``samples``) and at each evaluation (``during_training``), and
    the JSON Schema the answers must satisfy."""

    samples: int
    max_new_tokens: int
    batch_size: int
    during_training: int
    schema: dict[str, Any] | None


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

    @classmethod
    def _foreign_key(cls, key: str, value: Any) -> InitErrorDetails | None:
        """A TRL or axolotl key pasted at the top: where it lives here, value converted."""
        from peftkit.recipes.foreign_keys import unknown_key_error

        return unknown_key_error(cls, key, value)

    @model_validator(mode="after")
    def _check_rules(self) -> Recipe:
        raise_all(type(self).__name__, self.problems())
        for doubt in self.doubts():
            warn(doubt)
        return self

    @property
    def has_eval_data(self) -> bool:
        return self.training.eval_fraction > 0 or self.data.eval_path is not None

    def problems(self) -> list[InitErrorDetails]:
        """Contradictions between sections (:mod:`peftkit.recipes.rules`). A subclass adds its
        own to this list."""
        return [found for rule in RULES for found in rule(self)]

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
        if restricts_text(fmt, self.data.completion_only_loss):
            return DataMisfit(
                ("data", "completion_only_loss"),
                True,
                TEXT_HAS_NO_COMPLETION,
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

    def answer_checks(self) -> AnswerChecks | None:
        """How a run scores generated answers, or None for a recipe whose runs generate none
        (their loss and perplexity are all there is)."""
        return None

    def gpu_budget(self) -> BudgetSection | None:
        """The GPU budget the planner fits the run to, choosing its settings; None for a recipe
        whose settings the planner checks as written."""
        return None

    def doubts(self) -> list[str]:
        """Legal but doubtful choices, each with the reason; emitted as PeftkitWarning."""
        return [found for doubt in DOUBTS for found in doubt(self)]

    # --- memory: the recipe as the planner sees it (peftkit.recipes.planning) ---------------

    def setup(self, gpus: int = 1, checkpoint_dtype: str = "bfloat16") -> Setup:
        """The memory-relevant settings of this recipe, for :func:`peftkit.memory.estimate`."""
        from peftkit.recipes.planning import setup_of

        return setup_of(self, gpus, checkpoint_dtype)

    def estimate(self, model: Any, gpus: int = 1) -> Breakdown:
        """The peak-memory breakdown on ``model`` (a config.json path, a model folder, a
        transformers config, a mapping or a :class:`~peftkit.memory.ModelShape`)."""
        from peftkit.memory import estimate

        shape = _shape(model)
        return estimate(shape, self.setup(gpus, shape.checkpoint_dtype))

    def plan(self, model: Any, gpu_memory_gb: float | None = None, gpus: int | None = None) -> Plan:
        """Whether this recipe fits the GPU budget (the recipe's ``budget`` section, or the
        arguments, which outrank it) on ``model``, and with a budget section, the settings that
        fit and train fastest, with the cost. Apply the choice with
        ``recipes.load(..., overrides=plan.overrides())``."""
        from peftkit.memory import plan
        from peftkit.recipes.planning import budget_of, request_of

        shape = _shape(model)
        budget = budget_of(self, gpu_memory_gb, gpus)
        return plan(shape, request_of(self, budget.gpus, shape.checkpoint_dtype), budget)

    # --- builders: pure functions of the recipe; heavy imports happen only here ---------------

    def build_lora_config(self, **overrides: Any) -> LoraConfig | None:
        """The ``peft.LoraConfig``; None for ``method: full``, which trains every weight.

        ``overrides`` use LoraConfig's names: one the recipe models (``r``, ``lora_alpha``,
        ``target_modules``, ...) is checked as that field, with the recipe's messages, and wins;
        any other LoraConfig field (``init_lora_weights``, ``layers_to_transform``) is checked
        against LoraConfig's type and passed through, as ``lora.extra`` is."""
        from peftkit.recipes import build

        return build.lora_config(self, **overrides)

    def build_bnb_config(self, model: Any = None, **overrides: Any) -> BitsAndBytesConfig | None:
        """The ``transformers.BitsAndBytesConfig``, or None when the base is not quantized; its
        compute dtype resolved for this machine. ``overrides`` use BitsAndBytesConfig's names,
        as for :meth:`build_lora_config` (``quantization.extra`` in a recipe)."""
        from peftkit.recipes import build

        return build.bnb_config(self, model, **overrides)

    def build_sft_config(
        self, output_dir: str | Path, model: Any = None, dataset: Any = None, **overrides: Any
    ) -> SFTConfig:
        """The ``trl.SFTConfig``, resolved for this machine, ``model`` (a loaded model, its
        config, or a path; default: ``model.name``, read from a local folder or the Hugging
        Face cache, which ``learning_rate: auto`` needs) and ``dataset`` (the training data:
        its format decides how the loss is kept to the answers; needed with ``data.format:
        auto``).

        ``overrides`` use SFTConfig's names and win: one the recipe models (``learning_rate``,
        ``gradient_checkpointing``, ``num_train_epochs``, ``bf16``, ...) is checked as that
        field, with the messages of ``peftkit validate``; any other SFTConfig field
        (``neftune_noise_alpha``) is checked against SFTConfig's type and passed through, as
        ``training.extra`` is."""
        from peftkit.recipes import build

        return build.sft_config(self, output_dir, model, dataset, **overrides)

    def model_kwargs(self, model: Any = None) -> dict[str, Any]:
        """Keyword arguments for ``AutoModelForCausalLM.from_pretrained(recipe.model.name,
        **recipe.model_kwargs())``: the weights' dtype for this machine (fp32 on a CPU without
        native bf16, where the checkpoint's bf16 would be emulated), the attention, the
        quantization and remote code."""
        from peftkit.recipes import build

        return build.model_kwargs(self, model)

    def resolve(self, model: Any = None) -> Resolved:
        """What every ``auto`` of this recipe becomes on this machine and ``model``, each with
        its reason (:mod:`peftkit.recipes.resolution`)."""
        from peftkit.recipes.resolution import resolve

        return resolve(self, model)

    def build_callbacks(self, best_adapter_dir: str | Path | None = None) -> list[TrainerCallback]:
        """The enabled peftkit callbacks with this recipe's settings, for any Trainer.

        ``best_adapter_dir`` is where early stopping saves the best adapter when the recipe's
        ``save_best_to`` does not say.
        """
        from peftkit.recipes import build

        return build.callbacks(self, best_adapter_dir)

    def to_yaml(self, notes: Mapping[str, str] | None = None) -> str:
        """The whole recipe as YAML; ``recipes.load`` reads it back to an equal recipe.
        ``notes``: comments after fields, by dotted path."""
        from peftkit.recipes import files

        return files.to_yaml(self, notes)


def _shape(model: Any) -> ModelShape:
    """``model`` as a ModelShape, read from its config unless it is one."""
    from peftkit.memory import ModelShape, read_config, shape_of

    return model if isinstance(model, ModelShape) else shape_of(read_config(model))
