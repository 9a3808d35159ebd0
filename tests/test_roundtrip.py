"""Recipes survive YAML: load -> to_yaml -> load gives an equal recipe, the shipped files are
exactly what the classes write, and no input (however odd) crashes validation with anything but a
ValidationError or RecipeError.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from peftkit import RecipeError, recipes
from peftkit.core.errors import describe, problems
from peftkit.recipes.training import Scheduler

SHIPPED = Path(__file__).resolve().parents[1] / "recipes"
FIXTURE_OK = [HealthCheck.function_scoped_fixture]  # tmp_path is only overwritten, never reused


def reload(recipe: recipes.Recipe, path: Path) -> recipes.Recipe:
    """Write a recipe's YAML to ``path`` and load it back."""
    path.write_text(recipe.to_yaml(), encoding="utf-8")
    return recipes.load(path)


# --- built-in recipes ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(recipes.BUILTIN))
def test_builtin_survives_yaml(name: str, tmp_path: Path) -> None:
    """A built-in recipe written with to_yaml loads back equal."""
    recipe = recipes.load(name)
    assert reload(recipe, tmp_path / "copy.yaml") == recipe


@pytest.mark.parametrize(("name", "kind"), sorted(recipes.BUILTIN.items()))
def test_shipped_file_is_what_the_class_writes(name: str, kind: type[recipes.Recipe]) -> None:
    """recipes/<name>.yaml is byte for byte ``to_yaml(Class())``, so the files never drift from
    the classes (``make recipes`` regenerates them), and loading it gives ``Class()``."""
    assert (SHIPPED / f"{name}.yaml").read_text(encoding="utf-8") == recipes.to_yaml(kind())
    assert recipes.load(name) == kind()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("null", id="null"),
        pytest.param("yes", id="yes"),
        pytest.param("1e3", id="number-like"),
        pytest.param("~", id="tilde"),
        pytest.param("a: b", id="colon"),
        pytest.param("#x", id="hash"),
        pytest.param("- a", id="dash"),
        pytest.param(" padded ", id="spaces"),
        pytest.param("line\nbreak", id="newline"),
        pytest.param("tab\there", id="tab"),
        pytest.param("Grüße/ßß", id="non-ascii"),
        pytest.param("next\x85line", id="next-line-U+0085"),
    ],
)
def test_strings_that_need_quoting_survive_yaml(text: str, tmp_path: Path) -> None:
    """Model names and paths that YAML would read as something else come back unchanged."""
    recipe = recipes.JsonOutput(model=text, data={"train_path": text})
    assert reload(recipe, tmp_path / "recipe.yaml") == recipe


# --- random valid recipes -----------------------------------------------------------------------

IDENTIFIER = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
NOT_ATTENTION = st.sampled_from(["gate_proj", "up_proj", "down_proj", "fc1", "fc2", "dense"])
TARGET_MODULES = st.one_of(
    st.just("all-linear"),
    st.builds(lambda first, rest: [first, *rest], NOT_ATTENTION, st.lists(IDENTIFIER, max_size=4)),
)
# Any text a user could type (U+0085 has its own test below, so that a failure is not by chance).
MODEL_NAME = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x85"), min_size=1, max_size=30
)
SMALL_SCHEMA = st.builds(
    lambda props: {"type": "object", "properties": props, "required": sorted(props)},
    st.dictionaries(
        IDENTIFIER,
        st.sampled_from(["string", "integer", "number", "boolean"]).map(lambda t: {"type": t}),
        max_size=3,
    ),
)


@st.composite
def lora_sections(draw: st.DrawFn) -> dict[str, Any]:
    """A partial lora section whose alpha/r stays within the usual [0.25, 4]."""
    r = draw(st.integers(1, 256))
    section = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "dropout": st.floats(0, 0.5),
                "target_modules": TARGET_MODULES,
                "use_dora": st.booleans(),
                "bias": st.sampled_from(["none", "all", "lora_only"]),
            },
        )
    )
    section["r"] = r
    if draw(st.booleans()):
        section["alpha"] = r * draw(st.floats(0.25, 4))
    else:  # a partial section keeps the recipe's alpha; only ranks that fit it with that
        section["r"] = draw(st.sampled_from([8, 16, 32, 64]))
    return section


TRAINING_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "learning_rate": st.floats(5e-5, 1e-3),
        "epochs": st.one_of(st.integers(1, 3), st.floats(0.1, 3)),
        "batch_size": st.integers(1, 64),
        "max_length": st.integers(16, 8192),
        "packing": st.booleans(),
        "lr_scheduler": st.sampled_from(get_args(Scheduler)),
        "seed": st.integers(0, 2**32 - 1),
        "max_steps": st.none() | st.integers(1, 10_000),
        "warmup_steps": st.floats(0, 0.5) | st.integers(1, 500).map(float),
    },
)


