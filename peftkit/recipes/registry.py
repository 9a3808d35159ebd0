"""Which recipe classes exist, by the name a YAML file gives in its ``recipe:`` key."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, TypeAdapter

from peftkit.core.errors import raise_all, rule_error
from peftkit.recipes.base import Recipe
from peftkit.recipes.domain_adaptation import DomainAdaptation
from peftkit.recipes.json_output import JsonOutput
from peftkit.recipes.qlora_budget import QLoRABudget

BUILTIN: dict[str, type[Recipe]] = {
    "domain-adaptation": DomainAdaptation,
    "json-output": JsonOutput,
    "qlora-budget": QLoRABudget,
}
"""The built-in recipes; each has a YAML file of the same name."""

ALL: dict[str, type[Recipe]] = {**BUILTIN, "custom": Recipe}


def from_dict(data: Any) -> Recipe:
    """Validate a mapping (as read from YAML) into the recipe class its ``recipe:`` key names."""
    name = data.get("recipe") if isinstance(data, dict) else None
    kind = ALL.get(name) if isinstance(name, str) else None if isinstance(data, dict) else Recipe
    if kind is None:
        raise_all(
            "Recipe",
            [
                rule_error(
                    ["recipe"],
                    name,
                    f"the `recipe:` key must name one of: {', '.join(ALL)}{_converted_hint(data)}",
                    "set recipe=json-output (or another name from the list) at the top of the file",
                )
            ],
        )
    return kind.model_validate(data)


def _converted_hint(data: Any) -> str:
    """A file of another tool's settings converts as a whole, not key by key."""
    from peftkit.recipes.foreign_keys import looks_foreign

    if isinstance(data, dict) and "recipe" not in data and looks_foreign(data):
        return " (this looks like a TRL or axolotl config: `peftkit import FILE` converts it)"
    return ""


def json_schema() -> dict[str, Any]:
    """The JSON Schema of every recipe file, for editor completion and the docs."""
    # Built on demand: the union's validator is never needed to load a file, and costs import time.
    adapter: TypeAdapter[Recipe] = TypeAdapter(
        Annotated[DomainAdaptation | JsonOutput | QLoRABudget | Recipe, Discriminator("recipe")]
    )
    schema = adapter.json_schema()
    schema["title"] = "peftkit recipe"
    return schema


def summary(kind: type[Recipe]) -> str:
    """The first line of a recipe's docstring: what it is for."""
    return (kind.__doc__ or "").strip().splitlines()[0]
