"""The training and evaluation sets of a run: files read and checked, their format decided, the
evaluation set given or held out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftkit.data.files import read
from peftkit.data.rows import Checked, check_rows, choose_format, row_format
from peftkit.errors import ProblemsError, RecipeError

if TYPE_CHECKING:
    from datasets import Dataset

    from peftkit.recipes.base import Recipe


@dataclass(frozen=True)
class Splits:
    """The training and evaluation data, where the evaluation data came from, and notes for the
    user about what was changed in the rows (the caller prints them)."""

    train: Dataset
    eval: Dataset | None
    format: str
    eval_source: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _File:
    name: str
    format: str
    checked: Checked


def _load(path: str | Path, wanted: str, json_answers: bool, evaluation: bool = False) -> _File:
    """One file read and every row checked; the problems are collected, not raised, so that
    training and evaluation data are reported together."""
    source = read(Path(path))
    columns = set().union(*source.rows)
    counts = Counter(row_format(row) for row in source.rows)
    fmt = choose_format(columns, counts, wanted, source.name, evaluation)
    if evaluation:
        expected = f"the training data is {fmt}"
    elif wanted == "auto":
        expected = f"most rows of the file are {fmt}"
    else:
        expected = f"data.format is '{fmt}'"
    checked = check_rows(source, fmt, expected, json_answers)
    problems = sorted([*source.problems, *checked.problems], key=lambda found: found[0])
    return _File(source.name, fmt, Checked(checked.rows, problems, checked.converted))


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
            "Fix: use a chat model, set a chat template on the tokenizer, or convert the data "
            "to prompt/completion."
        )


def prepare(recipe: Recipe, data: str | Path, eval_data: str | Path | None) -> Splits:
    """Load and check the data as the recipe says, and split off the evaluation set."""
    train = _load(data, recipe.data.format, recipe.JSON_ANSWERS)
    recipe.check_data_format(train.format, train.name)  # type: ignore[arg-type]
    files = [train]
    if eval_data is not None:
        held_out = _load(eval_data, train.format, recipe.JSON_ANSWERS, evaluation=True)
        recipe.check_data_format(held_out.format, held_out.name)  # type: ignore[arg-type]
        files.append(held_out)
    _raise_problems(files)
    notes = tuple(
        f"data '{file.name}': {file.checked.converted} answer(s) given as JSON objects or arrays "
        f"were written as JSON text, as {recipe.recipe} answers are JSON."
        for file in files
        if file.checked.converted
    )
    train_set = _dataset(train)
    if eval_data is not None:
        return Splits(train_set, _dataset(files[1]), train.format, files[1].name, notes)
    fraction = recipe.training.eval_fraction
    if fraction == 0:
        return Splits(train_set, None, train.format, "none", notes)
    if len(train_set) < 2:
        raise RecipeError(
            f"data '{train.name}': {len(train_set)} row(s) cannot be split into training and "
            "evaluation. Fix: add rows, pass --eval-data, or set training.eval_fraction=0 with "
            "training.eval_strategy=no."
        )
    size = max(1, round(len(train_set) * fraction))
    split = train_set.train_test_split(test_size=size, seed=recipe.training.seed)
    source = f"{fraction:.0%} held out (seed {recipe.training.seed})"
    return Splits(split["train"], split["test"], train.format, source, notes)
