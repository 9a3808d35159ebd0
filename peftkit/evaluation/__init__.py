"""Evaluation that matches the recipe: JSON/schema-valid rates of generated answers, their match
with the reference answers, whether they stopped by themselves, perplexity. :func:`evaluate` is
the before/after report of ``peftkit train`` and ``peftkit evaluate``, for any trainer.

``METRIC_PATH`` is a local ``evaluate`` metric (``evaluate.load(METRIC_PATH)``), since the
metric hub may be out of reach.
"""

from pathlib import Path

from peftkit.evaluation.held_out import evaluate, held_out_prompts
from peftkit.evaluation.json_answers import (
    STOPPED_AT_LEAST,
    Answers,
    content_rates,
    generate_answers,
    json_rates,
    prompt_text,
)

METRIC_PATH = str(Path(__file__).parent / "json_validity")

__all__ = [
    "METRIC_PATH",
    "STOPPED_AT_LEAST",
    "Answers",
    "content_rates",
    "evaluate",
    "generate_answers",
    "held_out_prompts",
    "json_rates",
    "prompt_text",
]
