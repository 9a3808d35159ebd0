"""``peftkit import``: a TRL (``trl sft --config``) or axolotl YAML file as a peftkit recipe.

Every key goes through the one table of foreign keys (:mod:`peftkit.recipes.foreign_keys`), the
same one that explains such a key pasted into a recipe, so that the two never disagree. The
result is validated like any recipe file, and written only when it is valid, to a file that did
not exist (the rules of ``peftkit new``). Every key that found no place in the recipe is listed
with the reason, in the summary and in the file's header: nothing is dropped silently.

Keys the file does not set take the recipe's defaults, not TRL's or axolotl's: that is the point
of a recipe (SFTConfig's learning rate of 2e-5, for one, barely moves a LoRA adapter).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from peftkit.errors import ProblemsError, RecipeError, did_you_mean, problems
from peftkit.recipes.base import Recipe
from peftkit.recipes.files import apply_override, check_new_file, create_file
from peftkit.recipes.foreign_keys import (
    AXOLOTL,
    FOREIGN_KEYS,
    TRL,
    ForeignKey,
    Translation,
    assignments,
    default_at,
    misfit,
)
from peftkit.recipes.registry import ALL, from_dict
from peftkit.recipes.yaml_loading import parse_yaml_file
from peftkit.text import read_text

UNKNOWN = "not a TRL or axolotl setting that peftkit knows"
SUFFIX = ".peftkit.yaml"


@dataclass(frozen=True)
class Skipped:
    """A key of the source file that is not in the recipe, and why."""

    key: str
    value: Any
    reason: str


@dataclass(frozen=True)
class Mapped:
    """A key of the source file and the recipe settings it became."""

    key: str
    value: Any
    settings: dict[str, Any]
    note: str = ""


@dataclass
class Conversion:
    """The settings of a whole file, each with the key it came from, and what was left out."""

    settings: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    mapped: list[Mapped] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Imported:
    """A converted file: the validated recipe, why that recipe, and every key's fate."""

    source: Path
    output: Path
    flavour: str
    recipe: Recipe
    why: str
    conversion: Conversion

    def to_yaml(self) -> str:
        """The recipe as YAML, headed by where it came from and what was left out."""
        lines = [
            f"# Imported by `peftkit import` from {self.source} ({_a(self.flavour)} config).",
            f"# Keys it does not set take the {self.recipe.recipe} recipe's defaults, not "
            f"{self.flavour}'s.",
        ]
        left_out = self.conversion.skipped
        if left_out:
            lines.append("# Not mapped:")
            lines += [f"#   {s.key}: {_short(s.value)}: {s.reason}" for s in left_out]
        return "\n".join(_one_line(line) for line in lines) + "\n" + self.recipe.to_yaml()

    def summary(self) -> str:
        """What was read, mapped and left out, and the commands to go on with."""
        c = self.conversion
        lines = [f"read {self.source} as {_a(self.flavour)} config", f"recipe: {self.why}"]
        lines.append(f"mapped ({len(c.mapped)}):")
        for m in c.mapped:
            note = f" ({m.note})" if m.note else ""
            lines.append(f"  {m.key}: {_short(m.value)} -> {assignments(m.settings)}{note}")
        if c.skipped:
            lines.append(f"not mapped ({len(c.skipped)}):")
            lines += [f"  {s.key}: {_short(s.value)}: {s.reason}" for s in c.skipped]
        if c.empty:
            lines.append(f"empty, nothing to map: {', '.join(c.empty)}")
        shown = shlex.quote(
            f"./{self.output}" if str(self.output).startswith("-") else str(self.output)
        )
        lines.append(f"wrote {self.output}; check it with: peftkit validate {shown}")
        data = "" if self.recipe.data.train_path else " --data DATA"
        lines.append(f"train with: peftkit train {shown}{data} --output OUT")
        return "\n".join(_one_line(line) for line in lines)


