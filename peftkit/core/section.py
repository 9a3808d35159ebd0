"""The base of every recipe model: frozen, no unknown keys, helpful messages.

Pydantic reports an unknown key as "Extra inputs are not permitted". People paste keys from
LoraConfig, BitsAndBytesConfig or an older SFTConfig, so each section knows the foreign names
users reach for (``SUGGEST``) and the keys older TRL/transformers releases used (``RENAMED``);
a recipe's sections take both from the table of TRL and axolotl keys
(:mod:`peftkit.recipes.foreign_keys`).
Renamed keys are accepted with a :class:`~peftkit.core.errors.PeftkitDeprecationWarning`;
unknown keys stay errors, with a "did you mean" suggestion in the message itself, so a plain
``except ValidationError`` in user code shows it too.
"""

from __future__ import annotations

import typing
import warnings
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError, PydanticKnownError, core_schema

from peftkit.core.errors import PeftkitDeprecationWarning, did_you_mean, raise_all, rule_error

_CORE_ERROR_TYPES = frozenset(typing.get_args(core_schema.ErrorType))
UNKNOWN_KEY = "unknown_key"
"""Error type of an unknown key with peftkit's suggestion (pydantic calls it extra_forbidden)."""

S = TypeVar("S", bound="Section")


class Section(BaseModel):
    """A part of a recipe; immutable once validated (data flows one way, into the builders)."""

    # NaN and infinity pass most range checks (nan > 0 is False, but so is nan <= 1): refuse
    # them outright.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    RENAMED: ClassVar[dict[str, str]] = {}
    """Keys of older HF releases that are accepted, warned about and mapped: old -> new."""
    SUGGEST: ClassVar[dict[str, str]] = {}
    """Foreign names (HF config fields) that map to one of ours, for "did you mean"."""

    @classmethod
    def walk(cls, path: list[str]) -> tuple[type[Section], int]:
        """The deepest section class along dotted ``path`` from this one, and how many of
        ``path``'s names led to it (fewer than all where a name is a value or unknown)."""
        kind: type[Section] = cls
        for depth, part in enumerate(path):
            found = kind.model_fields.get(part)
            annotation = found.annotation if found else None
            if not (isinstance(annotation, type) and issubclass(annotation, Section)):
                return kind, depth
            kind = annotation
        return kind, len(path)

    @model_validator(mode="wrap")
    @classmethod
    def _friendly_keys(cls, data: Any, handler: Any) -> Any:
        found: list[InitErrorDetails] = []
        if isinstance(data, dict):
            data, found = cls._prepare(data)
        try:
            result = handler(data)
        except ValidationError as error:
            items = error.errors(include_url=False)
            raise_all(cls.__name__, [*found, *(cls._rebuild(i) for i in items)])
        raise_all(cls.__name__, found)
        return result

    @classmethod
    def _prepare(cls, data: dict[str, Any]) -> tuple[dict[str, Any], list[InitErrorDetails]]:
        """Map the raw input before field validation; problems found here join the field errors.

        The base refuses booleans where a number belongs and maps ``RENAMED`` keys; a section
        with other pasted-key conventions extends it.
        """
        booleans = [
            key
            for key, value in data.items()
            if isinstance(value, bool) and key in cls.model_fields and _numeric(cls, key)
        ]
        wrong = [
            rule_error(
                [key], data[key], "a number is needed, not true/false", _number_fix(cls, key)
            )
            for key in booleans
        ]
        data = {key: value for key, value in data.items() if key not in booleans}
        if not any(old in data for old in cls.RENAMED):
            return data, wrong
        conflicts = wrong
        for old, new in cls.RENAMED.items():
            if old not in data:
                continue
            if new in data:
                conflicts.append(
                    rule_error(
                        [old],
                        data.pop(old),
                        f"'{old}' is the old name of '{new}', and both are set",
                        f"remove it and keep '{new}'",
                    )
                )
                continue
            warn_renamed(old, new, stacklevel=3)
            data[new] = data.pop(old)
        return data, conflicts

    @classmethod
    def _foreign_key(cls, key: str, value: Any) -> InitErrorDetails | None:
        """The error for an unknown key that another tool's config has, when this section
        knows where its meaning lives (the recipe knows TRL's and axolotl's flat keys)."""
        return None

    @classmethod
    def _rebuild(cls, item: dict[str, Any]) -> InitErrorDetails:
        kind, loc, ctx = item["type"], tuple(item["loc"]), item.get("ctx")
        if _unknown_here(item):
            key = str(loc[0])
            foreign = cls._foreign_key(key, item["input"])
            if foreign is not None:
                return foreign
            hint = did_you_mean(key, cls.model_fields, cls.SUGGEST)
            allowed = ", ".join(cls.model_fields)
            return InitErrorDetails(
                type=PydanticCustomError(
                    UNKNOWN_KEY,
                    "unknown key '{key}'{hint} (allowed here: {allowed})",
                    {
                        "key": key,
                        "hint": f"; {hint}" if hint else "",
                        "allowed": allowed,
                        "fix": f"{hint} Otherwise remove it." if hint else "remove it",
                    },
                ),
                loc=loc,
                input=item["input"],
            )
        if kind in _CORE_ERROR_TYPES:
            context = dict(ctx or {})
            if len(loc) == 1 and str(loc[0]) in cls.model_fields:
                context.setdefault("example", _example(cls, str(loc[0])))
            details = InitErrorDetails(type=kind, loc=loc, input=item["input"])
            if context:
                details["ctx"] = {k: v for k, v in context.items() if v is not None}
            return details
        # A peftkit rule or a suggestion from a nested section: keep its message and context.
        return InitErrorDetails(
            type=PydanticCustomError(kind, item["msg"], ctx), loc=loc, input=item["input"]
        )


