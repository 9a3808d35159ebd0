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

from peftkit.callbacks.settings import AT_EVALUATIONS
from peftkit.core.errors import Problem, ProblemsError, RecipeError, did_you_mean, problems
from peftkit.core.text import read_text
from peftkit.recipes.base import Recipe
from peftkit.recipes.data_section import TEXT_HAS_NO_COMPLETION, restricts_text
from peftkit.recipes.files import apply_overrides, check_new_file, create_file, field_key
from peftkit.recipes.foreign_keys import (
    AXOLOTL,
    FOREIGN_KEYS,
    TRL,
    ForeignKey,
    Translation,
    default_at,
    field_at,
    misfit,
)
from peftkit.recipes.overrides import assignments, token
from peftkit.recipes.registry import ALL, from_dict
from peftkit.recipes.yaml_loading import parse_yaml_file

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
    invalid: list[Problem] = field(default_factory=list)
    """Keys whose value has no faithful place in the recipe: the import stops on them."""
    overridden: set[str] = field(default_factory=set)
    """The recipe paths the user's overrides set: the file's keys for them give way."""
    added: list[str] = field(default_factory=list)
    """What the recipe does that the file did not ask for (early stopping, a hold-out)."""


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
        if self.conversion.added:
            lines.append(f"# Added by the recipe ({self.flavour} would not do it):")
            lines += [f"#   {added}" for added in self.conversion.added]
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
        if c.added:
            lines.append(
                f"added by the {self.recipe.recipe} recipe ({len(c.added)}; set one "
                "to false with an override to leave it out):"
            )
            lines += [f"  {added}" for added in c.added]
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
    overrides = list(overrides)
    overridden = {".".join(field_key(o.partition("=")[0])) for o in overrides}
    translated, conversion = _translate(data, Conversion(overridden=overridden))
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
    if conversion.invalid:
        raise ProblemsError(_subject(source), conversion.invalid)
    built = _validated(source, name, conversion.settings, overrides)
    conversion.added = _added(built, conversion)
    return Imported(source, output, _flavour(translated), built, why, conversion)


def _subject(source: Path) -> str:
    quoted = shlex.quote(str(source))
    return (
        f"in the recipe imported from {source} (apply a fix as an override: peftkit import "
        f"{quoted} section.field=value)"
    )


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


def _translate(
    data: dict[Any, Any], conversion: Conversion | None = None
) -> tuple[Translated, Conversion]:
    """Each known key with its value and translation; what sets nothing goes to the lists."""
    conversion = conversion or Conversion()
    translated: Translated = []
    for key, value in data.items():
        foreign = FOREIGN_KEYS.get(key) if isinstance(key, str) else None
        if foreign is None:
            conversion.skipped.append(Skipped(str(key), value, UNKNOWN))
            continue
        translation = foreign.translate(value)
        translated.append((foreign, value, translation))
        if translation.refused:
            continue  # below, once every key is known
        if value is None:
            conversion.empty.append(foreign.name)
        elif not translation.settings:
            reason = translation.note if foreign.home else f"no peftkit setting: {translation.note}"
            conversion.skipped.append(Skipped(foreign.name, value, reason))
    evaluates = all(t.settings.get("training.eval_strategy") != "no" for _, _, t in translated)
    for foreign, value, translation in translated:
        if translation.refused:
            _refused(foreign, value, translation, conversion, evaluates)
    return translated, conversion


