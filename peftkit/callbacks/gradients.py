"""``GradientCheck``: make clipping and gradient health visible, and stop on a non-finite norm.

What the Trainer shows callbacks: the pre-clip gradient norm reaches them only as
``logs["grad_norm"]`` at logging steps. A plain callback cannot see the norm of every step
without computing it again (work proportional to the trainable parameters, plus a device sync),
and by ``on_pre_optimizer_step`` the gradients are already clipped. So there are two modes:

- **Plain callback** (works in any unmodified ``Trainer``): checks the norm at logging steps.
- **With** :class:`GradientNormMixin` (``class MyTrainer(GradientNormMixin, SFTTrainer)``): the
  mixin hands the norm the Trainer already computed to ``on_grad_norm`` at every optimizer step,
  before ``optimizer.step()``. A non-finite norm then stops training *before* the optimizer
  applies it: the gradients are dropped so the step is a no-op, and the adapter that
  ``EarlyStopping(restore_best=True)`` keeps stays the last good one. Reading the norm is one
  scalar per step; the Trainer already waits on the loss each step (``logging_nan_inf_filter``),
  so this adds only the wait for the clipping kernels. The mixin overrides the Trainer's
  ``_get_grad_norm`` (private; transformers 5.x, hence ``transformers<6`` in peftkit's
  requirements) and checks at class creation that it exists.

With the mixin, ``on_nonfinite="rollback"`` skips such a step instead of stopping: the step's
gradients are dropped before the optimizer sees them, so weights and optimizer state stay as
they were after the last good step, the skipped step and the batches it trained on are logged,
and training goes on; ``max_rollbacks`` skipped steps in a row stop it. Keras'
``TerminateOnNaN`` stops; the Trainer's ``logging_nan_inf_filter`` even hides the NaN from the
logs.

The clipped share, spikes and the largest norm since the last log event are reported in each
training log event, so every ``report_to`` integration has them.

With fp16 mixed precision, inf/NaN norms are routine (the gradient scaler skips those steps and
lowers its scale), so they are counted but do not stop training.
"""

from __future__ import annotations

import logging
import math
import statistics
from typing import Any, Literal

from peftkit.callbacks.base import PeftkitCallback, bound_to, defaults
from peftkit.callbacks.settings import CLIPPING_OFF, GradientCheckSettings
from peftkit.callbacks.stopping import Stop, StopReason, record_stop
from peftkit.core.errors import RecipeError

log = logging.getLogger(__name__)

SPIKE_HISTORY = 10
"""Norms needed before a spike can be judged against their median."""


_D = defaults(GradientCheckSettings)


