"""Why training stopped: one enum for every peftkit callback, and one way of recording a stop.

A stop is set on ``control.should_training_stop``, logged, and appended to
``state.log_history`` (so it is in ``trainer_state.json`` and in the run's report), and the
callback keeps it for inspection after training.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("peftkit")


class StopReason(str, enum.Enum):
    """Why a peftkit callback stopped training."""

    PATIENCE = "patience"
    STOPPING_THRESHOLD = "stopping_threshold"
    DIVERGENCE = "divergence"
    NON_FINITE_METRIC = "non_finite_metric"
    OVERFITTING = "overfitting"
    NON_FINITE_GRADIENT = "non_finite_gradient"


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


def record_stop(callback: str, stop: Stop, state: Any, control: Any) -> None:
    """Stop training and leave the reason in the logs and in ``state.log_history``."""
    control.should_training_stop = True
    log.warning("%s stopped training at step %d: %s", callback, stop.step, stop.message)
    state.log_history.append(
        {
            "peftkit_stop": callback,
            "stop_reason": stop.reason.value,
            "stop_message": stop.message,
            "step": stop.step,
        }
    )
