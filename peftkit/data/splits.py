"""The training and evaluation sets of a run: files read and checked, their format decided, the
evaluation set given or held out."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftkit.core.errors import ProblemsError, RecipeError
from peftkit.core.formats import row_format
from peftkit.data.chat import add_system_prompt
from peftkit.data.reading import Source, read, read_eval_split
from peftkit.data.rows import Checked, check_rows, choose_format
from peftkit.recipes.chat_templates import CHAT_TEMPLATES
from peftkit.recipes.overrides import assignments
from peftkit.recipes.rules import EVALUATION_OFF

if TYPE_CHECKING:
    from datasets import Dataset

    from peftkit.recipes.base import Recipe


_ROW = "__peftkit_row__"
"""A column that carries each row's position through the shuffle of the held-out split."""


@dataclass(frozen=True)
class Splits:
    """The training and evaluation data, where the evaluation data came from, and notes for the
    user about what was changed in the rows (the caller prints them)."""

    train: Dataset
    eval: Dataset | None
    format: str
    eval_source: str
    notes: tuple[str, ...] = ()
    train_places: tuple[str, ...] = ()
    """Where each training row is in its file ("train.jsonl, line 12"), for the data audit."""
    eval_places: tuple[str, ...] = ()


@dataclass(frozen=True)
class _File:
    name: str
    format: str
    checked: Checked
    places: tuple[str, ...]


def _load(source: Source, recipe: Recipe, wanted: str, evaluation: bool = False) -> _File:
    """One file's rows checked; the problems are collected, not raised, so that training and
    evaluation data are reported together."""
    columns = set().union(*source.rows)
    counts = Counter(row_format(row) for row in source.rows)
    fmt = choose_format(columns, counts, wanted, source.name, recipe.DATA_FORMATS, evaluation)
    if evaluation:
        expected = f"the training data is {fmt}"
    elif wanted == "auto":
        expected = f"most rows of the file are {fmt}"
    else:
        expected = f"data.format is '{fmt}'"
    checked = check_rows(source, fmt, expected, recipe.JSON_ANSWERS)
    problems = sorted([*source.problems, *checked.problems], key=lambda found: found[0])
    recipe.check_data_format(fmt, source.name)  # type: ignore[arg-type]
    rows = checked.rows
    if recipe.data.system_prompt is not None and not problems:
        rows = add_system_prompt(rows, recipe.data.system_prompt, f"data '{source.name}'")
    places = tuple(f"{source.name}, {source.unit} {place}" for place in source.places)
    return _File(source.name, fmt, Checked(rows, problems, checked.converted), places)


def _raise_problems(files: list[_File]) -> None:
    bad = [file for file in files if file.checked.problems]
    if bad:
        names = " and ".join(f"'{file.name}'" for file in bad)
        found = [problem for file in bad for _, problem in file.checked.problems]
        raise ProblemsError(f"in data {names}", found)


def _dataset(file: _File) -> Dataset:
    import pyarrow
    from datasets import Dataset

    try:
        return Dataset.from_list(file.checked.rows)
    except (pyarrow.ArrowInvalid, pyarrow.ArrowTypeError) as error:
        raise RecipeError(
            f"data '{file.name}': the rows cannot be stored as one table: {error}. Fix: give "
            "each key the same type in every row (extra keys of chat turns included)."
        ) from None


def check_chat(splits: Splits, tokenizer: Any) -> None:
    """Chat data needs a chat template to turn turns into text."""
    if splits.format == "messages" and tokenizer.chat_template is None:
        raise RecipeError(
            "the data is chat data (messages), but the model's tokenizer has no chat template. "
            f"Fix: set data.chat_template (one of {', '.join(CHAT_TEMPLATES)}, or a Jinja file), "
            "or convert the data to prompt/completion."
        )


def prepare(recipe: Recipe, data: str | Path, eval_data: str | Path | None) -> Splits:
    """Load and check the data as the recipe says, and split off the evaluation set: the
    ``--eval-data`` rows, else the validation split of a DatasetDict folder, else
    ``training.eval_fraction`` of the training rows."""
    source = read(Path(data))
    train = _load(source, recipe, recipe.data.format)
    if eval_data is not None:
        held_out: Source | None = read(Path(eval_data), evaluation=True)
    elif source.split is not None:
        held_out = read_eval_split(Path(data))
    else:
        held_out = None
    files = [train]
    if held_out is not None:
        files.append(_load(held_out, recipe, train.format, evaluation=True))
    _raise_problems(files)
    notes = tuple(
        f"data '{file.name}': {file.checked.converted} answer(s) given as JSON objects or arrays "
        f"were written as JSON text, as {recipe.recipe} answers are JSON."
        for file in files
        if file.checked.converted
    )
    train_set = _dataset(train)
    if held_out is not None:
        return Splits(
            train_set, _dataset(files[1]), train.format, held_out.described, notes,
            train.places, files[1].places,
        )  # fmt: skip
    fraction = recipe.training.eval_fraction
    if fraction == 0:
        return Splits(train_set, None, train.format, "none", notes, train.places)
    rows = len(train_set)
    if rows < 2:
        raise RecipeError(
            f"data '{train.name}': {rows} row(s) cannot be split into training and evaluation. "
            f"Fix: pass --eval-data FILE, or set training.eval_fraction=0 "
            f"{assignments(EVALUATION_OFF)}."
        )
    # rounded first: 100 * 0.29 is 28.999999999999996 in floating point
    size = max(1, math.floor(round(rows * fraction, 6)))
    seed = recipe.training.seed
    numbered = train_set.add_column(_ROW, list(range(rows)))
    split = numbered.train_test_split(test_size=size, seed=seed)
    places = {name: tuple(train.places[i] for i in split[name][_ROW]) for name in split}
    described = f"{size} of {rows} rows held out (eval_fraction {fraction:g}, seed {seed})"
    return Splits(
        split["train"].remove_columns(_ROW), split["test"].remove_columns(_ROW), train.format,
        described, notes, places["train"], places["test"],
    )  # fmt: skip
