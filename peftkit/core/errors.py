"""Errors and warnings written for people: each names the field path, the bad value, the rule
and the fix.

Validation itself is pydantic's, so users who already catch ``pydantic.ValidationError`` keep
doing so. What this module adds is the vocabulary peftkit uses on top of it: a rule violation
carries its rule and fix in the error context, and :func:`problems` turns any
``ValidationError`` into a list of :class:`Problem` that the CLI prints without a traceback.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


class PeftkitWarning(UserWarning):
    """A legal but doubtful choice; the message says why and what to do instead."""


class PeftkitDeprecationWarning(PeftkitWarning, FutureWarning):
    """An old key that peftkit still accepts and maps to its current name.

    It derives from FutureWarning too, so Python shows it by default: the user pasted the key and
    should see that it was renamed.
    """


class RecipeError(ValueError):
    """A user error outside field validation: a missing file, bad YAML, a malformed override.

    The CLI prints it as one message and exits with code 2; it derives from ValueError so that
    Python callers can keep catching what they would catch for a bad argument.
    """


class ProblemsError(RecipeError):
    """Several things wrong with one input (data rows, a model config, a YAML file), found
    together and reported together, each as a :class:`Problem`."""

    def __init__(self, subject: str, found: Sequence[Problem]) -> None:
        self.subject = subject
        self.problems = list(found)
        super().__init__(format_problems(subject, self.problems))


class MissingExtraError(ImportError):
    """A feature needs an optional dependency; the message names the extra to install."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the '{package}' package, which is not installed. "
            f"Fix: pip install 'peftkit[{extra}]'"
        )
        self.package = package
        self.extra = extra


def warn(message: str) -> None:
    """A PeftkitWarning raised from this one line, wherever the doubt is found. Python shows a
    warning once per message and place it is raised from, so a doubt two places find (a recipe
    that switches clipping off when it loads, and GradientCheck when its run starts) is shown
    once."""
    warnings.warn(message, PeftkitWarning, stacklevel=1)


def require(package: str, extra: str, feature: str) -> None:
    """Fail early, naming the extra, when an optional package is missing."""
    import importlib.util

    if importlib.util.find_spec(package) is None:
        raise MissingExtraError(package, extra, feature)


RULE = "recipe_rule"
"""Error type of every peftkit rule; its context holds ``rule`` and ``fix``."""


def rule_error(loc: Sequence[str | int], value: Any, rule: str, fix: str) -> InitErrorDetails:
    """One violated rule, located at ``loc`` relative to the model that checks it."""
    return InitErrorDetails(
        type=PydanticCustomError(RULE, "{rule}. Fix: {fix}", {"rule": rule, "fix": fix}),
        loc=tuple(loc),
        input=value,
    )


def raise_all(title: str, errors: Iterable[InitErrorDetails]) -> None:
    """Raise every collected error at once, as one ValidationError (nothing if none)."""
    errors = list(errors)
    if errors:
        raise ValidationError.from_exception_data(title, errors)


def did_you_mean(key: str, choices: Iterable[str], aliases: dict[str, str] | None = None) -> str:
    """A suggestion for a misspelled or foreign key, or an empty string."""
    import difflib

    if aliases and key in aliases:
        return f"did you mean '{aliases[key]}'? (peftkit's name for {key})"
    close = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, in the four parts a person needs to fix it: where (a field
    path, or a file with its line and column), what was found, the rule, and the fix."""

    path: str
    value: Any
    rule: str
    fix: str

    def __str__(self) -> str:
        value = "(missing)" if self.value is MISSING else _short_repr(self.value)
        return (
            f"{self.path or '(recipe)'}: got {value}\n    rule: {self.rule}\n    fix:  {self.fix}"
        )


MISSING = object()
"""The value of a Problem about something absent (a missing key, column or file)."""

MAX_SHOWN = 20
"""Problems printed at most; a huge or hostile input still gives a readable message."""
MAX_VALUE_CHARS = 80


def _short_repr(value: Any) -> str:
    text = repr(value)
    if len(text) <= MAX_VALUE_CHARS:
        return text
    return f"{text[: MAX_VALUE_CHARS - 20]}... ({len(text):,} characters)"


def with_type(value: Any) -> str:
    """A Python argument of the wrong type as a message names it: its repr (cut short) and its
    type, ``5 (int)``."""
    return f"{_short_repr(value)} ({type(value).__name__})"


def json_kind(value: Any) -> str:
    """What ``value`` is, in JSON's words, for messages about a value of the wrong type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} (not a number JSON allows)"
    kinds = {int: "an integer", float: "a decimal number", str: "a string", list: "a list"}
    kinds |= {dict: "a JSON object"}
    found = next((name for kind, name in kinds.items() if isinstance(value, kind)), None)
    return found or type(value).__name__  # Parquet and saved datasets hold more types than JSON


