"""Memory and cost before any weights load: pure arithmetic on a model's config.

    from peftkit.memory import Setup, judge, load_shape
    verdict = judge(load_shape("path/to/config.json"), Setup(method="qlora", bits=4), 24)

A recipe gives its own settings: ``recipe.estimate(model)`` and ``recipe.plan(model)``.
Imports neither torch nor transformers, so `peftkit plan` answers in well under a second, and
never reads a recipe (:mod:`peftkit.recipes.planning` turns one into a :class:`Setup`).
"""

from __future__ import annotations

from peftkit.memory.config_file import load_shape, read_config
from peftkit.memory.gpus import CATALOG, GPU
from peftkit.memory.peak import Breakdown, Setup, estimate
from peftkit.memory.planner import Budget, Cost, Plan, PlanError, Request, fits_in, judge, plan
from peftkit.memory.shapes import ModelShape, shape_of

__all__ = [
    "CATALOG",
    "GPU",
    "Breakdown",
    "Budget",
    "Cost",
    "ModelShape",
    "Plan",
    "PlanError",
    "Request",
    "Setup",
    "estimate",
    "fits_in",
    "judge",
    "load_shape",
    "plan",
    "read_config",
    "shape_of",
]
