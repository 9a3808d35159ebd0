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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftkit.errors import MISSING, Problem, ProblemsError, RecipeError
from peftkit.text import read_text

JSON_ROW_EXAMPLE = '{"prompt": "...", "completion": "..."}'

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

    def at(self, index: int, *parts: str) -> str:
        """Where row ``index`` is, followed by ``parts`` (a column, a turn)."""
        return ", ".join((self.name, f"{self.unit} {self.places[index]}", *parts))


def subject(name: str) -> str:
    return f"in data '{name}'"


def read(path: Path) -> Source:
    """The rows of a JSONL/JSON/CSV/Parquet file or of a folder saved with ``save_to_disk``."""
    if not path.exists():
        raise RecipeError(f"data '{path}': no such file or folder. Fix: check the path.")
    if path.is_dir():
        source = _saved_dataset(path)
    else:
        reader = READERS.get(path.suffix.lower())
        if reader is None:
            raise RecipeError(
                f"data '{path}': unknown file type '{path.suffix}'. Fix: use one of "
                f"{', '.join(READERS)} or a folder saved with Dataset.save_to_disk."
            )
        if path.stat().st_size == 0:
            raise RecipeError(f"data '{path}': the file is empty. Fix: check the path.")
        source = reader(path)
    if not source.rows:
        if source.problems:
            raise ProblemsError(subject(source.name), [problem for _, problem in source.problems])
        raise RecipeError(f"data '{path}': no rows. Fix: check the path.")
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


def _saved_dataset(path: Path) -> Source:
    """A DatasetDict folder gives its ``train`` split, or its first."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise RecipeError(
            f"data '{path}': a folder, but not one saved with Dataset.save_to_disk. "
            "Fix: pass a .jsonl, .json, .csv or .parquet file, or such a folder."
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
    rows = loaded.to_list()
    return Source(str(path), rows, list(range(1, len(rows) + 1)), "row")


READERS: dict[str, Callable[[Path], Source]] = {
    ".jsonl": _jsonl,
    ".json": _json,
    ".csv": _csv,
    ".parquet": _parquet,
}