def _warmup_that_applies(section: dict[str, Any]) -> dict[str, Any]:
    """The warmup rules: no warmup with a constant schedule, none as long as the run."""
    constant = section.get("lr_scheduler") == "constant"
    warmup, steps = section.get("warmup_steps", 0.03), section.get("max_steps")
    if constant or (steps is not None and warmup >= 1 and warmup >= steps):
        section["warmup_steps"] = 0.0
    return section


TRAINING = TRAINING_FIELDS.map(_warmup_that_applies)


@st.composite
def valid_recipes(draw: st.DrawFn) -> dict[str, Any]:
    """A recipe mapping that validates: a built-in plus a few valid changes."""
    name = draw(st.sampled_from(sorted(recipes.BUILTIN)))
    data: dict[str, Any] = {"recipe": name}
    if draw(st.booleans()):
        data["lora"] = draw(lora_sections())
    if draw(st.booleans()):
        data["training"] = draw(TRAINING)
    if draw(st.booleans()):
        data["model"] = draw(MODEL_NAME | st.fixed_dictionaries({"name": MODEL_NAME}))
    if name == "json-output":
        if draw(st.booleans()):
            data["json_schema"] = draw(st.none() | SMALL_SCHEMA)
        if draw(st.booleans()):
            data["data"] = {"format": draw(st.sampled_from(["prompt-completion", "messages"]))}
    return data


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURE_OK)
@given(data=valid_recipes())
def test_random_valid_recipe_survives_yaml(data: dict[str, Any], tmp_path: Path) -> None:
    """Any valid recipe, written with to_yaml and loaded back, is equal to itself, and writing
    it again gives the same text."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recipe = recipes.from_dict(data)
        again = reload(recipe, tmp_path / "recipe.yaml")
    assert again == recipe
    assert again.to_yaml() == recipe.to_yaml()


# --- random junk never crashes ------------------------------------------------------------------

FIELD_NAMES = [
    "recipe",
    "method",
    "model",
    "name",
    "lora",
    "r",
    "alpha",
    "target_modules",
    "training",
    "learning_rate",
    "max_seq_length",
    "max_length",
    "quantization",
    "bits",
    "load_in_4bit",
    "load_in_8bit",
    "data",
    "format",
    "callbacks",
    "early_stopping",
    "enabled",
    "json_schema",
    "$schema",
    "type",
]
WORDS = [
    *recipes.BUILTIN,
    "custom",
    "lora",
    "qlora",
    "full",
    "text",
    "all-linear",
    "bfloat16",
    "steps",
    "no",
]
KEYS = st.sampled_from(FIELD_NAMES) | st.text(max_size=8)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(WORDS)
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)
MAPPINGS = st.dictionaries(KEYS, VALUES, max_size=6)


def check_only_validation_errors(validate: Any, data: Any) -> None:
    """``validate(data)`` either succeeds or raises a ValidationError that the CLI can print."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            validate(data)
        except ValidationError as error:
            assert all(p.rule and p.fix for p in problems(error))
            assert describe(error)


@settings(max_examples=200, deadline=None)
@given(data=MAPPINGS | VALUES)
@example(data={"recipe": ["json-output"]})
def test_from_dict_raises_only_validation_errors(data: Any) -> None:
    """Whatever a YAML file could hold, from_dict validates it or raises ValidationError."""
    check_only_validation_errors(recipes.from_dict, data)


@settings(max_examples=200, deadline=None)
@given(data=MAPPINGS)
@example(data={"json_schema": {"$schema": 5}})
def test_model_validate_raises_only_validation_errors(data: dict[str, Any]) -> None:
    """The same holds for a recipe class used directly, which also checks json_schema."""
    check_only_validation_errors(recipes.JsonOutput.model_validate, data)


YAMLISH_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",))),
    MAPPINGS.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
)


@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURE_OK)
@given(text=YAMLISH_TEXT)
@example(text="recipe: [json-output]\n")
@example(text="recipe: json-output\njson_schema: {$schema: 5}\n")
def test_any_file_loads_or_raises_a_user_error(text: str, tmp_path: Path) -> None:
    """Random text in a recipe file gives a recipe, a ValidationError or a RecipeError: never a
    crash that the CLI would show as a traceback."""
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            recipes.load(path)
        except (ValidationError, RecipeError) as error:
            assert describe(error)
