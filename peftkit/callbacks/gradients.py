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
  ``_get_grad_norm`` (transformers >= 5.24) and checks at class creation that it exists.

With fp16 mixed precision, inf/NaN norms are routine (the gradient scaler skips those steps and
lowers its scale), so they are counted but do not stop training.
"""

from __future__ import annotations

import logging
import math
import statistics
import warnings
from typing import Any

from peftkit.callbacks.base import PeftkitCallback
from peftkit.callbacks.stopping import Stop, StopReason, record_stop
from peftkit.errors import PeftkitWarning

log = logging.getLogger("peftkit")

SPIKE_HISTORY = 10
"""Norms needed before a spike can be judged against their median."""


class GradientCheck(PeftkitCallback):
    """Pre-clip gradient norm, share of clipped steps, spikes and non-finite norms."""

    STATE = ("steps", "clipped", "spikes", "non_finite", "max_norm_seen", "recent", "warned")

    def __init__(
        self,
        spike_factor: float = 10.0,
        clipped_warn_fraction: float = 0.9,
        window: int = 50,
        min_steps: int = 20,
    ) -> None:
        super().__init__(
            spike_factor=spike_factor,
            clipped_warn_fraction=clipped_warn_fraction,
            window=window,
            min_steps=min_steps,
        )
        self.spike_factor = spike_factor
        self.clipped_warn_fraction = clipped_warn_fraction
        self.window = window
        self.min_steps = min_steps
        self.steps = 0
        self.clipped = 0
        self.spikes = 0
        self.non_finite = 0
        self.max_norm_seen = 0.0
        self.recent: list[float] = []
        self.warned: list[str] = []
        self.per_step = False
        self.stop: Stop | None = None

    @property
    def clipped_fraction(self) -> float:
        return self.clipped / self.steps if self.steps else 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any):
        if not args.max_grad_norm:
            self._warn_once(
                "clipping-off",
                "max_grad_norm is 0: gradient clipping is off, so one bad batch can wreck the "
                "weights. Fix: max_grad_norm=1.0 (0.3 for QLoRA).",
            )

    def on_grad_norm(self, args: Any, state: Any, control: Any, grad_norm: Any, model: Any = None):
        """Every optimizer step, before ``optimizer.step()`` (called by GradientNormMixin)."""
        self.per_step = True
        self._observe(float(grad_norm), args, state, control, model)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any):
        logs = logs or {}
        if not self.per_step and "grad_norm" in logs:
            self._observe(float(logs["grad_norm"]), args, state, control, None)
        if "loss" in logs and state.log_history:
            state.log_history[-1].update(
                {"clipped_fraction": round(self.clipped_fraction, 4), "grad_spikes": self.spikes}
            )

    def on_train_end(self, args: Any, state: Any, control: Any, **_: Any):
        if args.max_grad_norm and self.steps >= self.min_steps and self.clipped == 0:
            self._warn_once(
                "never-clipped",
                f"clipping never triggered in {self.steps} steps: the largest norm was "
                f"{self.max_norm_seen:.3g}, below max_grad_norm={args.max_grad_norm:g}, so it "
                "protects nothing. Fix: lower max_grad_norm towards the usual norms, or leave it "
                "as a safety net.",
            )

    def _observe(self, norm: float, args: Any, state: Any, control: Any, model: Any) -> None:
        self.steps += 1
        if not math.isfinite(norm):
            self.non_finite += 1
            if args.fp16:
                return
            if model is not None:
                model.zero_grad(set_to_none=True)  # the coming optimizer.step() skips every param
            self.stop = Stop(
                StopReason.NON_FINITE_GRADIENT,
                f"gradient norm is {norm} at step {state.global_step + 1}; stopped before the "
                "optimizer applied it. Fix: lower the learning rate, check the data for empty "
                "or extreme examples, or use bf16 instead of fp16.",
                state.global_step,
            )
            record_stop(type(self).__name__, self.stop, state, control)
            return
        self.max_norm_seen = max(self.max_norm_seen, norm)
        if args.max_grad_norm and norm > args.max_grad_norm:
            self.clipped += 1
        if len(self.recent) >= SPIKE_HISTORY:
            median = statistics.median(self.recent)
            if median > 0 and norm > self.spike_factor * median:
                self.spikes += 1
                log.warning(
                    "gradient spike at step %d: norm %.3g is %.0fx the recent median %.3g",
                    state.global_step + 1,
                    norm,
                    norm / median,
                    median,
                )
        self.recent = [*self.recent[-(self.window - 1) :], norm]
        if self.steps >= self.min_steps and self.clipped_fraction >= self.clipped_warn_fraction:
            self._warn_once(
                "always-clipped",
                f"{self.clipped_fraction:.0%} of {self.steps} steps were clipped at "
                f"max_grad_norm={args.max_grad_norm:g}: the learning rate is likely too high. "
                f"Fix: lower the learning rate, e.g. training.learning_rate="
                f"{args.learning_rate / 3:.2g} in a recipe (learning_rate= in TrainingArguments).",
            )

    def _warn_once(self, key: str, message: str) -> None:
        if key in self.warned:
            return
        self.warned.append(key)
        log.warning(message)
        warnings.warn(message, PeftkitWarning, stacklevel=2)


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
                "_get_grad_norm (transformers >= 5.24) after it in the bases"
            )

    def _get_grad_norm(self, model: Any, grad_norm: Any = None) -> Any:
        norm = super()._get_grad_norm(model, grad_norm=grad_norm)  # type: ignore[misc]
        for callback in self.callback_handler.callbacks:
            hook = getattr(callback, "on_grad_norm", None)
            if hook is not None:
                hook(self.args, self.state, self.control, grad_norm=norm, model=model)
        return norm
