"""``OverfitDetector``: report overfitting as it starts.

Overfitting shows as the evaluation loss rising above its minimum while the training loss keeps
falling, so the gap between them grows. At each evaluation this callback compares the training
loss averaged since the previous evaluation with the evaluation loss, logs the gap, and after
``patience`` evaluations in a row of (eval loss up, train loss down, gap up) since the
evaluation-loss minimum, warns or stops. A healthy run keeps making new minima and stays silent.

Set ``logging_steps`` at most ``eval_steps``: an evaluation with no training loss logged since
the previous one is skipped.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from peftkit.callbacks.base import PeftkitCallback, bound_to, defaults
from peftkit.callbacks.distributed import any_rank
from peftkit.callbacks.monitor import Monitor, metric_value
from peftkit.callbacks.settings import OverfitSettings
from peftkit.callbacks.stopping import Stop, StopReason, record_stop
from peftkit.core.metrics import is_evaluation

_D = defaults(OverfitSettings)
LOSS = Monitor("min")
"""Lower is better for both losses, and for their gap."""


@bound_to(OverfitSettings)
class OverfitDetector(PeftkitCallback):
    """Warn (or stop) when eval loss rises while train loss falls and their gap grows."""

    STATE = (
        "history",
        "train_sum",
        "train_count",
        "best_eval",
        "rising",
        "detected_step",
        "warned",
        "stop_record",
    )

    def __init__(
        self,
        action: Literal["warn", "stop"] = _D["action"],
        patience: int = _D["patience"],
        metric: str = _D["metric"],
    ) -> None:
        super().__init__(action=action, patience=patience, metric=metric)
        self.history: list[dict[str, float]] = []
        self.train_sum = 0.0
        self.train_count = 0
        self.best_eval: float | None = None
        self.rising = 0
        self.detected_step: int | None = None

    @property
    def detected(self) -> bool:
        return self.detected_step is not None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any):
        logs = logs or {}
        if self.training:
            if is_evaluation(logs):
                self._evaluated(logs, state, control)
            else:
                loss = logs.get("loss")
                if loss is not None and math.isfinite(loss):
                    self.train_sum += loss
                    self.train_count += 1
        super().on_log(args, state, control, logs=logs, **kw)

    def _evaluated(self, metrics: dict, state: Any, control: Any) -> None:
        _, eval_loss = metric_value(metrics, self.metric)
        if self.train_count == 0 or not math.isfinite(eval_loss):
            return
        train_loss = self.train_sum / self.train_count
        self.train_sum, self.train_count = 0.0, 0
        point = {
            "step": state.global_step,
            "train_loss": train_loss,
            "eval_loss": eval_loss,
            "gap": eval_loss - train_loss,
        }
        previous = self.history[-1] if self.history else None
        self.history.append(point)
        self.report(overfit_gap=point["gap"])
        if LOSS.improved(eval_loss, self.best_eval):
            self.best_eval, self.rising = eval_loss, 0
        elif (
            previous is not None
            and LOSS.worse_than(eval_loss, previous["eval_loss"])
            and LOSS.improved(train_loss, previous["train_loss"])
            and LOSS.worse_than(point["gap"], previous["gap"])
        ):
            self.rising += 1
        found = self.detected_step is None and self.rising >= self.patience
        if any_rank(found):
            self._report(point, control)

    def _report(self, point: dict[str, float], control: Any) -> None:
        self.detected_step = int(point["step"])
        message = (
            f"overfitting: eval loss rose from its minimum {self.best_eval:.4g} to "
            f"{point['eval_loss']:.4g} over {self.rising} evaluations while train loss fell to "
            f"{point['train_loss']:.4g} (gap {point['gap']:.4g}). Fix: fewer epochs, more data, "
            "a lower learning rate or more dropout; early stopping with restore_best keeps the "
            "best adapter."
        )
        self.report(overfit_detected=True, overfit_message=message)
        if self.action == "stop":
            record_stop(self, Stop(StopReason.OVERFITTING, message, self.detected_step), control)
        else:
            self.warn_once("overfitting", message)
