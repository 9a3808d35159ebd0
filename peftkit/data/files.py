"""Reading data files row by row, keeping where each row is (its line in JSONL and CSV, its
position elsewhere), so that a problem can say where to look; ``datasets``' loaders lose both.

A row that cannot be read (a bad JSON line, a CSV row with too few cells, something that is not
an object) becomes a problem and is left out; the rest are still read, so that every problem of
the file is reported at once.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftkit.errors import MISSING, Problem, ProblemsError, RecipeError
from peftkit.text import read_text

JSON_ROW_EXAMPLE = '{"prompt": "...", "completion": "..."}'
TRAIN_SPLIT = "train"
EVAL_SPLITS = ("validation", "test")
"""The DatasetDict splits evaluated on, the first one found; never ``train``, whose rows are the
ones trained on."""

Found = tuple[int, Problem]
"""A problem and the line or row it is at, so that problems are reported in file order."""


@dataclass(frozen=True)
class Source:
    """The rows of one file that could be read, where each one is, and what could not be read."""

    name: str
    rows: list[dict[str, Any]]
    places: list[int]
    """The line (``unit`` "line") or 1-based position (``unit`` "row") of each row."""
    unit: str
    problems: list[Found] = field(default_factory=list)
    split: str | None = None
    """The DatasetDict split the rows come from (``name`` is then that split's folder)."""

    @property
    def described(self) -> str:
        """Where the rows come from, as ``Splits.eval_source`` says it."""
        if self.split is None:
            return self.name
        return f"the '{self.split}' split of {Path(self.name).parent}"

    def at(self, index: int, *parts: str) -> str:
        """Where row ``index`` is, followed by ``parts`` (a column, a turn)."""
        return ", ".join((self.name, f"{self.unit} {self.places[index]}", *parts))


def subject(name: str) -> str:
    return f"in data '{name}'"


def read(path: Path, evaluation: bool = False) -> Source:
    """The rows of a JSONL/JSON/CSV/Parquet file or of a folder saved with ``save_to_disk``.

    A DatasetDict folder gives its train split, or for ``evaluation`` its validation or test
    split: another split would quietly train on evaluation rows, or evaluate on training rows.
    """
    if not path.exists():
        raise RecipeError(f"data '{path}': no such file or folder. Fix: check the path.")
    if path.is_dir():
        return _with_rows(_saved_dataset(path, evaluation))
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise RecipeError(
            f"data '{path}': unknown file type '{path.suffix}'. Fix: use one of "
            f"{', '.join(READERS)} or a folder saved with Dataset.save_to_disk."
        )
    if path.stat().st_size == 0:
        raise RecipeError(f"data '{path}': the file is empty. Fix: check the path.")
    return _with_rows(reader(path))


def read_eval_split(path: Path) -> Source | None:
    """The validation or test split of the DatasetDict folder at ``path``, whose train split is
    the training data: evaluation rows its maker set aside, so none need be held out of train."""
    loaded = _load_from_disk(path)
    split = _split(loaded, evaluation=True)
    return None if split is None else _with_rows(_split_source(path, loaded[split], split))


def _with_rows(source: Source) -> Source:
    if not source.rows:
        if source.problems:
            raise ProblemsError(subject(source.name), [problem for _, problem in source.problems])
        raise RecipeError(f"data '{source.name}': no rows. Fix: check the path.")
    return source


def _text(path: Path) -> str:
    return read_text(path, "data")


def _not_object(where: str, value: Any) -> Problem:
    return Problem(
        where,
        value,
        "a row must be a JSON object with the format's columns",
        f"write the row as an object, e.g. {JSON_ROW_EXAMPLE}",
    )


def _jsonl(path: Path) -> Source:
    rows, places, problems = [], [], []
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other line separators.
    for number, line in enumerate(_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            rule = f"not valid JSON: {error.msg} (at character {error.colno})"
            fix = f"correct the line's JSON: one object per line, e.g. {JSON_ROW_EXAMPLE}"
            problems.append((number, Problem(f"{path}, line {number}", line, rule, fix)))
            continue
        if isinstance(row, dict):
            rows.append(row)
            places.append(number)
        else:
            problems.append((number, _not_object(f"{path}, line {number}", row)))
    return Source(str(path), rows, places, "line", problems)


def _json(path: Path) -> Source:
    text = _text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ProblemsError(
            subject(str(path)),
            [
                Problem(
                    f"{path}, line {error.lineno}, column {error.colno}",
                    text.split("\n")[error.lineno - 1],
                    f"not valid JSON: {error.msg}",
                    "correct the JSON there; a .json file is one array of row objects, "
                    f"[{JSON_ROW_EXAMPLE}, ...] (one object per line is a .jsonl file)",
                )
            ],
        ) from None
    if not isinstance(data, list):
        fix = f"write the rows as one array, [{JSON_ROW_EXAMPLE}, ...]"
        if isinstance(data, dict):
            inner = [key for key, value in data.items() if isinstance(value, list)]
            if inner:
                fix += f" (the rows may be the array under '{inner[0]}': save that array alone)"
        rule = "a .json data file must hold an array of rows"
        raise ProblemsError(subject(str(path)), [Problem(str(path), data, rule, fix)])
    rows, places, problems = [], [], []
    for number, row in enumerate(data, 1):
        if isinstance(row, dict):
            rows.append(row)
            places.append(number)
        else:
            problems.append((number, _not_object(f"{path}, row {number}", row)))
    return Source(str(path), rows, places, "row", problems)


def _csv(path: Path) -> Source:
    """Every cell a string, as written: CSV has no types, and guessing them turns an answer
    "007" into 7."""
    text = _text(path)
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))  # long texts are fine
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows, places, problems = [], [], []
    start = 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if header is None:
                header = [name.strip() for name in cells]
            elif len(cells) == len(header):
                rows.append(dict(zip(header, cells, strict=True)))
                places.append(line)
            else:
                problems.append((line, _cell_count(f"{path}, line {line}", header, cells)))
    except csv.Error as error:
        fix = 'quote cells that hold commas, quotes or line breaks: "a, ""b"""'
        rule = f"not valid CSV: {error}"
        problems.append((start, Problem(f"{path}, line {start}", MISSING, rule, fix)))
    if header is not None and not rows and not problems:
        raise RecipeError(
            f"data '{path}': the file has a header (columns {', '.join(header)}) but no rows. "
            "Fix: add rows under the header, one line per row with a cell for each column."
        )
    return Source(str(path), rows, places, "line", problems)