def import_file(
    source: Path,
    output: Path | None = None,
    recipe: str | None = None,
    overrides: Iterable[str] = (),
) -> Imported:
    """Convert the TRL or axolotl YAML ``source`` to a recipe and write it to ``output``
    (default: beside it, named ``NAME.peftkit.yaml``), never replacing a file.

    ``recipe`` names the recipe to build on (default: chosen from the file); ``overrides``
    (``training.max_length=2048``) apply last, as in ``peftkit validate``. Raises RecipeError
    for a file that cannot be read or converted, or whose recipe is not valid.
    """
    target = output if output is not None else source.with_name(source.stem + SUFFIX)
    check_new_file(target)
    imported = convert(source, target, recipe, overrides)
    create_file(target, imported.to_yaml())
    return imported


def convert(
    source: Path, output: Path, recipe: str | None = None, overrides: Iterable[str] = ()
) -> Imported:
    """The validated recipe that ``source`` stands for, not yet written (see import_file)."""
    data = read_config(source)
    translated, conversion = _translate(data)
    if not translated:
        raise RecipeError(
            f"{source}: none of its keys is a TRL or axolotl setting that peftkit knows. Fix: "
            "pass a `trl sft --config` or axolotl YAML file, or start a recipe with "
            "peftkit new"
        )
    name, why = _requested(recipe) if recipe is not None else choose_recipe(translated)
    kind = ALL[name]
    _merge(kind, translated, conversion)
    _drop_contradictions(kind, conversion)
    built = _validated(source, name, conversion.settings, overrides)
    return Imported(source, output, _flavour(translated), built, why, conversion)


def read_config(path: Path) -> dict[str, Any]:
    """The mapping of a TRL or axolotl YAML file, with messages that name the file."""
    if not path.exists() and not path.is_symlink():
        raise RecipeError(f"config '{path}': no such file. Fix: check the path.")
    text = read_text(path, "config")
    data = parse_yaml_file(text, path)
    if not isinstance(data, dict) or not data:
        kind = "empty" if data is None or data == {} else f"a {type(data).__name__}"
        raise RecipeError(
            f"{path}: a TRL or axolotl config is a mapping of settings (learning_rate: ...), "
            f"and this file is {kind}. Fix: pass the YAML file given to `trl sft --config` or "
            "to axolotl."
        )
    if "recipe" in data:
        raise RecipeError(
            f"{path} is a peftkit recipe already (it has a `recipe:` key). Fix: check it with "
            f"peftkit validate {shlex.quote(str(path))}"
        )
    return data


Translated = list[tuple[ForeignKey, Any, Translation]]


def _translate(data: dict[Any, Any]) -> tuple[Translated, Conversion]:
    """Each known key with its value and translation; what sets nothing goes to the lists."""
    conversion = Conversion()
    translated: Translated = []
    for key, value in data.items():
        foreign = FOREIGN_KEYS.get(key) if isinstance(key, str) else None
        if foreign is None:
            conversion.skipped.append(Skipped(str(key), value, UNKNOWN))
            continue
        translation = foreign.translate(value)
        translated.append((foreign, value, translation))
        if value is None:
            conversion.empty.append(foreign.name)
        elif not translation.settings:
            reason = translation.note if foreign.home else f"no peftkit setting: {translation.note}"
            conversion.skipped.append(Skipped(foreign.name, value, reason))
    return translated, conversion


def choose_recipe(translated: Translated) -> tuple[str, str]:
    """The built-in recipe closest to what the file does, and why; ``custom`` otherwise."""
    wanted: dict[str, tuple[Any, str]] = {}
    for foreign, value, translation in translated:
        for path, setting in translation.settings.items():
            wanted.setdefault(path, (setting, f"{foreign.name}: {_short(value)}"))
    bits, key = wanted.get("quantization.bits", (None, ""))
    if bits == 4:
        return "qlora-budget", f"qlora-budget, because {key} is 4-bit QLoRA"
    fmt, key = wanted.get("data.format", (None, ""))
    if fmt == "text":
        return "domain-adaptation", f"domain-adaptation, because {key} is raw text"
    return (
        "custom",
        "custom (every section at peftkit's general defaults): nothing in the file says QLoRA "
        "or raw text; pass --recipe json-output when the answers are JSON",
    )


def _requested(name: str) -> tuple[str, str]:
    if name not in ALL:
        hint = did_you_mean(name, ALL)
        raise RecipeError(
            f"--recipe {name!r}: no such recipe. Fix: choose one of {', '.join(ALL)}."
            + (f" {hint}" if hint else "")
        )
    return name, f"{name}, as --recipe asked"


