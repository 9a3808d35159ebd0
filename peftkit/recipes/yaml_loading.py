"""YAML as a recipe author means it.

PyYAML follows YAML 1.1, where ``no``, ``yes``, ``on`` and ``off`` are booleans: a user who
writes ``eval_strategy: no`` gets ``False`` and an error about a value they never wrote. This
loader reads booleans as YAML 1.2 does (``true``/``false`` only), so ``no`` stays the string
``"no"``; a boolean field still accepts ``yes``/``no`` because pydantic reads those strings as
booleans. It also refuses duplicate keys, which PyYAML silently resolves by keeping the last,
and caps aliases, so that a hostile file cannot expand into an exponential structure.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import yaml

from peftkit.errors import Problem, ProblemsError, RecipeError

_BOOL = "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"
MAX_ALIASES = 20
"""Aliases (``*name``) allowed in one document: plenty for a recipe, too few for an alias bomb
(each alias can multiply the size of what it points to)."""


class RecipeLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans that records every duplicate key with its lines."""

    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = {
        first: [(tag, pattern) for tag, pattern in resolvers if tag != _BOOL]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def __init__(self, stream: str, where: str) -> None:
        super().__init__(stream)
        self.where = where
        self.duplicates: list[Problem] = []
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise RecipeError(
                    f"{self.where}: more than {MAX_ALIASES} aliases (*name). Fix: write the "
                    "values out instead of referring to anchors."
                )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:  # `<<: *base` then overriding keys is the point
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                earlier = first_line.get(key)
                first_line.setdefault(key, line)
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
            if earlier is None:
                continue
            self.duplicates.append(
                Problem(
                    f"line {line}",
                    key,
                    f"the key {key!r} is also set at line {earlier} of the same mapping; YAML "
                    "would silently keep only the last",
                    f"keep one of them: delete line {earlier} or line {line}"
                    if isinstance(value_node, yaml.ScalarNode) and earlier != line
                    else f"keep one {key!r} (lines {earlier} and {line}): merge the two",
                )
            )
        return super().construct_mapping(node, deep=deep)


RecipeLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_yaml(text: str, where: str) -> Any:
    """The value of a YAML document; duplicate keys are a ProblemsError naming their lines."""
    loader = RecipeLoader(text, where)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    if loader.duplicates:
        found = sorted(loader.duplicates, key=lambda p: int(p.path.split()[-1]))
        raise ProblemsError(f"in {where} (duplicate keys)", found)
    return data
