"""Keyword arguments of the builders, checked as the recipe's fields, and the fields the recipe
does not model passed through to the HF class, type-checked first.

``recipe.build_sft_config("out", learning_rate="fast")`` must fail as
``peftkit validate RECIPE training.learning_rate=fast`` does, and
``build_sft_config("out", gradient_checkpointing=True)`` must win over the recipe, not lose to
its ``activation_checkpointing``. So a keyword the recipe models becomes that recipe field
(SFTConfig's names through the TRL table of :mod:`peftkit.recipes.foreign_keys`, LoraConfig's
and BitsAndBytesConfig's through their sections' own names) and the recipe is validated again
with it, with the same messages; the config is then built from that recipe. A keyword the recipe
does not model is a field of the HF class (else an error with "did you mean"), checked against
the type the class declares for it, and passed through. ``lora.extra``, ``quantization.extra``
and ``training.extra`` are the same pass-through written in a recipe.
"""

from __future__ import annotations

import difflib
import functools
import typing
import warnings
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from peftkit.core.errors import (
    MISSING,
    PeftkitWarning,
    Problem,
    ProblemsError,
    problems,
    raise_all,
)
from peftkit.core.section import Section

if TYPE_CHECKING:
    from peftkit.recipes.base import Recipe

Target = Literal["sft", "lora", "bnb"]
BUILDERS = {"sft": "build_sft_config", "lora": "build_lora_config", "bnb": "build_bnb_config"}
SECTIONS = {"lora": "lora", "bnb": "quantization"}
EXTRA = {"sft": "training", "lora": "lora", "bnb": "quantization"}
"""The section whose ``extra`` passes fields through to each target."""
BUILT = {"sft": ("output_dir",), "lora": ("task_type",), "bnb": ()}
"""Fields the builder sets from its own arguments, never from a keyword."""


def target_class(target: Target) -> type:
    """The HF class a target builds (imports it)."""
    if target == "sft":
        from trl import SFTConfig

        return SFTConfig
    if target == "lora":
        from peft import LoraConfig

        return LoraConfig
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig


def recipe_settings(
    target: Target, keywords: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """The recipe fields ``keywords`` set (dotted paths), the keyword that set each, and the
    keywords left to pass through; a translation that has no faithful value is a problem."""
    settings: dict[str, Any] = {}
    owners: dict[str, str] = {}
    rest: dict[str, Any] = {}
    found: list[Problem] = []
    for key, value in keywords.items():
        home = _home(target, key, value)
        if home is None:
            rest[key] = value
        elif isinstance(home, Problem):
            found.append(home)
        else:
            settings.update(home)
            owners.update(dict.fromkeys(home, key))
    if found:
        raise ProblemsError(f"in the keyword arguments of {BUILDERS[target]}", found)
    return settings, owners, rest


def _home(target: Target, key: str, value: Any) -> dict[str, Any] | Problem | None:
    """What ``key=value`` sets in the recipe; None when the recipe has no such field."""
    if target != "sft":
        from peftkit.recipes.lora import LoraSection
        from peftkit.recipes.quantization import QuantizationSection

        section = LoraSection if target == "lora" else QuantizationSection
        name = SECTIONS[target]
        if key in ("load_in_4bit", "load_in_8bit") and target == "bnb" and value in (True, False):
            bits = 4 if key == "load_in_4bit" else 8
            return {f"{name}.bits": bits if value else None}
        field = key if key in section.model_fields else section.SUGGEST.get(key)
        return None if field is None or field == "extra" else {f"{name}.{field}": value}
    return _sft_home(key, value)


def _sft_home(key: str, value: Any) -> dict[str, Any] | Problem | None:
    """SFTConfig's keywords through TRL's row of the foreign-key table; the precision flags
    and ``max_steps=-1`` mean what they mean in SFTConfig (off, not set), not what an imported
    file means by them."""
    from peftkit.core.section import warn_renamed
    from peftkit.recipes.foreign_keys import BOTH, FOREIGN_KEYS, TRL
    from peftkit.recipes.training import TrainingSection

    if key in TrainingSection.RENAMED:
        warn_renamed(key, TrainingSection.RENAMED[key], stacklevel=7)
    if key in ("bf16", "fp16") and value in (True, False):
        return {"training.precision": key if value else "fp32"}
    if key == "max_steps" and isinstance(value, int) and not isinstance(value, bool):
        return {"training.max_steps": None if value <= 0 else value}
    foreign = FOREIGN_KEYS.get(key)
    if foreign is None or foreign.home is None or foreign.source not in (TRL, BOTH):
        same = key in TrainingSection.model_fields and key != "extra"  # activation_checkpointing
        return {f"training.{key}": value} if same else None
    translation = foreign.translate(value)
    if translation.refused:
        return Problem(key, value, translation.refused, translation.fix)
    return translation.settings or None


def with_keywords(recipe: Recipe, target: Target, keywords: dict[str, Any]) -> tuple[Recipe, dict]:
    """``recipe`` with the fields ``keywords`` set, validated again (every problem named with
    its keyword), and the keywords to pass through to the HF class, checked."""
    from pydantic import ValidationError

    from peftkit.recipes.registry import from_dict

    settings, owners, rest = recipe_settings(target, keywords)
    check_pass_through(target, rest, BUILDERS[target])
    if not settings:
        return recipe, rest
    data = recipe.model_dump(mode="json")
    for path, value in settings.items():
        *sections, name = path.split(".")
        node = data
        for part in sections:
            node = node.setdefault(part, {})
        node[name] = value
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PeftkitWarning)
            changed = from_dict(data)
    except ValidationError as error:
        named = [_named(p, owners) for p in problems(error)]
        raise ProblemsError(f"in the keyword arguments of {BUILDERS[target]}", named) from None
    shown = _doubts_of(recipe)  # shown when the recipe loaded: only the keywords' own doubts
    for warning in caught:
        if str(warning.message) not in shown:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return changed, rest