def _numeric(section: type[Section], key: str) -> bool:
    """Whether the field takes numbers and not booleans: pydantic would read ``true`` as 1."""
    kinds = set(_flat_args(section.model_fields[key].annotation))
    return bool(kinds & {int, float}) and bool not in kinds


def _number_fix(section: type[Section], key: str) -> str:
    return f"write a number, e.g. {_example(section, key) or 1}"


def _example(section: type[Section], key: str) -> str | None:
    """The field's example (else its default) as a user would write it, for fixes ("e.g. 16",
    "e.g. 0.0002 (or auto)"); None without one."""
    field = section.model_fields[key]
    example = _written(field.examples[0] if field.examples else field.default)
    if example is not None and example != "auto" and "auto" in _flat_args(field.annotation):
        return f"{example} (or auto)"
    return example


def _written(default: Any) -> str | None:
    if default is None:
        return "null"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, int | float | str):
        return str(default)
    if isinstance(default, list | tuple) and all(isinstance(item, str) for item in default):
        return f"[{', '.join(default)}]"
    return None


def _flat_args(annotation: Any) -> list[Any]:
    args = typing.get_args(annotation)
    return [annotation] if not args else [kind for arg in args for kind in _flat_args(arg)]


def _unknown_here(item: dict[str, Any]) -> bool:
    """An unknown key of this very section (not of a nested one)."""
    return item["type"] == "extra_forbidden" and len(item["loc"]) == 1


def warn_renamed(old: str, new: str, stacklevel: int = 2) -> None:
    """An old TRL/transformers key, mapped: in a recipe and as a builder's keyword alike."""
    warnings.warn(
        f"'{old}' was renamed to '{new}' in current TRL/transformers; "
        f"peftkit mapped it. Write '{new}' to silence this warning.",
        PeftkitDeprecationWarning,
        stacklevel=stacklevel + 1,
    )


def auto_or(kind: Any) -> Any:
    """A field type taking ``kind`` or the word ``auto`` (resolved later, for the model or the
    machine). A bad value gets ``kind``'s one error ("Input should be less than 1"), not one
    per branch of the union as pydantic would report it."""
    adapter: TypeAdapter[Any] = TypeAdapter(kind)

    def validate(value: Any, handler: Any) -> Any:
        if value == "auto":
            return value
        try:
            return adapter.validate_python(value)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            try:
                raise PydanticKnownError(first["type"], first.get("ctx")) from None
            except TypeError:  # not one of pydantic's own error types
                raise PydanticCustomError(first["type"], first["msg"]) from None

    return Annotated[kind | Literal["auto"], WrapValidator(validate)]


def with_defaults(section: type[S], name: str, doc: str, **defaults: Any) -> type[S]:
    """A subclass of ``section`` whose listed fields have other defaults.

    Recipes differ from each other mostly in defaults. Redeclaring a field in a subclass would drop
    its description and constraints, and a plain dict of defaults would not show in the JSON
    Schema; this keeps both, so a partial ``lora: {r: 32}`` still gets the recipe's own alpha.
    """
    unknown = set(defaults) - set(section.model_fields)
    if unknown:
        raise TypeError(f"{section.__name__} has no field(s) {sorted(unknown)}")
    fields: dict[str, Any] = {
        key: (
            section.model_fields[key].annotation,
            FieldInfo.merge_field_infos(section.model_fields[key], default=value),
        )
        for key, value in defaults.items()
    }
    model = create_model(name, __base__=section, __doc__=doc, **fields)
    model.__module__ = section.__module__
    return model
