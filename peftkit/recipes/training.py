"""The ``training`` section: optimisation, precision, length and evaluation cadence.

Field names follow current ``trl.SFTConfig`` where it has one (``max_length``, ``warmup_steps``,
``eval_strategy``, ``activation_checkpointing``); the names older releases used are accepted and
mapped with a warning, because they are what blog posts still show.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_core import InitErrorDetails

from peftkit.core.errors import RecipeError, raise_all, rule_error
from peftkit.core.limits import (
    LONGEST_SEQUENCE,
    MAX_ACCUMULATION,
    MAX_BATCH,
    SHORTEST_SEQUENCE,
)
from peftkit.core.section import auto_or
from peftkit.memory.optimizers import OptimizerName
from peftkit.memory.planner import recompute_share
from peftkit.recipes.foreign_keys import renamed, suggestions
from peftkit.recipes.keywords import PassThrough, extra_field

Precision = Literal["auto", "bf16", "fp16", "fp32"]
Tracker = Literal["tensorboard", "wandb", "mlflow", "trackio", "none"]
TRACKER_PACKAGES = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "trackio": "trackio",
}
"""The package each tracker needs; the Trainer's integration for it fails without."""
Rate = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
"""A learning rate: a finite number in (0, 1)."""
Scheduler = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
]