def format_problems(subject: str, found: Sequence[Problem]) -> str:
    """``found`` as one message: a count, then the first MAX_SHOWN problems, then how many more."""
    lines = [f"{len(found)} problem(s) {subject}:", *(f"- {p}" for p in found[:MAX_SHOWN])]
    if len(found) > MAX_SHOWN:
        lines.append(f"... and {len(found) - MAX_SHOWN} more (the first {MAX_SHOWN} are shown)")
    return "\n".join(lines)


# Fixes for pydantic's own error types; the rule is pydantic's message. A section adds the
# field's default to the context as ``example``; types whose fix needs a value fall back to
# _EXAMPLES without one.
_FIXES = {
    "missing": "add this field",
    "extra_forbidden": "remove this key; `peftkit schema` lists the allowed keys",
    "unknown_key": "remove this key; `peftkit schema` lists the allowed keys",
    "literal_error": "use one of the values named in the rule",
    "enum": "use one of the values named in the rule",
    "greater_than": "use a value above {gt}",
    "greater_than_equal": "use a value of at least {ge}",
    "less_than": "use a value below {lt}",
    "less_than_equal": "use a value of at most {le}",
    "int_parsing": "write a whole number",
    "int_from_float": "write a whole number",
    "int_type": "write a whole number",
    "float_parsing": "write a number",
    "float_type": "write a number",
    "finite_number": "write a finite number",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "string_type": "write a string",
    "string_too_short": "write a non-empty string",
    "dict_type": "write a mapping (key: value lines)",
    "model_type": "write a mapping (key: value lines)",
    "model_attributes_type": "write a mapping (key: value lines)",
    "tuple_type": "write a list",
    "list_type": "write a list",
    "too_short": "give at least {min_length} item(s)",
    "union_tag_not_found": "add the key `recipe:` naming one of the recipes",
    "union_tag_invalid": "use one of the recipe names listed in the rule",
}
_NO_EXAMPLE = {
    "greater_than_equal",
    "less_than_equal",
    "too_short",
    "dict_type",
    "model_type",
    "model_attributes_type",
}
"""Inclusive bounds (the bound itself is the nearest valid value, a better fix than a default)
and sections (whose default, often null, is no example of a mapping)."""
_EXAMPLES = {
    "int_parsing": "16",
    "int_from_float": "16",
    "int_type": "16",
    "float_parsing": "0.0002",
    "float_type": "0.0002",
    "finite_number": "0.0002",
}


def _fix(kind: str, ctx: dict[str, Any]) -> str:
    fix = ctx.get("fix") or _FIXES.get(kind, "see `peftkit schema`").format(**ctx)
    example = ctx.get("example") or _EXAMPLES.get(kind)
    if example is not None and "e.g." not in fix and kind not in _NO_EXAMPLE:
        fix += f", e.g. {example}"
    return fix


def problems(error: ValidationError) -> list[Problem]:
    """Every error of a ValidationError as a Problem (path, value, rule, fix).

    A field with several allowed types (``"all-linear"`` or a list) fails once per type, under
    pydantic's internal branch names; those are dropped from the path and the failures merged.
    """
    found: dict[tuple[str, str], Problem] = {}
    for item in error.errors(include_url=False):
        ctx = item.get("ctx") or {}
        path = ".".join(str(part) for part in item["loc"] if _is_field(part))
        value = MISSING if item["type"] == "missing" else item.get("input")
        if item["type"] == RULE:
            rule, fix = ctx["rule"], ctx["fix"]
        else:
            rule = item["msg"]
            fix = _fix(item["type"], ctx)
        key = (path, repr(value))
        if key in found:
            earlier = found[key]
            found[key] = Problem(path, value, f"{earlier.rule}; or {rule}", earlier.fix)
        else:
            found[key] = Problem(path, value, rule, fix)
    return list(found.values())


def _is_field(part: str | int) -> bool:
    """A field name or list index, not a union branch such as ``tuple[str, ...]``."""
    return isinstance(part, int) or "[" not in part


def problems_of(error: BaseException) -> list[dict[str, Any]]:
    """A user error as JSON-ready problems (``--json``): field, value, rule and fix where the
    error has them, else its message."""
    if isinstance(error, ValidationError):
        found: Sequence[Problem] = problems(error)
    elif isinstance(error, ProblemsError):
        found = error.problems
    else:
        return [{"message": str(error)}]
    return [
        {
            "field": p.path,
            "value": None if p.value is MISSING else json_safe(p.value),
            "rule": p.rule,
            "fix": p.fix,
        }
        for p in found
    ]


def json_safe(value: Any) -> Any:
    """``value`` if JSON can hold it, else its repr."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


def describe(error: BaseException) -> str:
    """The text the CLI prints for a user error: every problem, no traceback."""
    if isinstance(error, ValidationError):
        return format_problems("in the recipe", problems(error))
    return str(error)
