"""Every public entry point of the library checks its arguments up front, as a recipe checks its
fields: ``recipes.load``, the callbacks' constructors and ``recipe.build_callbacks``. A bad
argument is a RecipeError (a ValueError) naming the argument, the value and the fix, raised
before any file is read or any step trained; a value pydantic would coerce ("3" for 3) is
coerced. Fuzzed with hypothesis: whatever the arguments, a result or such an error, never
another exception.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peftkit import recipes
from peftkit.callbacks import EarlyStopping, GradientCheck, OverfitDetector
from peftkit.core.errors import RecipeError

# --- recipes.load ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "mentions"),
    [
        ("lora.r=8", ["overrides", "the string 'lora.r=8'", "overrides=['lora.r=8']"]),
        (b"lora.r=8", ["overrides", "string", "overrides=['lora.r=8']"]),
        (["lora.r=8", 5], ["overrides", "item 1", "5 (int)", "'section.field=value'"]),
        ([None], ["overrides", "item 0", "None (NoneType)"]),
        (5, ["overrides", "5 (int)", "overrides=["]),
        ({"lora.r": 8}, ["overrides", "(dict)", "overrides=["]),
    ],
    ids=["a-string", "bytes", "a-list-holding-an-int", "a-list-holding-none", "an-int", "a-dict"],
)
def test_load_refuses_overrides_of_another_type(overrides: Any, mentions: list[str]) -> None:
    with pytest.raises(RecipeError) as info:
        recipes.load("json-output", overrides)
    for text in mentions:
        assert text in str(info.value)


def test_load_takes_none_and_any_iterable_of_strings_as_overrides() -> None:
    """None means no overrides (as the CLI passes it); a tuple or a generator is a list."""
    assert recipes.load("json-output", None) == recipes.load("json-output")
    by_generator = recipes.load("json-output", (o for o in ["lora.r=8"]))
    assert by_generator.lora.r == recipes.load("json-output", ("lora.r=8",)).lora.r == 8


@pytest.mark.parametrize(
    "source", [5, None, ["json-output"], "", "json\0output"], ids=repr
)  # fmt: skip
def test_load_refuses_a_source_that_names_nothing(source: Any) -> None:
    with pytest.raises(RecipeError) as info:
        recipes.load(source)
    assert "recipes.load(source=...)" in str(info.value)
    assert "Fix:" in str(info.value)


def test_load_takes_a_path_object(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(recipes.load("json-output").to_yaml())
    assert recipes.load(path) == recipes.load("json-output")


# --- the callbacks' constructors ---------------------------------------------------------------


def test_a_number_given_as_text_is_coerced_as_a_recipe_coerces_it() -> None:
    """EarlyStopping(patience="1") used to keep the string and die at the first evaluation
    with a TypeError; it is 1, as `patience: "1"` in a recipe is."""
    stopper = EarlyStopping(patience="1", min_delta="0.5", save_best_to=Path("best"))
    assert (stopper.patience, stopper.min_delta) == (1, 0.5)
    assert stopper.state()["args"]["patience"] == 1
    assert stopper.save_best_to == Path("best")
    assert GradientCheck(window="7").window == 7
    assert OverfitDetector(patience="4").patience == 4


@pytest.mark.parametrize(
    ("build", "mentions"),
    [
        (lambda: EarlyStopping(patience="soon"), ["EarlyStopping", "patience", "'soon'", "fix"]),
        (lambda: EarlyStopping(patience=0), ["patience", "greater than or equal to 1"]),
        (lambda: EarlyStopping(patience=True), ["patience", "not true/false"]),
        (lambda: EarlyStopping(min_delta=math.nan), ["min_delta", "finite"]),
        (lambda: EarlyStopping(mode="up"), ["mode", "'min', 'max' or 'auto'"]),
        (lambda: EarlyStopping(save_best_to=5), ["save_best_to", "5", "string"]),
        (lambda: EarlyStopping(metric=""), ["metric", "at least 1 character"]),
        (lambda: OverfitDetector(action="halt"), ["OverfitDetector", "action", "'warn' or 'stop'"]),
        (lambda: GradientCheck(spike_factor=1), ["GradientCheck", "spike_factor", "than 1"]),
    ],
    ids=["text", "zero", "boolean", "nan", "mode", "path-type", "empty-metric", "action", "spike"],
)
def test_a_bad_argument_is_refused_when_the_callback_is_made(build: Any, mentions: list[str]):
    with pytest.raises(RecipeError) as info:
        build()
    for text in mentions:
        assert text in str(info.value)


def test_every_bad_argument_is_reported_at_once() -> None:
    with pytest.raises(RecipeError) as info:
        EarlyStopping(patience="x", mode="up", min_delta=-1)
    message = str(info.value)
    assert "3 problem(s) in the arguments of EarlyStopping" in message
    assert all(name in message for name in ("patience", "mode", "min_delta"))


# --- recipe.build_callbacks ----------------------------------------------------------------------


@pytest.mark.parametrize("folder", [5, ["best"], b"best"], ids=repr)
def test_build_callbacks_refuses_a_folder_that_is_not_a_path(folder: Any) -> None:
    with pytest.raises(RecipeError) as info:
        recipes.load("json-output").build_callbacks(folder)
    assert "best_adapter_dir" in str(info.value) and "Fix:" in str(info.value)


def test_build_callbacks_takes_a_path(tmp_path: Path) -> None:
    stopper, *_ = recipes.load("json-output").build_callbacks(tmp_path / "best")
    assert stopper.save_best_to == tmp_path / "best"


# --- fuzzing -----------------------------------------------------------------------------------

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["1", "0.5", "eval_loss", "min", "max", "auto", "warn", "stop", "rollback"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.binary(max_size=4),
)
"""Any argument a caller might pass by mistake, and the right ones."""
NAMING_ERRORS = (RecipeError, ValueError)


def _names_an_argument(error: BaseException, names: list[str]) -> bool:
    return any(name in str(error) for name in names)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.one_of(VALUES, st.sampled_from(["json-output", "qlora-budget"])),
       overrides=st.one_of(VALUES, st.lists(VALUES, max_size=3),
                           st.lists(st.sampled_from(["lora.r=8", "lora.r=x", "x", "=", "a.b=1"]),
                                    max_size=3)))  # fmt: skip
def test_load_answers_or_names_the_argument(source: Any, overrides: Any) -> None:
    try:
        recipes.load(source, overrides)
    except NAMING_ERRORS as error:
        assert _names_an_argument(error, ["source", "overrides", "override", "recipe"]), error


def _arguments(callback: type) -> Any:
    """Keyword arguments of ``callback``, each any value: the names of its settings model."""
    names = sorted(set(callback.SETTINGS.model_fields) - {"enabled"})
    return st.dictionaries(st.sampled_from(names), VALUES, max_size=4)


@settings(max_examples=150, deadline=None)
@given(callback=st.sampled_from([EarlyStopping, OverfitDetector, GradientCheck]), data=st.data())
def test_callbacks_answer_or_name_the_argument(callback: type, data: Any) -> None:
    args = data.draw(_arguments(callback))
    try:
        made = callback(**args)
    except NAMING_ERRORS as error:
        assert _names_an_argument(error, list(args)), error
        return
    kept = {k: v for k, v in made.state()["args"].items() if v is not None}
    callback.SETTINGS.model_validate(kept)  # what it kept is what its settings model accepts


@settings(max_examples=60, deadline=None)
@given(folder=VALUES)
def test_build_callbacks_answers_or_names_the_argument(folder: Any) -> None:
    recipe = recipes.load("json-output")
    try:
        recipe.build_callbacks(folder)
    except NAMING_ERRORS as error:
        assert _names_an_argument(error, ["best_adapter_dir"]), error