def _refused(
    foreign: ForeignKey,
    value: Any,
    translation: Translation,
    conversion: Conversion,
    evaluates: bool,
) -> None:
    """A value with no faithful translation stops the import, unless an override sets what
    it would have set, or the file switches off what it is about (an evaluation cadence in a
    file that never evaluates)."""
    reason = ""
    if foreign.home in conversion.overridden:
        reason = f"your override of {foreign.home} replaces it"
    elif foreign.home == "training.eval_steps" and not evaluates:
        reason = "the file switches evaluation off, so there is no cadence to set"
    if reason:
        conversion.skipped.append(Skipped(foreign.name, value, reason))
        return
    conversion.invalid.append(Problem(foreign.name, value, translation.refused, translation.fix))


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
        if path in conversion.overridden:
            reason = f"your override of {path} replaces it"
            conversion.skipped.append(Skipped(foreign.name, value, reason))
            continue
        why = misfit(kind, path, wanted)
        if why is not None and field_at(kind, path) is not None:
            conversion.invalid.append(_invalid(kind, foreign, value, path, wanted, why))
            continue
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


def _invalid(
    kind: type[Recipe], foreign: ForeignKey, value: Any, path: str, wanted: Any, why: str
) -> Problem:
    """A value the recipe's field refuses: the import stops rather than take the default."""
    shown = "" if wanted == value else f" (as {path}={_short(wanted)})"
    return Problem(
        foreign.name,
        value,
        f"{path} does not take it{shown}: {why}",
        f"correct {foreign.name} in the file, or set {path} as an override, e.g. "
        f"{path}={token(default_at(kind, path))} (the recipe's default)",
    )


ADDED = {
    "callbacks.early_stopping.enabled": "early stopping: stops when {metric} has not improved "
    "for {patience} evaluations and puts the best adapter back",
    "callbacks.overfit.enabled": "overfit detection: {action}s when the evaluation loss rises "
    "while the training loss falls",
    "callbacks.gradient_checks.enabled": "gradient checks: report clipping and spikes, "
    "{on_nonfinite} on a non-finite loss",
    "training.eval_fraction": "a hold-out: without --eval-data, {share:.0%} of the training rows "
    "are set aside to evaluate on",
}
"""What a recipe does that TRL and axolotl do not by default, each said in the summary when the
file did not ask for it."""


def _added(recipe: Recipe, conversion: Conversion) -> list[str]:
    """The behaviours of ``recipe`` that the imported file did not set (nor an override)."""
    callbacks, training = recipe.callbacks, recipe.training
    evaluates = training.eval_strategy != "no"
    shown = {
        f"callbacks.{name}.enabled": getattr(callbacks, name).enabled
        and (evaluates or name not in AT_EVALUATIONS)
        for name in type(callbacks).model_fields
    }
    shown["training.eval_fraction"] = evaluates and training.eval_fraction > 0
    setting = {path: True for path in shown} | {"training.eval_fraction": training.eval_fraction}
    values = {
        **callbacks.early_stopping.model_dump(),
        **callbacks.overfit.model_dump(exclude={"metric", "patience"}),
        **callbacks.gradient_checks.model_dump(),
        "share": training.eval_fraction,
    }
    told = set(conversion.settings) | conversion.overridden
    return [
        f"{path}={token(setting[path])}: {text.format(**values)}"
        for path, text in ADDED.items()
        if shown[path] and path not in told
    ]


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
    has no inputs to leave out of the loss (axolotl ignores ``train_on_inputs`` there), and
    with ``save_strategy: no`` there are no checkpoints to limit (in a recipe, a limit would
    turn saving on)."""
    fmt = conversion.settings.get("data.format", default_at(kind, "data.format"))
    if restricts_text(fmt, conversion.settings.get("data.completion_only_loss")):
        _drop(conversion, "data.completion_only_loss", TEXT_HAS_NO_COMPLETION)
    if conversion.settings.get("training.save") == "none":
        reason = "save_strategy no saves no checkpoints, so there are none to limit"
        _drop(conversion, "training.save_total_limit", reason)


def _drop(conversion: Conversion, path: str, reason: str) -> None:
    """Take ``path`` out of the settings; the key that set it is listed as not mapped."""
    if path not in conversion.settings:
        return
    del conversion.settings[path]
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
    apply_overrides(data, overrides)
    try:
        return from_dict(data)
    except ValidationError as error:
        raise ProblemsError(_subject(source), problems(error)) from None


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