def _cell_count(where: str, header: list[str], cells: list[str]) -> Problem:
    count = f"the header has {len(header)} cells and this row {len(cells)}"
    if len(cells) < len(header):
        column = header[len(cells)]
        return Problem(
            f"{where}, column '{column}'",
            MISSING,
            f"a missing cell: {count}",
            f"give the row one cell per header column: add the '{column}' cell",
        )
    return Problem(
        f"{where}, column {len(header) + 1}",
        cells[len(header) :],
        f"extra cells: {count}",
        'quote cells that hold commas ("a, b"), or remove the extra cells',
    )


def _parquet(path: Path) -> Source:
    import pyarrow
    import pyarrow.parquet

    try:
        rows = pyarrow.parquet.read_table(path).to_pylist()
    except (pyarrow.ArrowException, OSError) as error:
        reason = str(error).rstrip(".")
        raise RecipeError(
            f"data '{path}': could not be read as Parquet: {reason}. Fix: write it with pandas' "
            "or datasets' to_parquet, or use another file type."
        ) from None
    return Source(str(path), rows, list(range(1, len(rows) + 1)), "row")


def _saved_dataset(path: Path, evaluation: bool) -> Source:
    import datasets

    loaded = _load_from_disk(path)
    if not isinstance(loaded, datasets.DatasetDict):
        return _split_source(path, loaded, None)
    split = _split(loaded, evaluation)
    if split is None:
        raise RecipeError(_missing_split(path, loaded, evaluation))
    return _split_source(path, loaded[split], split)


def _split(loaded: Any, evaluation: bool) -> str | None:
    names = EVAL_SPLITS if evaluation else (TRAIN_SPLIT,)
    return next((name for name in names if name in loaded), None)


def _missing_split(path: Path, loaded: Any, evaluation: bool) -> str:
    """Why no split of DatasetDict ``loaded`` is taken, and the folder of one to pass instead:
    for training the largest split, for evaluation any but train."""
    if evaluation:
        wanted = " or ".join(f"'{name}'" for name in EVAL_SPLITS) + " split to evaluate on"
        candidates = [name for name in loaded if name != TRAIN_SPLIT]
        option, purpose = "--eval-data", "evaluate on"
    else:
        wanted = f"'{TRAIN_SPLIT}' split"
        candidates = sorted(loaded, key=lambda name: loaded[name].num_rows, reverse=True)
        option, purpose = "--data", "train on"
    if candidates:
        example = _quoted(path / candidates[0])
        fix = f"pass the folder of the split to {purpose}, e.g. {option} {example}"
    elif evaluation:
        fix = (
            "pass evaluation data of its own with --eval-data FILE, or leave --eval-data out to "
            "hold out training.eval_fraction of the training data"
        )
    else:
        fix = "pass a .jsonl, .json, .csv or .parquet file, or a folder with rows saved in it"
    splits = ", ".join(loaded) or "none"
    problem = f"a DatasetDict folder without a {wanted} (its splits: {splits})"
    return f"data '{path}': {problem}. Fix: {fix}."


def _quoted(path: Path) -> str:
    return shlex.quote(str(path))


def _load_from_disk(path: Path) -> Any:
    import datasets

    try:
        return datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise RecipeError(
            f"data '{path}': a folder, but not one saved with Dataset.save_to_disk. "
            "Fix: pass a .jsonl, .json, .csv or .parquet file, or such a folder."
        ) from None


def _split_source(path: Path, dataset: Any, split: str | None) -> Source:
    """``dataset``'s rows; a DatasetDict's ``split`` is named by its folder, which
    ``load_from_disk`` (and so ``--data``) also takes."""
    rows = dataset.to_list()
    name = str(path if split is None else path / split)
    return Source(name, rows, list(range(1, len(rows) + 1)), "row", split=split)


READERS: dict[str, Callable[[Path], Source]] = {
    ".jsonl": _jsonl,
    ".json": _json,
    ".csv": _csv,
    ".parquet": _parquet,
}
