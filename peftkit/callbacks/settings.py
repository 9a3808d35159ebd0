"""The ``callbacks`` section: settings of the callbacks a recipe attaches to its trainer.

Each settings model is the one definition of its callback's arguments: their names, defaults,
ranges and descriptions (which feed the JSON Schema and the docs). The callbacks take their
defaults from here and validate their arguments with these models, and a callback whose
constructor and settings disagree fails when it is imported, not when a run builds it.
One default differs on purpose: ``EarlyStopping(metric=None)`` in Python watches the Trainer's
``metric_for_best_model``, as transformers' callback does; a recipe names its metric, because
its ``build_sft_config`` sets the Trainer's from it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from peftkit.core.section import Section


class EarlyStoppingSettings(Section):
    """Stop when the monitored metric stops improving, and keep the best adapter."""

    AT_EVALUATIONS: ClassVar[bool] = True
    """Its callback decides at evaluations: a run without evaluations leaves it nothing to do."""

    enabled: bool = Field(True, description="Attach early stopping.")
    metric: str = Field("eval_loss", min_length=1, description="Metric to monitor.")
    mode: Literal["min", "max", "auto"] = Field(
        "auto",
        description="Whether lower or higher is better; 'auto' takes it from the metric's name "
        "(loss, perplexity: lower; accuracy, rate: higher), or from the Trainer's "
        "greater_is_better when the metric is its metric_for_best_model.",
    )
    patience: int = Field(
        3, ge=1, description="Evaluations in a row without improvement before stopping."
    )
    min_delta: float = Field(0.0, ge=0, description="Smallest change that counts as improvement.")
    stopping_threshold: float | None = Field(
        None, description="Stop as soon as the metric reaches this value."
    )
    divergence_threshold: float | None = Field(
        None, description="Stop as soon as the metric is worse than this value."
    )
    check_finite: bool = Field(True, description="Stop at once when the metric is NaN or Inf.")
    start_after: int = Field(
        0, ge=0, description="Evaluations before this global step never stop training."
    )
    restore_best: bool = Field(
        True, description="Put the best evaluation's trainable weights back when training ends."
    )
    save_best_to: str | None = Field(
        None, description="Also write the best adapter to this folder (atomically)."
    )
    allow_full_copy: bool = Field(
        False,
        description="With method 'full', accept that restore_best copies every weight to CPU "
        "memory at each improvement.",
    )


class OverfitSettings(Section):
    """Watch the gap between training and evaluation loss."""

    AT_EVALUATIONS: ClassVar[bool] = True

    enabled: bool = Field(True, description="Attach overfit detection.")
    action: Literal["warn", "stop"] = Field(
        "warn", description="What to do when overfitting starts."
    )
    patience: int = Field(
        2,
        ge=1,
        description="Evaluations in a row with eval loss rising and train loss falling before "
        "overfitting is reported.",
    )
    metric: str = Field("eval_loss", min_length=1, description="The evaluation loss to watch.")


class GradientCheckSettings(Section):
    """Make clipping and gradient health visible."""

    AT_EVALUATIONS: ClassVar[bool] = False

    enabled: bool = Field(True, description="Attach gradient checks.")
    spike_factor: float = Field(
        10.0, gt=1, description="A norm this many times the recent median is a spike."
    )
    clipped_warn_fraction: float = Field(
        0.9, gt=0, le=1, description="Warn when at least this share of steps is clipped."
    )
    window: int = Field(50, ge=1, description="Recent norms whose median a spike is judged by.")
    min_steps: int = Field(
        20, ge=1, description="Steps before the share of clipped steps is judged."
    )
    on_nonfinite: Literal["stop", "rollback"] = Field(
        "stop",
        description="On a non-finite loss or gradient norm: stop, or skip that step and go on "
        "('rollback'; the step never touches the weights).",
    )
    max_rollbacks: int = Field(
        3, ge=1, description="Skipped steps in a row after which 'rollback' stops training."
    )


class CallbackSettings(Section):
    """The callbacks ``recipe.build_callbacks()`` returns."""

    early_stopping: EarlyStoppingSettings = Field(
        default_factory=EarlyStoppingSettings, description=EarlyStoppingSettings.__doc__
    )
    overfit: OverfitSettings = Field(
        default_factory=OverfitSettings, description=OverfitSettings.__doc__
    )
    gradient_checks: GradientCheckSettings = Field(
        default_factory=GradientCheckSettings, description=GradientCheckSettings.__doc__
    )


AT_EVALUATIONS: tuple[str, ...] = tuple(
    name
    for name, field in CallbackSettings.model_fields.items()
    if getattr(field.annotation, "AT_EVALUATIONS", False)
)
"""The callbacks (by their recipe section) that decide at evaluations; switching evaluation off
switches them off (:data:`peftkit.recipes.rules.EVALUATION_OFF`)."""

CLIPPING_OFF = (
    "max_grad_norm is 0: gradient clipping is off, so one bad batch can wreck the weights. Fix: "
    "max_grad_norm=1.0 (training.max_grad_norm in a recipe; 0.3 for QLoRA)."
)
"""What a recipe that switches clipping off and GradientCheck at the start of such a run say:
one text, warned from one place (:func:`peftkit.core.errors.warn`), so a run says it once."""