@bound_to(GradientCheckSettings)
class GradientCheck(PeftkitCallback):
    """Pre-clip gradient norm, share of clipped steps, spikes and non-finite norms; on a
    non-finite norm, stop (``on_nonfinite="stop"``) or skip the step and go on (``"rollback"``,
    which needs :class:`GradientNormMixin`)."""

    STATE = (
        "steps",
        "clipped",
        "spikes",
        "non_finite",
        "max_norm_seen",
        "recent",
        "warned",
        "skipped",
        "skipped_in_a_row",
        "stop_record",
    )

    def __init__(
        self,
        spike_factor: float = _D["spike_factor"],
        clipped_warn_fraction: float = _D["clipped_warn_fraction"],
        window: int = _D["window"],
        min_steps: int = _D["min_steps"],
        on_nonfinite: Literal["stop", "rollback"] = _D["on_nonfinite"],
        max_rollbacks: int = _D["max_rollbacks"],
    ) -> None:
        super().__init__(
            spike_factor=spike_factor,
            clipped_warn_fraction=clipped_warn_fraction,
            window=window,
            min_steps=min_steps,
            on_nonfinite=on_nonfinite,
            max_rollbacks=max_rollbacks,
        )
        self.steps = 0
        self.clipped = 0
        self.spikes = 0
        self.non_finite = 0
        self.max_norm_seen = 0.0
        self.recent: list[float] = []
        self.skipped = 0
        self.skipped_in_a_row = 0
        self.per_step = False
        self._largest_since_log = 0.0

    @property
    def clipped_fraction(self) -> float:
        return self.clipped / self.steps if self.steps else 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any):
        super().on_train_begin(args, state, control, **kwargs)
        if not args.max_grad_norm:
            self.warn_once("clipping-off", CLIPPING_OFF)

    def on_grad_norm(self, args: Any, state: Any, control: Any, grad_norm: Any, model: Any = None):
        """Every optimizer step, before ``optimizer.step()`` (called by GradientNormMixin)."""
        self.per_step = True
        self._observe(float(grad_norm), args, state, control, model)

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any):
        if self.on_nonfinite == "rollback" and not self.per_step:
            raise RecipeError(
                "GradientCheck(on_nonfinite='rollback') must see each step's gradient norm "
                "before the optimizer applies it, which needs GradientNormMixin. Fix: train "
                "with `class MyTrainer(GradientNormMixin, Trainer)` (peftkit train does), or "
                "on_nonfinite='stop'."
            )

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any):
        logs = logs or {}
        if self.training and "grad_norm" in logs:  # a training step's log event
            if not self.per_step:
                self._observe(float(logs["grad_norm"]), args, state, control, None)
            self.report(
                clipped_fraction=round(self.clipped_fraction, 4),
                grad_spikes=self.spikes,
                grad_norm_max=self._largest_since_log,
            )
            self._largest_since_log = 0.0
        super().on_log(args, state, control, logs=logs, **kw)

    def _observe(self, norm: float, args: Any, state: Any, control: Any, model: Any) -> None:
        self.steps += 1
        if not math.isfinite(norm):
            self._non_finite(norm, args, state, control, model)
            return
        self.skipped_in_a_row = 0
        self.max_norm_seen = max(self.max_norm_seen, norm)
        self._largest_since_log = max(self._largest_since_log, norm)
        if args.max_grad_norm and norm > args.max_grad_norm:
            self.clipped += 1
        if len(self.recent) >= SPIKE_HISTORY:
            median = statistics.median(self.recent)
            if median > 0 and norm > self.spike_factor * median:
                self.spikes += 1
                log.info(
                    "gradient spike at step %d: norm %.3g is %.0fx the recent median %.3g",
                    state.global_step + 1,
                    norm,
                    norm / median,
                    median,
                )
        self.recent = [*self.recent[-(self.window - 1) :], norm]
        if self.steps >= self.min_steps and self.clipped_fraction >= self.clipped_warn_fraction:
            self.warn_once(
                "always-clipped",
                f"{self.clipped_fraction:.0%} of {self.steps} steps were clipped at "
                f"max_grad_norm={args.max_grad_norm:g}: the learning rate is likely too high. "
                f"Fix: lower the learning rate, e.g. training.learning_rate="
                f"{args.learning_rate / 3:.2g} in a recipe (learning_rate= in TrainingArguments).",
            )

    def _non_finite(self, norm: float, args: Any, state: Any, control: Any, model: Any) -> None:
        """Drop the step's gradients, so that the coming ``optimizer.step()`` skips every
        parameter (torch's and bitsandbytes' optimizers skip a parameter without a gradient):
        neither the weights nor the optimizer state are touched, so nothing needs restoring.
        Then stop, or (rollback) go on with the next batch."""
        self.non_finite += 1
        if args.fp16:  # the gradient scaler skips the step and lowers its scale
            return
        if model is not None:
            model.zero_grad(set_to_none=True)
        step = state.global_step + 1
        if self.on_nonfinite == "rollback" and model is not None:
            self.skipped += 1
            self.skipped_in_a_row += 1
            where = _micro_batches(step, args, state)
            log.warning("skipped step %d (%s): gradient norm %s", step, where, norm)
            self.report(skipped_step=step, skipped_batches=where, skipped_steps=self.skipped)
            control.should_log = True
            if self.skipped_in_a_row < self.max_rollbacks:
                return
            stop = Stop(
                StopReason.NON_FINITE_STEPS,
                f"{self.skipped_in_a_row} steps in a row had a non-finite gradient norm (the "
                f"last at step {step}); skipping does not help. Fix: lower the learning rate, "
                "check the data for empty or extreme examples, or use bf16 instead of fp16.",
                step,
            )
        else:
            stop = Stop(
                StopReason.NON_FINITE_GRADIENT,
                f"gradient norm is {norm} at step {step}; stopped before the optimizer applied "
                "it. Fix: lower the learning rate, check the data for empty or extreme "
                "examples, or use bf16 instead of fp16 (or on_nonfinite='rollback' to skip such "
                "steps).",
                step - 1,
            )
        record_stop(self, stop, control)


def _micro_batches(step: int, args: Any, state: Any) -> str:
    """Which batches a step trained on, counted from the start of training: the data order is
    seeded, so the rows can be found again."""
    per_step = args.gradient_accumulation_steps
    first = (step - 1) * per_step
    epoch = f", epoch {state.epoch:.2f}" if state.epoch is not None else ""
    return f"micro-batches {first}-{first + per_step - 1}{epoch}"


class GradientNormMixin:
    """Mix into a Trainer class, first, so callbacks see the pre-clip norm at every step.

    ``class MyTrainer(GradientNormMixin, SFTTrainer): pass``. Each callback with an
    ``on_grad_norm(args, state, control, grad_norm, model)`` method is called after clipping and
    before ``optimizer.step()``.
    """

    callback_handler: Any
    args: Any
    state: Any
    control: Any

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(super(), "_get_grad_norm", None) is None:
            raise TypeError(
                f"{cls.__name__}: GradientNormMixin needs a transformers Trainer with "
                "_get_grad_norm (transformers 5.x) after it in the bases"
            )

    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> Any:
        norm = super()._get_grad_norm(model, grad_norm=grad_norm)  # type: ignore[misc]
        for callback in self.callback_handler.callbacks:
            hook = getattr(callback, "on_grad_norm", None)
            if hook is not None:
                hook(self.args, self.state, self.control, grad_norm=norm, model=model)
        return norm
