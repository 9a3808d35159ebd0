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

from peftkit.core.errors import MISSING, Problem, ProblemsError, RecipeError
from peftkit.core.text import MAX_DEPTH, MAX_DIGITS, read_text

JSON_ROW_EXAMPLE = '{"prompt": "...", "completion": "..."}'
TRAIN_SPLIT = "train"
EVAL_SPLITS = ("validation", "test")
"""The DatasetDict splits evaluated on, the first one found; never ``train``, whose rows are the
ones trained on."""

Found = tuple[int, Problem]
"""A problem and the line or row it is at, so that problems are reported in file order."""


class OddValue(ValueError):
    """A value JSON allows and a row cannot hold (a key given twice in one object, a number
    too long, nesting too deep): its rule and fix, and where in the text it starts."""

    def __init__(self, value: Any, rule: str, fix: str) -> None:
        super().__init__(rule)
        self.value, self.rule, self.fix = value, rule, fix
        self.position: int | None = None


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's members, refusing a key given twice (json keeps the last without a word)."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise OddValue(
                key,
                f"the key '{key}' appears twice in one object; a JSON reader keeps only the "
                "last value",
                f"keep one '{key}' (or rename one of them)",
            )
        seen.add(key)
    return dict(pairs)


def _integer(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise OddValue(
            f"{text[:12]}... ({digits:,} digits)",
            f"a number of {digits:,} digits; a row's numbers have at most {MAX_DIGITS}",
            "write it as a string (in quotes), or remove it",
        )
    return int(text)


def _deep(value: Any) -> int:
    """How deeply ``value`` nests, counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                children = item.values() if isinstance(item, dict) else item
                stack.extend((child, depth + 1) for child in children)
    return deepest


def loads(text: str) -> Any:
    """``json.loads`` for rows: a key given twice, a number too long or nesting too deep is
    an :class:`OddValue` rather than a silent choice, a ValueError or a RecursionError."""
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_int=_integer)
    except RecursionError:
        value = None
    else:
        if _deep(value) <= MAX_DEPTH:
            return value
    raise OddValue(
        f"{text[:20]}...",
        f"a value nested more than {MAX_DEPTH} levels deep",
        "flatten the value, or write it as a JSON string",
    )


def _locate(text: str, odd: OddValue) -> int:
    """The line where the object holding ``odd`` starts, found again by a parser that keeps
    its place (slower, so used only once something odd was found); 1 if it cannot tell."""
    from json.decoder import JSONObject
    from json.scanner import py_make_scanner  # type: ignore[attr-defined]

    decoder = json.JSONDecoder(object_pairs_hook=_pairs, parse_int=_integer)

    def parse_object(s_and_end: tuple[str, int], *args: Any) -> Any:
        try:
            return JSONObject(s_and_end, *args)
        except OddValue as found:
            found.position = s_and_end[1] if found.position is None else found.position
            raise

    decoder.parse_object = parse_object  # type: ignore[attr-defined]
    decoder.scan_once = py_make_scanner(decoder)  # type: ignore[attr-defined]
    try:
        decoder.decode(text)
    except OddValue as found:
        return text.count("\n", 0, found.position or 0) + 1
    except (ValueError, RecursionError):
        pass
    return 1


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


def _objects(
    path: Path, unit: str, numbered: list[tuple[int, Any]], problems: list[Found]
) -> Source:
    """The rows among the ``numbered`` values (the objects) and where each is; every other
    value is a problem, reported in file order with the ``problems`` found reading."""
    rows, places = [], []
    for number, row in numbered:
        if isinstance(row, dict):
            rows.append(row)
            places.append(number)
        else:
            problems.append((number, _not_object(f"{path}, {unit} {number}", row)))
    return Source(str(path), rows, places, unit, sorted(problems, key=lambda found: found[0]))


def _jsonl(path: Path) -> Source:
    parsed, problems = [], []
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other line separators.
    for number, line in enumerate(_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            parsed.append((number, loads(line)))
        except json.JSONDecodeError as error:
            rule = f"not valid JSON: {error.msg} (at character {error.colno})"
            fix = f"correct the line's JSON: one object per line, e.g. {JSON_ROW_EXAMPLE}"
            problems.append((number, Problem(f"{path}, line {number}", line, rule, fix)))
        except OddValue as odd:
            problem = Problem(f"{path}, line {number}", odd.value, odd.rule, odd.fix)
            problems.append((number, problem))
    return _objects(path, "line", parsed, problems)


def _json(path: Path) -> Source:
    text = _text(path)
    try:
        data = loads(text)
    except OddValue as odd:
        where = f"{path}, line {_locate(text, odd)}"
        problem = Problem(where, odd.value, odd.rule, odd.fix)
        raise ProblemsError(subject(str(path)), [problem]) from None
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
    return _objects(path, "row", list(enumerate(data, 1)), [])


def _csv(path: Path) -> Source:
    """Every cell a string, as written: CSV has no types, and guessing them turns an answer
    "007" into 7."""
    text = _text(path)
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))  # long texts are fine
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows, places, problems = [], [], []
    start = line = 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if header is None:
                header = [name.strip() for name in cells]
                problems += _repeated_columns(f"{path}, line {line}", header, line)
            elif len(cells) == len(header):
                rows.append(dict(zip(header, cells, strict=True)))
                places.append(line)
            else:
                problems.append((line, _cell_count(f"{path}, line {line}", header, cells)))
    except csv.Error as error:
        fix = 'quote cells that hold commas, quotes or line breaks: "a, ""b"""'
        rule = f"not valid CSV: {error}"
        problems.append((start, Problem(f"{path}, line {start}", MISSING, rule, fix)))
    else:
        unclosed = _unclosed_quote(text, line)
        if unclosed is not None:  # the last row ran to the end of the file: it is not a row
            problems = [(n, p) for n, p in problems if n != line]
            if places and places[-1] == line:
                rows, places = rows[:-1], places[:-1]
            problems.append((line, Problem(f"{path}, line {line}", unclosed, *UNCLOSED)))
    if header is not None and not rows and not problems:
        raise RecipeError(
            f"data '{path}': the file has a header (columns {', '.join(header)}) but no rows. "
            "Fix: add rows under the header, one line per row with a cell for each column."
        )
    return Source(str(path), rows, places, "line", problems)


UNCLOSED = (
    "a quoted cell is never closed: its opening quote runs to the end of the file, taking "
    "every line after it into one cell",
    'close the quote, and double a quote that belongs inside a cell: "say ""hi"""',
)


def _unclosed_quote(text: str, line: int) -> str | None:
    """The start of the last row (at ``line``) when it opens a quote it never closes; a CSV
    reader takes the rest of the file into that cell without a word."""
    rest = "\n".join(text.split("\n")[line - 1 :])  # lines as the CSV reader counts them
    if rest.count('"') % 2 == 0:
        return None
    return rest.split("\n", 1)[0]


def _repeated_columns(where: str, header: list[str], line: int) -> list[Found]:
    """A column named twice in the header: each row would keep only one of its two cells."""
    twice = sorted({name for name in header if header.count(name) > 1})
    return [
        (
            line,
            Problem(
                f"{where}, column '{name}'",
                name,
                f"the header names the column '{name}' {header.count(name)} times; a row keeps "
                "only one of its cells",
                "give each column its own name, or remove the repeated one",
            ),
        )
        for name in twice
    ]


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
