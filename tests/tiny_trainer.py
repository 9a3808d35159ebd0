"""Scripted metrics for the callback tests: a real run that produces an exact sequence."""

from __future__ import annotations

from typing import Any

from peftkit.callbacks.base import Leading, add_to_log


class ScriptedMetric(Leading):
    """Overwrite ``key`` in each evaluation's metrics with the value given for that step.

    It produces metrics, so it leads ahead of the callback under test, and a real run makes an
    exact sequence. (Leading callbacks act only inside ``train()``, as this one does.)
    """

    LEAD_ORDER = 0

    def __init__(self, values: dict[int, float], key: str = "eval_loss") -> None:
        super().__init__()
        self.values, self.key = values, key

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any):
        if self.training and logs and "eval_loss" in logs and state.global_step in self.values:
            add_to_log(state, logs, {self.key: self.values[state.global_step]})


def scripted(sequence: list[float]) -> dict[int, float]:
    """Evaluation i (1-based) happens at step i when evaluations run every step."""
    return dict(enumerate(sequence, start=1))