def _merge(kind: type[Recipe], translated: Translated, conversion: Conversion) -> None:
    """Collect the settings of every key: each key's own meaning first, then what they imply,
    which never overrides a meaning set explicitly (``save_strategy: best`` beats the ``save:
    steps`` a checkpoint limit implies). A value the recipe cannot take, and a key that
    contradicts an earlier one, are listed instead."""
    accepted = []
    for foreign, value, translation in translated:
        if not translation.settings:
            continue
        (path, wanted), *_ = translation.settings.items()
        reason = _refusal(kind, conversion, path, wanted)
        if reason is not None:
            conversion.skipped.append(Skipped(foreign.name, value, reason))
            continue
        conversion.origin.setdefault(path, foreign.name)
        conversion.settings[path] = wanted
        accepted.append((foreign, value, translation))
    for foreign, _, translation in accepted:
        for path, wanted in list(translation.settings.items())[1:]:
            if path not in conversion.settings and misfit(kind, path, wanted) is None:
                conversion.settings[path] = wanted
                conversion.origin[path] = foreign.name
    for foreign, value, translation in accepted:
        kept = {p: v for p, v in translation.settings.items() if conversion.settings.get(p) == v}
        conversion.mapped.append(Mapped(foreign.name, value, kept, translation.note))


def _refusal(kind: type[Recipe], conversion: Conversion, path: str, wanted: Any) -> str | None:
    """Why ``path`` cannot be ``wanted``: the recipe refuses the value, or an earlier key of
    the file set it to something else; None when it can."""
    why = misfit(kind, path, wanted)
    if why is not None:
        return f"{path} does not take {_short(wanted)}: {why}"
    earlier = conversion.settings.get(path, wanted)
    if earlier != wanted:
        return f"{conversion.origin[path]} sets {path} to {_short(earlier)} already"
    return None


def _drop_contradictions(kind: type[Recipe], conversion: Conversion) -> None:
    """Settings that are right in the source but contradict another one in a recipe: raw text
    has no inputs to leave out of the loss (axolotl ignores ``train_on_inputs`` there)."""
    fmt = conversion.settings.get("data.format", default_at(kind, "data.format"))
    path = "data.completion_only_loss"
    if fmt != "text" or conversion.settings.get(path) is not True:
        return
    del conversion.settings[path]
    reason = "raw text (data.format text) has no inputs to leave out of the loss"
    for mapped in [m for m in conversion.mapped if path in m.settings]:
        conversion.mapped.remove(mapped)
        rest = {p: v for p, v in mapped.settings.items() if p != path}
        if rest:
            conversion.mapped.append(Mapped(mapped.key, mapped.value, rest, mapped.note))
        conversion.skipped.append(Skipped(mapped.key, mapped.value, reason))


def _validated(
    source: Path, name: str, settings: dict[str, Any], overrides: Iterable[str]
) -> Recipe:
    """The recipe of ``settings`` and the user's overrides, validated like a recipe file."""
    data: dict[str, Any] = {"recipe": name}
    for path, value in settings.items():
        *sections, key = path.split(".")
        node = data
        for part in sections:
            node = node.setdefault(part, {})
        node[key] = list(value) if isinstance(value, tuple) else value
    for override in overrides:
        apply_override(data, override)
    try:
        return from_dict(data)
    except ValidationError as error:
        quoted = shlex.quote(str(source))
        raise ProblemsError(
            f"in the recipe imported from {source} (apply a fix as an override: peftkit import "
            f"{quoted} section.field=value)",
            problems(error),
        ) from None


def _flavour(translated: Translated) -> str:
    """TRL or axolotl, by the keys only one of them has."""
    sources = [foreign.source for foreign, _, _ in translated]
    return AXOLOTL if sources.count(AXOLOTL) > sources.count(TRL) else TRL


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped: a key or a dataset
    path of the source must not end the comment line it is shown in and add YAML of its own."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _short(value: Any, limit: int = 60) -> str:
    """``value`` on one line, as YAML/JSON would show it, cut to ``limit`` characters."""
    text = json.dumps(value, default=str, ensure_ascii=True)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
