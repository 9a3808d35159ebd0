"""Why training stopped: one enum for every peftkit callback, and one way of recording a stop.

A stop is set on ``control.should_training_stop``, said once on the console, and reported in
the log event of the step it happened at (so trackers, ``state.log_history``,
``trainer_state.json`` and the run's report all have it); the callback keeps it for inspection
after training.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peftkit.callbacks.base import PeftkitCallback

log = logging.getLogger(__name__)


class StopReason(str, enum.Enum):
    """Why a peftkit callback stopped training."""

    PATIENCE = "patience"
    STOPPING_THRESHOLD = "stopping_threshold"
    DIVERGENCE = "divergence"
    NON_FINITE_METRIC = "non_finite_metric"
    OVERFITTING = "overfitting"
    NON_FINITE_GRADIENT = "non_finite_gradient"
    NON_FINITE_STEPS = "non_finite_steps"
    """Too many steps in a row skipped for a non-finite loss or gradient (rollback)."""


@dataclass(frozen=True)
class Stop:
    """A stop decision: the reason, a sentence for people, and the global step."""

    reason: StopReason
    message: str
    step: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reason": self.reason.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Stop | None:
        if data is None:
            return None
        return cls(StopReason(data["reason"]), data["message"], int(data["step"]))


def record_stop(callback: PeftkitCallback, stop: Stop, control: Any) -> None:
    """Stop training, keep the reason on the callback (its ``stop``) and report it in the log
    event of this step."""
    name = type(callback).__name__
    callback.stop_record = stop.to_dict()
    control.should_training_stop = True
    control.should_log = True  # a stop decided between log events still gets its own
    log.warning("%s stopped training at step %d: %s", name, stop.step, stop.message)
    callback.report(peftkit_stop=name, stop_reason=stop.reason.value, stop_message=stop.message)
