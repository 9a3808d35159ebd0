"""Checking the fields of a model config that the memory estimate reads.

A config is a file people edit and download, so every field is checked before any arithmetic,
and every problem of a config is reported at once: a count that is not a whole number, is 0 or
negative, or is far beyond any published model would otherwise give a crash deep in the
arithmetic or a confident estimate of nonsense. The bounds (``MAX_*``) sit far above the largest
published model, so that they catch typos and broken files only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from peftkit.core.errors import MISSING, Problem, json_kind

MAX_WIDTH = 2**20
"""Hidden size, MLP width, head width, OPT's projection: 1,048,576, 20 times the widest
published layer (the 53,248-wide MLP of Llama-3.1-405B)."""
MAX_LAYERS = 1024
"""8 times the deepest published decoder (Llama-3.1-405B, 126 layers)."""
MAX_VOCAB = 2**24
"""16,777,216 tokens, 64 times the largest published vocabulary (Gemma 3, 262,144)."""
MAX_POSITIONS = 2**26
"""The context (max_position_embeddings, n_positions), which also sizes the learned position
embeddings of GPT-2, GPT-BigCode and OPT: 67,108,864, 6 times the longest published context
(Llama 4 Scout, 10M tokens)."""


def family_problem(config: Mapping[str, Any], families: list[str]) -> Problem:
    """Which keys the rest of a config needs depends on its family, so an unknown family is
    reported alone rather than with a list of keys that family may not use."""
    supported = ", ".join(families)
    if "model_type" not in config:
        return Problem(
            "model_type",
            MISSING,
            f"model_type names the architecture, one peftkit can size from its config: {supported}",
            'add the model\'s family, e.g. "model_type": "llama" (the model\'s published '
            "config.json has it)",
        )
    family = config["model_type"]
    spelled = str(family).strip().lower().replace("-", "_")
    return Problem(
        "model_type",
        family,
        f"model_type {family!r} is not one peftkit can size from its config; supported: "
        f"{supported}",
        f'write "model_type": "{spelled}"'
        if spelled in families
        else "pass the config of a supported architecture; a close name is no substitute "
        "(gemma3 and qwen2_moe have other layers than gemma and qwen2)",
    )


class FieldReader:
    """Reads the fields of one config, noting every problem instead of stopping at the first.

    A value that is absent, null or wrong reads as 0 (or "" / the default), so that the
    remaining checks can run; a wrong one has then been noted, and nothing is computed from it.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.problems: list[Problem] = []

    def _find(self, names: tuple[str, ...]) -> tuple[str, Any]:
        """The first of ``names`` with a value; null counts as absent, as transformers writes
        an unset optional field. ('', None) when none has one."""
        for name in names:
            if self.config.get(name) is not None:
                return name, self.config[name]
        return "", None

    def whole(
        self,
        names: tuple[str, ...],
        what: str,
        example: int,
        high: int,
        high_name: str = "",
        required: bool = True,
    ) -> int:
        """A count or width: a JSON integer from 1 to ``high``."""
        key, value = self._find(names)
        bound = f"{high_name} ({high:,})" if high_name and high < MAX_WIDTH else f"{high:,}"
        if not key:
            if required:
                present = next((name for name in names if name in self.config), "")
                self.problems.append(
                    Problem(
                        present or names[0],
                        None if present else MISSING,
                        f"{what} is required: a whole number from 1 to {bound}"
                        + (f" (under {' or '.join(names)})" if len(names) > 1 else ""),
                        f'set it from the model\'s published config.json, e.g. "{names[0]}": '
                        f"{example}",
                    )
                )
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            self.problems.append(
                Problem(
                    key,
                    value,
                    f"{what} must be a JSON whole number from 1 to {bound}, not {json_kind(value)}",
                    _number_fix(key, value, example, high),
                )
            )
            return 0
        if not 1 <= value <= high:
            self.problems.append(
                Problem(
                    key,
                    value,
                    f"{what} must be from 1 to {bound}",
                    f'set it from the model\'s published config.json, e.g. "{key}": {example}',
                )
            )
            return 0
        return value

    def flag(self, key: str, default: bool) -> bool:
        """A JSON true or false; absent or null means ``default``."""
        value = self.config.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problems.append(
                Problem(
                    key,
                    value,
                    f"{key} must be true or false, not {json_kind(value)}",
                    f'write "{key}": true or "{key}": false (no quotes), or delete it for '
                    f"the default ({json.dumps(default)})",
                )
            )
            return default
        return value

    def text(self, names: tuple[str, ...], what: str, example: str) -> str:
        """A JSON string; "" when absent."""
        key, value = self._find(names)
        if key and not isinstance(value, str):
            self.problems.append(
                Problem(
                    key,
                    value,
                    f"{what} must be a string, not {json_kind(value)}",
                    f'write "{key}": "{example}", or delete it',
                )
            )
            return ""
        return value or ""

    def divisor(
        self, names: tuple[str, ...], value: int, whole: int, whole_key: str, width_key: str | None
    ) -> None:
        """``value`` (under the first of ``names`` present) must divide ``whole``."""
        key = next(name for name in names if self.config.get(name) is not None)
        near = next(d for d in range(min(value, whole), 0, -1) if whole % d == 0)
        rule = f"{key} must divide {whole_key} ({whole}) evenly"
        fix = f'use the model\'s real value, a divisor of {whole} such as "{key}": {near}'
        if width_key:
            rule += f": each head is {whole_key} / {key} wide"
            fix += f', or add "{width_key}" with the width of one head'
        else:
            rule += ": every key/value head serves the same number of query heads"
        self.problems.append(Problem(key, value, rule, fix))


def _number_fix(key: str, value: Any, example: int, high: int) -> str:
    """The corrected field, when the intended number is clear from the wrong value (64.0 or
    "64" for 64) and allowed."""
    meant = None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        meant, how = int(value), 'a whole number, without ".0"'
    elif isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) < 10:
        meant, how = int(value), "a number, without quotes"
    if meant is not None and 1 <= meant <= high:
        return f'write "{key}": {meant} ({how})'
    return f'set it from the model\'s published config.json, e.g. "{key}": {example}'