class TrainingSection(PassThrough):
    """How the adapter (or model) is trained and evaluated."""

    TARGET = "sft"

    RENAMED: ClassVar[dict[str, str]] = renamed("training")
    SUGGEST: ClassVar[dict[str, str]] = suggestions(
        "training", lr="learning_rate", seq_len="max_length"
    )

    learning_rate: auto_or(Rate) = Field(  # type: ignore[valid-type]
        2e-4,
        examples=[2e-4],
        description="Peak learning rate; 'auto' takes it from the model's hidden size "
        "(peftkit.recipes.learning_rate), wherever the recipe meets a model.",
    )
    epochs: float = Field(
        1.0,
        gt=0,
        le=1000,
        description="Passes over the training data (ignored if max_steps is set).",
    )
    max_steps: int | None = Field(
        None, ge=1, description="Optimizer steps to train for; overrides epochs when set."
    )
    batch_size: int = Field(
        4, ge=1, le=MAX_BATCH, description="Examples per device per forward pass."
    )
    gradient_accumulation_steps: int = Field(
        4, ge=1, le=MAX_ACCUMULATION, description="Forward passes per optimizer step."
    )
    max_length: int = Field(
        1024,
        ge=SHORTEST_SEQUENCE,
        le=LONGEST_SEQUENCE,
        description="Tokens per example; longer ones are truncated.",
    )
    packing: bool = Field(
        False, description="Pack several examples into each sequence (no padding is wasted)."
    )
    lr_scheduler: Scheduler = Field("cosine", description="Learning-rate schedule after warmup.")
    warmup_steps: float = Field(
        0.03,
        ge=0,
        description="Warmup length: a value in [0, 1) is a fraction of all steps, "
        ">= 1 a step count.",
    )
    max_grad_norm: float = Field(
        1.0, ge=0, description="Clip the gradient norm to this value; 0 switches clipping off."
    )
    weight_decay: float = Field(0.0, ge=0, lt=1, description="Decoupled weight decay (AdamW).")
    optimizer: OptimizerName = Field(
        "adamw_torch", description="Optimizer; 8-bit and paged variants need bitsandbytes."
    )
    precision: Precision = Field(
        "auto",
        description="Mixed precision; 'auto' picks bf16 where the hardware has it, else fp16 on "
        "GPU or fp32 on CPU (model.dtype and quantization.compute_dtype 'auto' follow it).",
    )
    liger: auto_or(bool) = Field(  # type: ignore[valid-type]
        "auto",
        examples=[False],
        description="Liger's Triton kernels (use_liger_kernel); 'auto' turns them on where the "
        "liger-kernel package and a CUDA GPU are there.",
    )
    activation_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass: less memory, and one more "
        f"forward pass ({recompute_share('lora'):.0%} more compute for an adapter, "
        f"{recompute_share('full'):.0%} in full fine-tuning).",
    )
    seed: int = Field(
        42,
        ge=0,
        le=2**32 - 1,
        description="Seed for weights init, shuffling and the eval split (numpy takes at most "
        "2**32 - 1).",
    )
    eval_fraction: float = Field(
        0.1,
        ge=0,
        le=0.5,
        description="Share of the training data held out for evaluation when no eval "
        "data is given.",
    )
    eval_strategy: Literal["no", "steps", "epoch"] = Field(
        "steps", description="When to evaluate: every eval_steps steps, every epoch, or never."
    )
    eval_steps: int | None = Field(
        None, ge=1, description="Steps between evaluations (default: logging_steps)."
    )
    logging_steps: int = Field(10, ge=1, description="Steps between training-loss log lines.")
    report_to: list[Tracker] = Field(
        ["none"],
        description="Where the Trainer sends its logs (TensorBoard writes to OUTPUT/logs); "
        "'none' for nowhere. A single name is taken as a list of one.",
    )
    run_name: str | None = Field(
        None, min_length=1, description="The run's name in the trackers (default: theirs)."
    )
    save: Literal["none", "steps", "best"] = Field(
        "none",
        description="Checkpoints in OUTPUT/checkpoints for --resume: none, every save_steps "
        "steps, or at each evaluation that improves the early-stopping metric.",
    )
    save_steps: int | None = Field(
        None,
        ge=1,
        description="Steps between checkpoints (default: eval_steps, else logging_steps); "
        "setting it (or save_total_limit) turns save: none into save: steps.",
    )
    save_total_limit: int | None = Field(
        None, ge=1, description="Checkpoints kept; older ones are deleted (default: all)."
    )

    @classmethod
    def _prepare(cls, data: dict[str, Any]) -> tuple[dict[str, Any], list[InitErrorDetails]]:
        """``warmup_ratio`` (the old name) is a share of the run, which ``warmup_steps`` is only
        below 1: a ratio of 1 or more would silently become a number of steps."""
        ratio = data.get("warmup_ratio")
        data, found = super()._prepare(data)
        if isinstance(ratio, int | float) and not isinstance(ratio, bool) and ratio >= 1:
            data = {key: value for key, value in data.items() if key != "warmup_steps"}
            found.append(
                rule_error(
                    ["warmup_ratio"],
                    ratio,
                    "a warmup ratio is a share of the run's steps, and warmup_steps reads 1 or "
                    "more as a number of steps",
                    "set training.warmup_steps to a ratio below 1 (e.g. 0.1) or to a number "
                    "of steps",
                )
            )
        return data, found

    extra: dict[str, Any] = extra_field(
        "SFTConfig", "neftune_noise_alpha, dataloader_num_workers, ..."
    )

    @model_validator(mode="before")
    @classmethod
    def _one_tracker_is_a_list(cls, data: Any) -> Any:
        """``report_to: tensorboard`` is what SFTConfig takes too."""
        if isinstance(data, dict) and isinstance(data.get("report_to"), str):
            return {**data, "report_to": [data["report_to"]]}
        return data

    @model_validator(mode="after")
    def _check_saving(self) -> TrainingSection:
        """Checkpoint and tracker settings that would be ignored, or could not work."""
        errors = []
        if self.save == "none" and (self.save_steps or self.save_total_limit) is not None:
            # What saving every N steps, or keeping N checkpoints, asks for (a recipe file
            # spells out save: none, so "not set" cannot tell).
            object.__setattr__(self, "save", "steps")
        if self.save == "best" and self.eval_strategy == "no":
            errors.append(
                rule_error(
                    ["save"],
                    self.save,
                    "'best' saves at evaluations that improve, and eval_strategy=no has none",
                    "set training.save=steps",
                )
            )
        repeated = sorted({name for name in self.report_to if self.report_to.count(name) > 1})
        if repeated:
            errors.append(
                rule_error(
                    ["report_to"],
                    list(self.report_to),
                    f"{', '.join(repeated)} listed more than once: the Trainer would log every "
                    "value to it once per listing",
                    f"set training.report_to=[{','.join(dict.fromkeys(self.report_to))}]",
                )
            )
        elif "none" in self.report_to and len(self.report_to) > 1:
            kept = [name for name in self.report_to if name != "none"]
            errors.append(
                rule_error(
                    ["report_to"],
                    list(self.report_to),
                    "'none' means no tracker, so it cannot be combined with others",
                    f"set training.report_to=[{','.join(kept)}]",
                )
            )
        raise_all(type(self).__name__, errors)
        return self

    def check_trackers(self) -> None:
        """Each tracker's package is installed: the Trainer's integration fails without it, in
        the middle of building the trainer (the run and the library check it before)."""
        import importlib.util

        for tracker in self.trackers:
            if importlib.util.find_spec(TRACKER_PACKAGES[tracker]) is None:
                raise RecipeError(
                    f"training.report_to: {tracker} needs the {TRACKER_PACKAGES[tracker]} "
                    "package, which is not installed. Fix: set training.report_to=none, or pip "
                    f"install {TRACKER_PACKAGES[tracker]}."
                )

    @property
    def trackers(self) -> list[str]:
        """The trackers the run reports to; empty for none."""
        return [name for name in self.report_to if name != "none"]

    @property
    def save_every(self) -> int:
        """Steps between checkpoints with save: steps."""
        return self.save_steps or self.eval_steps or self.logging_steps

    @model_validator(mode="after")
    def _check_warmup(self) -> TrainingSection:
        """Warmup settings transformers would change or ignore without a word."""
        errors = []
        steps = self.warmup_steps
        if steps >= 1 and not float(steps).is_integer():
            errors.append(
                rule_error(
                    ["warmup_steps"],
                    steps,
                    "a value of 1 or more is a number of steps, and transformers cuts it to a "
                    "whole one",
                    f"set training.warmup_steps={int(steps)} (or a fraction below 1, e.g. 0.03)",
                )
            )
        if self.lr_scheduler == "constant" and steps > 0:
            errors.append(
                rule_error(
                    ["warmup_steps"],
                    steps,
                    "the constant schedule ignores warmup",
                    "set training.lr_scheduler=constant_with_warmup, or training.warmup_steps=0",
                )
            )
        if self.max_steps is not None and steps >= 1 and steps >= self.max_steps:
            errors.append(
                rule_error(
                    ["warmup_steps"],
                    steps,
                    f"warmup of {steps:g} steps lasts the whole run of {self.max_steps} steps: "
                    "the learning rate never reaches its peak",
                    "set training.warmup_steps=0.03 (3% of the steps)",
                )
            )
        raise_all(type(self).__name__, errors)
        return self

    @property
    def effective_batch_size(self) -> int:
        """Examples per optimizer step on one device."""
        return self.batch_size * self.gradient_accumulation_steps
