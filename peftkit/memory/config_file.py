"""Finding and reading a model's config.json: a path, a model folder, a transformers config,
a mapping, or a hub name whose config is in the local Hugging Face cache.

A file that cannot be a config (named or sized like a weights file, unreadable, not UTF-8, not
JSON, not a JSON object) is an error naming the file; its fields are checked by
:func:`peftkit.memory.shapes.shape_of`.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from peftkit.core.errors import Problem, ProblemsError, RecipeError, json_kind
from peftkit.core.names import is_local
from peftkit.core.text import read_text
from peftkit.memory.shapes import ModelShape, shape_of

MAX_CONFIG_BYTES = 2**24
"""A config.json is a few KB; a file of 16 MiB is weights passed by mistake, not read whole."""
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt")
"""Weights files, known by name: a small one (a tiny model, one shard) is under the size limit,
and reading it as text would blame its encoding."""


def read_config(source: str | os.PathLike[str] | Any) -> dict[str, Any]:
    """A model config mapping from a ``config.json`` path, a model folder, a transformers config
    object (or a plain mapping), or a hub name whose config is in the local Hugging Face cache.

    A file that cannot be a config (unreadable, not UTF-8, not JSON, not a JSON object) is a
    RecipeError naming the file; its fields are checked by :func:`shape_of`.
    """
    if isinstance(source, Mapping):
        return dict(source)
    if hasattr(source, "to_dict"):
        return source.to_dict()
    return _parse(_locate(source))


def load_shape(source: str | os.PathLike[str] | Any) -> ModelShape:
    """:func:`read_config` then :func:`shape_of`, naming the file in every problem (what the
    command line passes)."""
    if isinstance(source, Mapping) or hasattr(source, "to_dict"):
        return shape_of(read_config(source))
    path = _locate(source)
    return shape_of(_parse(path), f"model config '{path}'")


def _locate(source: str | os.PathLike[str]) -> Path:
    """The config.json that ``source`` names."""
    path = Path(source)
    try:
        if path.is_dir():
            found = path / "config.json"
            if not found.exists():
                raise RecipeError(
                    f"model folder '{path}' has no config.json. Fix: pass the folder of a "
                    "Hugging Face model (the one holding config.json), or the config.json itself."
                )
            return found
        if path.exists():
            return path
    except OSError as error:
        raise _unreadable(path, error) from error
    cached = _cached_config(str(source))
    if cached is not None:
        return cached
    raise RecipeError(
        f"model config '{source}': not a config.json, a model folder, or a hub name whose "
        "config is in the local cache. Fix: pass the path of the model's config.json."
    )


def _parse(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, or a RecipeError that names the file and what is wrong."""
    if path.suffix.lower() in WEIGHT_SUFFIXES:
        raise RecipeError(
            f"model config '{path}' is a weights file ({path.suffix}), not a config.json. Fix: "
            + _config_beside(path)
        )
    try:
        size = path.stat().st_size
        if size >= MAX_CONFIG_BYTES:
            raise RecipeError(
                f"model config '{path}' is {size:,} bytes; a config.json is a few KB (is it a "
                "weights file?). Fix: pass the model's config.json or its folder."
            )
    except OSError as error:
        raise _unreadable(path, error) from error
    text = read_text(path, "model config")
    if not text.strip():
        raise RecipeError(
            f"model config '{path}' is empty. Fix: download the model's config.json again, or "
            "pass the folder that holds it."
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        line = text.split("\n")[error.lineno - 1]
        around = line[max(0, error.colno - 31) : error.colno + 29].strip()  # a minified file
        raise ProblemsError(
            f"in model config '{path}'",
            [
                Problem(
                    f"{path}:{error.lineno}:{error.colno}",
                    around,
                    f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})",
                    "correct the JSON there (a missing comma or quote, a trailing comma, a "
                    "comment), or download the model's config.json again",
                )
            ],
        ) from error
    except (ValueError, RecursionError) as error:
        raise RecipeError(
            f"model config '{path}' cannot be read as JSON: {error}. Fix: download the "
            "model's config.json again."
        ) from error
    if not isinstance(config, dict):
        raise RecipeError(
            f"model config '{path}' holds {json_kind(config)}, not a JSON object. Fix: pass the "
            'model\'s config.json, whose top level is an object: {"model_type": "llama", '
            '"hidden_size": 4096, ...}.'
        )
    return config


def _config_beside(path: Path) -> str:
    """How to pass the config of the model whose weights ``path`` is."""
    folder = path.parent
    try:
        found = (folder / "config.json").is_file()
    except OSError:
        found = False
    if found:
        return f"pass the model's folder, --model {shlex.quote(str(folder))}, or its config.json."
    return "pass the model's config.json or its folder (this one has no config.json)."


def _unreadable(path: Path, error: OSError) -> RecipeError:
    return RecipeError(
        f"model config '{path}' cannot be read: {error.strerror or error}. Fix: pass a readable "
        "config.json file or a model folder (check its permissions)."
    )


def _cached_config(name: str) -> Path | None:
    if is_local(name):
        return None
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    hub = Path(os.environ.get("HF_HUB_CACHE", home / "hub"))
    snapshots = hub / f"models--{name.replace('/', '--')}" / "snapshots"
    found = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None
