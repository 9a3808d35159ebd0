"""How a recipe setting is written as a dotted override (``lora.target_modules=[q_proj,v_proj]``):
the spelling of every fix that names a setting, which ``recipes.load(..., overrides=...)`` and
the command line read back as the value."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from peftkit.recipes.yaml_loading import parse_yaml


def token(value: Any) -> str:
    """``value`` as the right-hand side of a dotted override (``lora.target_modules=[a,b]``)."""
    if isinstance(value, list | tuple):
        return "[" + ",".join(token(item) for item in value) + "]"
    if isinstance(value, str):
        plain = bool(value) and not re.search(r"[\s,;()\[\]{}#'\"]", value)
        try:
            plain = plain and parse_yaml(value, "value") == value
        except (yaml.YAMLError, ValueError):  # `*name` and other YAML syntax
            plain = False
        return value if plain else json.dumps(value)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)  # true, false, null
    return repr(value)  # 0.0002, 1e-05, 16: what the recipe loader reads back as numbers


def assignments(settings: dict[str, Any]) -> str:
    """``settings`` as the dotted overrides that set them, separated by spaces."""
    return " ".join(f"{path}={token(value)}" for path, value in settings.items())
