"""Applying the fix a recipe error suggests exactly as written, the way a user reads it: an
assignment such as ``set training.eval_strategy=no`` becomes that dotted override (the syntax
``peftkit validate FILE training.eval_strategy=no`` takes as written), "remove it" removes the
key, "did you mean 'alpha'?" renames it, "e.g. 16" and "at least 1" set that value. Each
alternative of a fix ("set A, or B") is one list of edits."""

from __future__ import annotations

import copy
import re
import warnings
from typing import Any

import pytest
import yaml
from fix_reader import overrides
from pydantic import ValidationError

from peftkit import PeftkitWarning
from peftkit.core.errors import Problem, problems
from peftkit.recipes.files import apply_override
from peftkit.recipes.registry import from_dict

ADVICE_ONLY = ("fix the schema", "point it at a definition")
"""Fixes that cannot be a one-line edit; they must say what to change instead."""

Edit = tuple[str, Any]
"""A dotted override (``"lora.r=16"``), or ("remove"/"rename"/"set", path, value)."""


def raw(source: str | dict[str, Any]) -> dict[str, Any]:
    """A table row as the mapping the loader would validate."""
    if isinstance(source, dict):
        return copy.deepcopy(source)
    from peftkit.recipes.yaml_loading import parse_yaml

    return parse_yaml(source, "row")


def found(data: dict[str, Any]) -> set[tuple[str, str]]:
    """(path, rule) of every problem of ``data``; empty when it validates."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PeftkitWarning)
        try:
            from_dict(data)
        except ValidationError as error:
            return {(p.path, p.rule) for p in problems(error)}
    return set()


def edits(problem: Problem) -> list[list[tuple[str, ...]]]:
    """Each alternative of the problem's fix as the edits a user makes for it."""
    fix = problem.fix
    choices = [[("override", item) for item in items] for items in overrides(fix)]
    if choices:
        return choices
    if mean := re.search(r"did you mean '([^']+)'", fix):
        return [[("rename", problem.path, mean.group(1))]]
    if fix.startswith("remove it"):
        return [[("remove", problem.path)]]
    if example := re.search(r"e\.g\. (\S+)", fix):
        return [[("set", problem.path, example.group(1))]]
    if bound := re.search(r"(at least|at most|above|below) (\S+)$", fix):
        limit = float(bound.group(2))
        value = {"at least": limit, "at most": limit, "above": limit + 1, "below": limit / 2}
        chosen = value[bound.group(1)]
        return [[("set", problem.path, str(int(chosen) if chosen == int(chosen) else chosen))]]
    if fix == "use one of the values named in the rule":
        first = re.search(r"should be '?([^' ,]+)", problem.rule)
        return [[("set", problem.path, first.group(1))]] if first else []
    if fix.startswith("write a mapping"):
        return [[("set", problem.path, "{}")]]
    if fix.startswith("write true"):
        return [[("set", problem.path, "true")]]
    return []


def apply(data: dict[str, Any], alternative: list[tuple[str, ...]]) -> dict[str, Any]:
    changed = copy.deepcopy(data)
    for kind, *args in alternative:
        if kind == "override":
            apply_override(changed, args[0])
            continue
        *parents, key = args[0].split(".")
        node = changed
        for part in parents:
            node = node[part]
        if kind == "remove":
            del node[key]
        elif kind == "rename":
            node[args[1]] = node.pop(key)
        else:
            node[key] = yaml.safe_load(args[1])
    return changed


def problems_of(data: dict[str, Any]) -> list[Problem]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PeftkitWarning)
        with pytest.raises(ValidationError) as info:
            from_dict(data)
    return problems(info.value)


ROUNDS = 3
"""Rounds of first fixes after which a bad recipe must be valid."""