def _doubts_of(recipe: Recipe) -> set[str]:
    """Every warning validating ``recipe`` gives (its sections' and its own)."""
    from peftkit.recipes.registry import from_dict

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PeftkitWarning)
        from_dict(recipe.model_dump(mode="json"))
    return {str(warning.message) for warning in caught}


def _named(problem: Problem, owners: dict[str, str]) -> Problem:
    """``problem`` with the keyword that set its field, as ``keyword (recipe path)``."""
    for path, key in owners.items():
        if problem.path == path or problem.path.startswith(f"{path}."):
            return Problem(f"{key} ({problem.path})", problem.value, problem.rule, problem.fix)
    return problem


def check_pass_through(target: Target, fields: dict[str, Any], where: str) -> None:
    """Every field passed through to the HF class exists there and has the type it declares;
    every problem at once (a ProblemsError), before any model loads."""
    if not fields:
        return
    kind = target_class(target)
    declared = _declared(kind)
    found = []
    for key, value in fields.items():
        if key in BUILT[target] or key not in declared:
            close = difflib.get_close_matches(key, sorted(declared), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            found.append(
                Problem(
                    key,
                    value,
                    f"{kind.__name__} has no field '{key}' that a recipe can pass{hint}",
                    f"remove it, or name a {kind.__name__} field",
                )
            )
            continue
        why = _type_problem(declared.get(key), value)
        if why is not None:
            found.append(
                Problem(
                    key, value, f"{kind.__name__}.{key} takes {why}", "pass a value of that type"
                )
            )
    if found:
        raise ProblemsError(f"in the fields {where} passes to {kind.__name__}", found)


@functools.cache
def _declared(kind: type) -> dict[str, Any]:
    """The arguments ``kind`` takes and the types it declares for them (its ``__init__``'s,
    which for a dataclass are its fields; BitsAndBytesConfig's are its ``__init__``'s only)."""
    import inspect

    hints: dict[str, Any] = {}
    for source in (kind, kind.__init__):
        try:
            hints |= typing.get_type_hints(source)
        except Exception:  # a hint naming a type only imported for type checkers: names only
            continue
    parameters = inspect.signature(kind.__init__).parameters.values()
    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = [p.name for p in parameters if p.kind in plain and p.name != "self"]
    return {name: hints.get(name, MISSING) for name in names}


def _type_problem(hint: Any, value: Any) -> str | None:
    """What ``hint`` takes when ``value`` is not that; None when it is (or cannot be told)."""
    from pydantic import TypeAdapter, ValidationError

    if hint is MISSING or hint is None or hint is Any:
        return None
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(hint)
    except Exception:  # a type pydantic cannot check (a callable, a torch dtype): unchecked
        return None
    try:
        adapter.validate_python(value, strict=isinstance(value, str) and _numeric_hint(hint))
    except ValidationError as error:
        return f"{_spelled(hint)} ({error.errors(include_url=False)[0]['msg']})"
    return None


def _numeric_hint(hint: Any) -> bool:
    args = typing.get_args(hint) or (hint,)
    return any(arg in (int, float) for arg in args)


def _spelled(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


class PassThrough(Section):
    """A section that builds an HF config, and passes the config's fields it does not model
    through its ``extra`` (each section declares that field, :func:`extra_field`)."""

    TARGET: ClassVar[Target]

    @model_validator(mode="after")
    def _extra_is_passed_through(self) -> Any:
        """A key the recipe models belongs in its field (one home for it)."""
        extra = self.extra  # type: ignore[attr-defined]
        raise_all(type(self).__name__, extra_problems(self.TARGET, extra))
        return self


def extra_field(kind: str, examples: str) -> Any:
    """The ``extra`` field of a section that builds ``kind``, with examples of its fields."""
    return Field(
        default_factory=dict,
        description=f"{kind} fields the recipe does not model ({examples}), passed through; "
        f"checked against {kind} when the config is built.",
    )


def extra_problems(target: Target, extra: dict[str, Any]) -> list[Any]:
    """Keys of a section's ``extra`` that the recipe models (their home named in the fix);
    whether the others are fields of the HF class is checked when the config is built."""
    from peftkit.core.errors import rule_error
    from peftkit.recipes.overrides import token

    found = []
    for key, value in extra.items():
        home = _home(target, str(key), value)
        if isinstance(home, dict) and home:
            path = next(iter(home))
            found.append(
                rule_error(
                    ["extra", key],
                    value,
                    f"'{key}' is the recipe's {path}, which the recipe checks and builds from",
                    f"move it: set {path}={token(value)}, and remove {EXTRA[target]}.extra.{key}",
                )
            )
    return found


def passed_through(recipe: Recipe, target: Target, keywords: dict[str, Any]) -> dict[str, Any]:
    """The fields a config gets beyond what the recipe models: its section's ``extra`` (checked
    against the HF class) and the builder's keywords left over, which win."""
    section = EXTRA[target]
    extra = getattr(recipe, section).extra
    check_pass_through(target, extra, f"{section}.extra")
    return {**extra, **keywords}


def check_extras(recipe: Recipe) -> None:
    """Every ``extra`` of a recipe against its HF class, as `peftkit train` does before the
    model loads (the builders check them again when they build)."""
    for target in ("sft", "lora", "bnb"):
        check_pass_through(target, getattr(recipe, EXTRA[target]).extra, f"{EXTRA[target]}.extra")
