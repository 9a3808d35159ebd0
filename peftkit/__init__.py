"""peftkit: validated LoRA/QLoRA fine-tuning recipes, callbacks and planning for the HF stack.

The package root stays import-light on purpose: ``import peftkit`` and validating a recipe must
never pay for torch, transformers, peft, trl or bitsandbytes (several seconds). Sub-packages are
therefore loaded on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from peftkit.core.errors import (
    MissingExtraError,
    PeftkitDeprecationWarning,
    PeftkitWarning,
    RecipeError,
)

if TYPE_CHECKING:
    from peftkit import recipes

__all__ = [
    "MissingExtraError",
    "PeftkitDeprecationWarning",
    "PeftkitWarning",
    "RecipeError",
    "__version__",
    "recipes",
]

__version__ = "0.1.0.dev0"

_LAZY_SUBMODULES = {"recipes", "callbacks"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"peftkit.{name}")
    raise AttributeError(f"module 'peftkit' has no attribute {name!r}")
