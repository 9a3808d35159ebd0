"""``EarlyStopping``: stop when the monitored metric stops improving, and keep the best weights.

Unlike ``load_best_model_at_end`` it needs no checkpoint at all: at an improved evaluation it
copies the *trainable* parameters (for an adapter, megabytes) to CPU memory, and when training
ends, for any reason, it puts them back. ``save_best_to`` also writes the best adapter to a
folder, atomically.

It adds to the Trainer it is dropped into, and never contradicts it:

- Without a ``metric`` it watches the Trainer's ``metric_for_best_model`` (``eval_loss`` when
  that is unset), as transformers' own ``EarlyStoppingCallback`` does, and names the metric it
  took in its first log event (``early_stopping_metric``).
- ``mode="auto"`` takes the Trainer's ``greater_is_better`` when the metric is its
  ``metric_for_best_model``, else the metric's name (:mod:`peftkit.core.metrics`).
- With ``load_best_model_at_end=True`` the Trainer owns "best": on the same metric, the Trainer
  puts its best checkpoint back and this callback only stops; on another metric the two would
  keep different weights, so it is refused at the start of training.
- Each evaluation's best value and step, and the reason of a stop, are reported in that
  evaluation's log event, so every ``report_to`` integration has them.

Resuming: pass ``restore_callback_states_from_checkpoint=True`` in the training arguments (the
recipes' ``build_sft_config`` does) and the best value, counter, best step and stop reason
continue from the checkpoint. The in-memory copy of the best weights is not in the checkpoint;
after a resume it is reloaded from ``save_best_to`` when that is set.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Literal

from peftkit.callbacks.base import PeftkitCallback, bound_to, defaults
from peftkit.callbacks.distributed import any_rank
from peftkit.callbacks.monitor import Monitor, metric_value, resolve_mode
from peftkit.callbacks.saving import check_target, save_atomically
from peftkit.callbacks.settings import EarlyStoppingSettings
from peftkit.callbacks.stopping import Stop, StopReason, record_stop
from peftkit.core.errors import RecipeError
from peftkit.core.metrics import eval_name, is_evaluation
from peftkit.core.processes import is_main_process

log = logging.getLogger(__name__)

FULL_COPY_SHARE = 0.5
"""Above this share of a model's bytes in trainable weights, a best-weights copy is a copy of
the model. An adapter (a peft model) never counts, however small its base: copying it is the
point, and a 4-bit base makes the share meaningless."""


_D = defaults(EarlyStoppingSettings)


@bound_to(EarlyStoppingSettings)
class EarlyStopping(PeftkitCallback):
    """Stop on no improvement (or a threshold, or NaN); restore the best trainable weights."""

    STATE = ("best", "best_step", "wait", "evaluations", "stop_record")
    FROM_TRAINER = frozenset({"metric"})

    def __init__(
        self,
        metric: str | None = None,
        mode: Literal["min", "max", "auto"] = _D["mode"],
        patience: int = _D["patience"],
        min_delta: float = _D["min_delta"],
        stopping_threshold: float | None = _D["stopping_threshold"],
        divergence_threshold: float | None = _D["divergence_threshold"],
        check_finite: bool = _D["check_finite"],
        start_after: int = _D["start_after"],
        restore_best: bool = _D["restore_best"],
        save_best_to: str | Path | None = _D["save_best_to"],
        allow_full_copy: bool = _D["allow_full_copy"],
    ) -> None:
        super().__init__(
            metric=metric,
            mode=mode,
            patience=patience,
            min_delta=min_delta,
            stopping_threshold=stopping_threshold,
            divergence_threshold=divergence_threshold,
            check_finite=check_finite,
            start_after=start_after,
            restore_best=restore_best,
            save_best_to=os.fspath(save_best_to)
            if isinstance(save_best_to, os.PathLike)
            else save_best_to,
            allow_full_copy=allow_full_copy,
        )
        self.save_best_to = None if self.save_best_to is None else Path(self.save_best_to)
        self.monitored: str | None = None
        """The metric watched this run: ``metric``, or the Trainer's when that is None."""
        self.monitor: Monitor | None = None
        self.restorer: str | None = None
        """Who puts the best weights back this run: "peftkit", "trainer" or None."""
        self.best: float | None = None
        self.best_step: int | None = None
        self.wait = 0
        self.evaluations = 0
        self.best_weights: dict[str, Any] | None = None
        self.restored = False

    # --- Trainer events ---------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
        super().on_train_begin(args, state, control, model=model, **kw)
        self.monitored = self._watched(args)
        self.monitor = Monitor(resolve_mode(self.monitored, self.mode, args), self.min_delta)
        self.restorer = self._restorer(args)
        if self.save_best_to is not None and is_main_process():
            check_target(self.save_best_to)
        if self.restorer == "peftkit" and model is not None and not self.allow_full_copy:
            copied = _trainable_bytes(model)
            if not hasattr(model, "peft_config") and copied > FULL_COPY_SHARE * _bytes(model):
                raise RecipeError(
                    f"restore_best=True would copy {copied / 1e9:.2f} GB of trainable weights to "
                    "CPU memory at every improved evaluation: this model trains in full, not "
                    "through an adapter. Fix: pass allow_full_copy=True to accept the cost, or "
                    "restore_best=False."
                )

    def _watched(self, args: Any) -> str:
        """``metric``, or (None) the Trainer's ``metric_for_best_model`` as transformers'
        EarlyStoppingCallback takes it, ``eval_loss`` without one; a taken metric is named in
        the first log event."""
        if self.metric is not None:
            return self.metric
        theirs = args.metric_for_best_model
        watched = "eval_loss" if theirs is None else eval_name(theirs)
        log.info("EarlyStopping watches %s (metric_for_best_model=%s)", watched, theirs)
        self.report(early_stopping_metric=watched)
        return watched

    def _restorer(self, args: Any) -> str | None:
        """One owner of "best": the Trainer when it loads its best model at the end."""
        if not self.restore_best:
            return None
        if not args.load_best_model_at_end:
            return "peftkit"
        # TrainingArguments sets metric_for_best_model ("loss") when load_best_model_at_end is on
        theirs = eval_name(args.metric_for_best_model)
        ours = eval_name(str(self.monitored))
        if theirs != ours:
            raise RecipeError(
                f"load_best_model_at_end=True puts back the best checkpoint by {theirs}, and "
                f"EarlyStopping(restore_best=True) its best by {ours}: the two "
                f"would keep different weights. Fix: EarlyStopping(metric='{theirs}') to agree "
                "with the Trainer, or restore_best=False to leave restoring to the Trainer."
            )
        return "trainer"

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any):
        if self.training and logs is not None and is_evaluation(logs):
            self._evaluated(logs, state, control, kw.get("model"))
        super().on_log(args, state, control, logs=logs, **kw)

    def _evaluated(self, logs: dict, state: Any, control: Any, model: Any) -> None:
        assert self.monitored is not None  # set at the start of training
        key, value = metric_value(logs, self.monitored)
        self.evaluations += 1
        step = state.global_step
        if self.monitor.improved(value, self.best):  # type: ignore[union-attr]
            self.best, self.best_step, self.wait = value, step, 0
            self._keep_best(model, state, value)
        elif math.isfinite(value):
            self.wait += 1
        stop = None if step < self.start_after else self._decide(value, step)
        if self.best is not None:
            self.report(**{f"{key}_best": self.best, f"{key}_best_step": self.best_step})
        if any_rank(stop is not None):
            stop = stop or Stop(StopReason.PATIENCE, "another process decided to stop", step)
            record_stop(self, stop, control)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any):
        super().on_train_end(args, state, control, model=model, **kw)
        if self.restorer == "trainer":
            self.restored = state.best_model_checkpoint is not None
        elif self.restorer == "peftkit" and model is not None:
            self.restore(model)

    # --- decisions and weights --------------------------------------------------------------

    def _decide(self, value: float, step: int) -> Stop | None:
        name = self.monitored
        monitor = self.monitor
        assert monitor is not None  # set at the start of training
        if self.check_finite and not math.isfinite(value):
            return Stop(StopReason.NON_FINITE_METRIC, f"{name} is {value}", step)
        if self.stopping_threshold is not None and monitor.reached(value, self.stopping_threshold):
            return Stop(
                StopReason.STOPPING_THRESHOLD,
                f"{name}={value:.6g} reached the stopping threshold {self.stopping_threshold:g}",
                step,
            )
        if self.divergence_threshold is not None and monitor.worse_than(
            value, self.divergence_threshold
        ):
            return Stop(
                StopReason.DIVERGENCE,
                f"{name}={value:.6g} is worse than the divergence threshold "
                f"{self.divergence_threshold:g}",
                step,
            )
        if self.wait >= self.patience:
            return Stop(
                StopReason.PATIENCE,
                f"{name} did not improve by more than {monitor.min_delta:g} for "
                f"{self.wait} evaluations (best {self.best:.6g} at step {self.best_step})",
                step,
            )
        return None

    def _keep_best(self, model: Any, state: Any, value: float) -> None:
        if model is None:
            return
        if self.restorer == "peftkit":
            self.best_weights = {
                name: p.detach().to("cpu", copy=True)
                for name, p in model.named_parameters()
                if p.requires_grad
            }
        if self.save_best_to is not None and is_main_process():
            save_atomically(
                model,
                self.save_best_to,
                {"metric": self.monitored, "value": value, "step": state.global_step},
            )

    def restore(self, model: Any) -> bool:
        """Put the best evaluation's trainable weights back into ``model``; True if it did.

        Called at the end of training; call it yourself after an interrupted ``train()``.
        """
        if self.best_weights is None:
            restored = self.best_step is not None and self._restore_from_disk(model)
        else:
            import torch

            params = dict(model.named_parameters())
            with torch.no_grad():
                for name, saved in self.best_weights.items():
                    params[name].copy_(saved)  # copy_ moves the CPU copy to the parameter's device
            restored = True
        if restored:
            self.restored = True
            log.info(
                "restored the weights of step %s (%s=%.6g)",
                self.best_step,
                self.monitored,
                self.best,
            )
        return restored

    def _restore_from_disk(self, model: Any) -> bool:
        """After a resume the in-memory copy is gone: load the adapter ``save_best_to`` holds."""
        folder = self.save_best_to
        weights = None if folder is None else folder / "adapter_model.safetensors"
        if weights is None or not weights.is_file() or not hasattr(model, "peft_config"):
            log.warning(
                "the best weights (step %s) are not in memory after resuming and no saved "
                "adapter was found; set save_best_to to restore them across a resume",
                self.best_step,
            )
            return False
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(weights))
        return True


def _bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _trainable_bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
