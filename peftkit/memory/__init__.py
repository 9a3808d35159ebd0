"""Memory and cost before any weights load: pure arithmetic on a model's config.

    from peftkit.memory import Setup, estimate_recipe, judge, load_shape
    breakdown = estimate_recipe(recipe, "path/to/config.json")
    verdict = judge(load_shape("path/to/config.json"), Setup(method="qlora", bits=4), 24)

Imports neither torch nor transformers, so `peftkit plan` answers in well under a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from peftkit.memory.config_file import load_shape, read_config
from peftkit.memory.estimate import Breakdown, Setup, estimate
from peftkit.memory.gpus import CATALOG, GPU
from peftkit.memory.plan import Cost, Plan, PlanError, fits_in, judge, plan, setup_of
from peftkit.memory.shapes import ModelShape, shape_of

if TYPE_CHECKING:
    from peftkit.recipes.base import Recipe

__all__ = [
    "CATALOG",
    "GPU",
    "Breakdown",
    "Cost",
    "ModelShape",
    "Plan",
    "PlanError",
    "Setup",
    "estimate",
    "estimate_recipe",
    "fits_in",
    "judge",
    "load_shape",
    "plan",
    "read_config",
    "setup_of",
    "shape_of",
]


def estimate_recipe(recipe: Recipe, model: Any, gpus: int = 1) -> Breakdown:
    """The peak-memory breakdown of ``recipe`` on the model whose config ``model`` names."""
    shape = shape_of(read_config(model))
    return estimate(shape, setup_of(recipe, gpus, shape.checkpoint_dtype))
