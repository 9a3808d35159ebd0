"""The ``callbacks`` section: settings of the callbacks a recipe attaches to its trainer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from peftkit.recipes.section import Section


class EarlyStoppingSettings(Section):
    """Stop when the monitored metric stops improving, and keep the best adapter."""

    enabled: bool = Field(True, description="Attach early stopping.")
    metric: str = Field("eval_loss", min_length=1, description="Metric to monitor.")
    mode: Literal["min", "max", "auto"] = Field(
        "min", description="Whether lower or higher is better; 'auto' infers it from the name."
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


class GradientCheckSettings(Section):
    """Make clipping and gradient health visible."""

    enabled: bool = Field(True, description="Attach gradient checks.")
    spike_factor: float = Field(
        10.0, gt=1, description="A norm this many times the recent median is a spike."
    )
    clipped_warn_fraction: float = Field(
        0.9, gt=0, le=1, description="Warn when at least this share of steps is clipped."
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
