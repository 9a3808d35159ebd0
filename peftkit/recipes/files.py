"""Recipes as files: loading YAML (built-in or the user's), dotted overrides, writing YAML."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from peftkit.core.errors import RecipeError, did_you_mean, with_type
from peftkit.core.text import read_text
from peftkit.recipes.base import Recipe
from peftkit.recipes.foreign_keys import superseded
from peftkit.recipes.registry import BUILTIN, from_dict, summary
from peftkit.recipes.yaml_loading import YAML_FIX, RecipeDumper, parse_yaml, parse_yaml_file


def builtin_dir() -> Path:
    """Folder of the built-in YAML files: inside the installed wheel, or the source checkout."""
    packaged = Path(str(resources.files("peftkit") / "builtin_recipes"))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "recipes"


def load(source: str | os.PathLike[str], overrides: Iterable[str] | None = ()) -> Recipe:
    """A recipe from a built-in name (``"json-output"``) or a YAML path, plus dotted overrides.

    Overrides such as ``"training.learning_rate=1e-4"`` are parsed as YAML values and validated
    exactly like the file's own values; None means none. Arguments of another type are a
    RecipeError naming the argument, before any file is read.
    """
    checked = _checked_overrides(overrides)
    data = read(_checked_source(source))
    apply_overrides(data, checked)
    return from_dict(data)


_OVERRIDES_EXAMPLE = "overrides=['lora.r=32', 'training.epochs=2']"


def _checked_source(source: Any) -> str | Path:
    """``source`` as a name or path: a string or a path-like, not a number or a list."""
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise RecipeError(
            f"recipes.load(source=...): got {with_type(source)}, and the source of a recipe is a "
            "built-in recipe name or the path of a YAML file. Fix: recipes.load('json-output') "
            "or recipes.load('my-recipe.yaml')."
        )
    if "\0" in source or not source.strip():
        raise RecipeError(
            f"recipes.load(source=...): got {source!r}, which names no recipe and no file. "
            f"Fix: pass a built-in recipe name ({', '.join(BUILTIN)}) or a YAML path."
        )
    return source


def _checked_overrides(overrides: Any) -> list[str]:
    """``overrides`` as a list of strings: a single string (which Python would iterate
    character by character) or an item that is not a string is refused with the fix."""
    if overrides is None:
        return []
    if isinstance(overrides, str | bytes):
        shown = overrides.decode(errors="replace") if isinstance(overrides, bytes) else overrides
        raise RecipeError(
            f"recipes.load(overrides=...): got the string {shown!r}; overrides is a list of "
            f"'section.field=value' strings. Fix: overrides=[{shown!r}]."
        )
    if isinstance(overrides, Mapping) or not isinstance(overrides, Iterable):
        raise RecipeError(
            f"recipes.load(overrides=...): got {with_type(overrides)}; overrides is a list of "
            f"'section.field=value' strings. Fix: {_OVERRIDES_EXAMPLE}."
        )
    found = list(overrides)
    for index, item in enumerate(found):
        if not isinstance(item, str):
            raise RecipeError(
                f"recipes.load(overrides=...): item {index} is {with_type(item)}; each override "
                f"is a 'section.field=value' string. Fix: {_OVERRIDES_EXAMPLE}."
            )
    return found


def read(source: str | Path) -> dict[str, Any]:
    """The raw mapping of a recipe file, before validation."""
    path = Path(source).expanduser()
    if str(source) in BUILTIN:
        if path.exists():
            raise RecipeError(
                f"recipe '{source}': both a built-in recipe and a file here. Fix: pass "
                f"./{source} for the file, or rename the file to use the built-in."
            )
        path = builtin_dir() / f"{source}.yaml"
    if not path.is_file():
        hint = did_you_mean(str(source), BUILTIN)
        if path.is_dir():
            kind = "a folder, not a file"
        elif path.exists():
            kind = "not a regular file (a device or a pipe cannot be read twice)"
        else:
            kind = "no such file, and no built-in recipe of that name"
        raise RecipeError(
            f"recipe '{source}': {kind}. Built-ins: {', '.join(BUILTIN)}."
            + (f" {hint}" if hint else "")
        )
    text = read_text(path, "recipe")
    example = "(`peftkit show json-output` prints a valid example)"
    data = parse_yaml_file(text, path, f"{YAML_FIX} {example}")
    if data is None:
        raise RecipeError(
            f"{path}: the file is empty. Fix: start from a built-in: "
            f"peftkit new {path} --from json-output"
        )
    if not isinstance(data, dict):
        raise RecipeError(
            f"{path}: the top level must be a mapping of sections (recipe:, model:, lora:, ...), "
            f"not a {type(data).__name__}."
        )
    return data


def new_file_path(given: str, source: str) -> Path:
    """The file `peftkit new FILE` writes: FILE, or for a name ending with a slash (a folder),
    the source recipe's name with .yaml inside it (``newdir/`` used to write a file named
    ``newdir``)."""
    path = Path(given).expanduser()
    if given.endswith(("/", os.sep)):
        return path / f"{Path(source).stem}.yaml"
    return path


def write_new(path: Path, source: str) -> Path:
    """Write the recipe ``source`` (a built-in name or a file) to ``path`` as YAML, creating the
    file: an existing file, a link (even a dangling one) or a folder there is never replaced."""
    check_new_file(path, folder=True)  # `peftkit new d/` writes inside d
    return create_file(path, load(source).to_yaml())


def check_new_file(path: Path, folder: bool = False) -> None:
    """Refuse ``path`` for a new file unless nothing is there and its folder can be made: what
    a user made is never replaced. Checked before any work, so that a refusal costs nothing."""
    if path.exists() or path.is_symlink():
        inside = f", or {path}/ to write inside the folder" if folder and path.is_dir() else ""
        raise RecipeError(
            f"{path} already exists; peftkit never overwrites a file you made. Fix: choose "
            f"another name{inside}, or move the file away first."
        )
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RecipeError(f"{path}: {parent} is a file, not a folder. Fix: choose another path.")


def create_file(path: Path, text: str) -> Path:
    """Write ``text`` to a new file at ``path`` (see :func:`check_new_file`), creating its
    folder; a file that appeared there meanwhile is still never replaced."""
    check_new_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8") as handle:  # "x": fails rather than replace
        handle.write(text)
    return path


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> None:
    """Apply ``overrides`` in order, after refusing what would be silently resolved: a field
    given twice with different values (under either of its names; the last would win) and an
    empty value (which YAML reads as null, the field's default, as an unset shell variable
    gives it)."""
    overrides = list(overrides)
    seen: dict[tuple[str, ...], str] = {}
    for override in overrides:
        key, sep, raw = override.partition("=")
        name = key.strip()
        if sep and not raw.strip() and name:
            raise RecipeError(
                f"override '{override}': {name} has an empty value (an unset shell variable?). "
                f"Fix: give it a value, e.g. {name}=VALUE, or {name}=null for its default."
            )
        field = field_key(name)
        if sep and field in seen and seen[field].partition("=")[2].strip() != raw.strip():
            raise RecipeError(
                f"override '{override}': {name} is set twice ('{seen[field]}' and "
                f"'{override}'); peftkit does not pick one. Fix: keep one of them."
            )
        seen[field] = override
    for override in overrides:
        apply_override(data, override)


def field_key(name: str) -> tuple[str, ...]:
    """A dotted field as one spelling: a section's old name for a key is its current one."""
    parts = [part.strip() for part in name.split(".")]
    section, depth = Recipe.walk(parts[:-1])
    if depth == len(parts) - 1:
        parts[-1] = section.RENAMED.get(parts[-1], parts[-1])
    return tuple(parts)


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set ``section.field=value`` in a raw recipe mapping, in place."""
    key, sep, raw = override.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise RecipeError(
            f"override '{override}': expected section.field=value, e.g. training.learning_rate=1e-4"
        )
    try:
        shown = (
            override
            if len(override) <= 80
            else f"{override[:60]}... ({len(override):,} characters)"
        )
        value = parse_yaml(raw, f"override '{shown}'")
    except yaml.YAMLError:
        raise RecipeError(
            f"override '{override}': the value is not valid YAML. Fix: quote it, e.g. "
            f"{key}='\"{raw}\"'"
        ) from None
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if part == "model" and depth == 0 and isinstance(child, str):
            child = {"name": child}
        if child is None:
            child = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise RecipeError(
                f"override '{override}': '{where}' is a value, not a section, so it has no field "
                f"'{parts[depth + 1]}'. Fix: set {where}=... instead."
            )
        node[part] = child
        node = child
    section, _ = Recipe.walk(parts[:-1])
    renamed = {**section.RENAMED, **{new: old for old, new in section.RENAMED.items()}}
    node.pop(renamed.get(parts[-1], ""), None)  # the override wins over the file's other spelling
    node[parts[-1]] = value
    for foreign in superseded(data, ".".join(parts)):  # and over a TRL/axolotl key at the top
        del data[foreign]


def to_yaml(recipe: Recipe, notes: Mapping[str, str] | None = None) -> str:
    """The recipe as commented YAML; loading it gives back an equal recipe. ``notes`` puts a
    comment after fields, by dotted path (``training.learning_rate``: how ``auto`` gave the
    number written).

    Non-ASCII characters are escaped: YAML reads some of them (U+0085) as line breaks.
    """
    name = recipe.recipe
    header = [
        f"# peftkit recipe '{name}': {summary(type(recipe))}",
        "# Check it:     peftkit validate THIS_FILE",
        "# Override:     peftkit validate THIS_FILE training.learning_rate=1e-4 lora.r=32",
        "# Every field:  peftkit schema",
    ]
    body = yaml.dump(recipe.model_dump(mode="json"), Dumper=RecipeDumper, sort_keys=False)
    return "\n".join(header) + "\n" + _commented(body, notes or {})


def _commented(body: str, notes: Mapping[str, str]) -> str:
    """``body`` with each note appended to its field's line (a field of a section, two deep)."""
    if not notes:
        return body
    lines, section = body.splitlines(), ""
    for i, line in enumerate(lines):
        if line and not line.startswith(" "):
            section = line.split(":", 1)[0]
        elif line.startswith("  ") and not line.startswith("   "):
            path = f"{section}.{line.strip().split(':', 1)[0]}"
            if path in notes:
                lines[i] = f"{line}  # {' '.join(notes[path].split())}"
    return "\n".join(lines) + "\n"
