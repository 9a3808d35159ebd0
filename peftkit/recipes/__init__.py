"""Validated fine-tuning recipes that build ``LoraConfig``, ``BitsAndBytesConfig`` and
``SFTConfig``.

    from peftkit import recipes
    recipe = recipes.load("json-output", overrides=["lora.r=32"])
    recipe = recipes.JsonOutput(model="HuggingFaceTB/SmolLM2-135M-Instruct")

Importing this package and validating a recipe imports pydantic and PyYAML only; the HF stack
is imported by the ``build_*`` methods.
"""

from peftkit.recipes.base import Recipe
from peftkit.recipes.domain_adaptation import DomainAdaptation
from peftkit.recipes.files import load, to_yaml
from peftkit.recipes.json_output import JsonOutput
from peftkit.recipes.qlora_budget import QLoRABudget
from peftkit.recipes.registry import BUILTIN, from_dict, json_schema

__all__ = [
    "BUILTIN",
    "DomainAdaptation",
    "JsonOutput",
    "QLoRABudget",
    "Recipe",
    "from_dict",
    "json_schema",
    "load",
    "to_yaml",
]
