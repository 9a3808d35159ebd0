"""YAML as a recipe author means it.

PyYAML follows YAML 1.1, where ``no``, ``yes``, ``on`` and ``off`` are booleans, ``017`` is
octal 15 and ``1:30`` is the sexagesimal 90: a user who writes ``eval_strategy: no`` gets
``False`` and an error about a value they never wrote, and ``max_steps: 010`` silently trains 8
steps. This loader reads booleans, integers and floats as YAML 1.2's core schema does
(``true``/``false``; decimal, ``0o``/``0x`` integers; ``1e-4`` is a float), so ``no`` stays the
string ``"no"`` and ``017`` is 17; a boolean field still accepts ``yes``/``no`` because pydantic
reads those strings as booleans. The dumper writing recipes uses the same rules, so that a
string such as ``"1e5"`` is quoted and loads back as a string.

It also refuses duplicate keys, which PyYAML silently resolves by keeping the last, and caps
aliases, so that a hostile file cannot expand into an exponential structure.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import yaml

from peftkit.core.errors import Problem, ProblemsError, RecipeError
from peftkit.core.text import MAX_DEPTH, MAX_DIGITS

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"
MAX_ALIASES = 20
"""Aliases (``*name``) allowed in one document: plenty for a recipe, too few for an alias bomb
(each alias can multiply the size of what it points to)."""

_CORE = [  # YAML 1.2 core schema, in the order they are tried
    (_BOOL, r"true|True|TRUE|false|False|FALSE", "tTfF"),
    (_INT, r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    (
        _FLOAT,
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        "-+.0123456789",
    ),
]


def _core_resolvers() -> dict[str, list[tuple[str, re.Pattern[str]]]]:
    """SafeLoader's implicit resolvers with YAML 1.1's bool, int and float replaced by 1.2's."""
    replaced = {_BOOL, _INT, _FLOAT}
    found: dict[str, list[tuple[str, re.Pattern[str]]]] = {
        first: [(tag, pattern) for tag, pattern in resolvers if tag not in replaced]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    for tag, pattern, firsts in _CORE:
        compiled = re.compile(f"^(?:{pattern})$")
        for first in firsts:
            found.setdefault(first, []).insert(0, (tag, compiled))
    for first in found:  # bool before int before float, as listed
        found[first].sort(
            key=lambda item: (
                [t for t, _, _ in _CORE].index(item[0]) if item[0] in replaced else len(_CORE)
            )
        )
    return found


class RecipeLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans that records every duplicate key with its lines."""

    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = (
        _core_resolvers()
    )

    def __init__(self, stream: str, where: str) -> None:
        super().__init__(stream)
        self.where = where
        self.duplicates: list[Problem] = []
        self.aliases = 0
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise RecipeError(
                    f"{self.where}: more than {MAX_ALIASES} aliases (*name). Fix: write the "
                    "values out instead of referring to anchors."
                )
        self.depth += 1
        if self.depth > MAX_DEPTH:
            line = self.peek_event().start_mark.line + 1
            raise RecipeError(
                f"{self.where}: a value nested more than {MAX_DEPTH} levels deep at line "
                f"{line}. Fix: flatten it; a recipe nests a few levels at most."
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

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


def _construct_int(loader: RecipeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    digits = len(text.lstrip("+-"))
    if digits > MAX_DIGITS:
        raise RecipeError(
            f"{loader.where}: a number of {digits:,} digits at line {node.start_mark.line + 1}; "
            f"a recipe's numbers have at most {MAX_DIGITS}. Fix: write the number you meant."
        )
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 16) if text.startswith("0x") else int(text, 10)


def _construct_float(loader: RecipeLoader, node: yaml.ScalarNode) -> float:
    text = str(loader.construct_scalar(node)).lower()
    if text.endswith(".inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    return float("nan") if text == ".nan" else float(text)


RecipeLoader.add_constructor(_INT, _construct_int)
RecipeLoader.add_constructor(_FLOAT, _construct_float)


class RecipeDumper(yaml.SafeDumper):
    """SafeDumper that quotes exactly the strings RecipeLoader would read as something else."""

    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = (
        _core_resolvers()
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


YAML_FIX = "check the indentation and quoting there"
"""The fix of a YAML syntax error, where the line and column of the error are named."""


def parse_yaml_file(text: str, path: Path, fix: str = YAML_FIX) -> Any:
    """``parse_yaml`` of a file's text, with a YAML error as one RecipeError that names the file,
    the line and column, and ``fix``."""
    try:
        return parse_yaml(text, str(path))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise RecipeError(f"{path}: not valid YAML{where}: {problem}. Fix: {fix}.") from None
