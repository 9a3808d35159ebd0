"""Reading a user's text file (a recipe, data, a model config) with errors a person can act on:
a folder given for a file, a file that cannot be read, bytes that are not UTF-8 (where they are,
what the encoding probably is, and the command that converts it)."""

from __future__ import annotations

import shlex
from pathlib import Path

from peftkit.core.errors import Problem, ProblemsError, RecipeError

GUESS_BYTES = 1 << 20
"""Bytes looked at to guess an encoding: enough to tell, fast on a huge file."""
MAX_DEPTH = 100
"""Levels of nesting a value read from a user's JSON or YAML may have: a recipe needs 3, chat
turns 3, a JSON answer a few more; thousands are a broken or hostile file, which would end in
Python's recursion limit."""
MAX_DIGITS = 100
"""Digits a number read from a user's JSON or YAML may have: Python refuses to read one of
more than 4,300, and nothing peftkit reads holds one of more than 20."""


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path`` (a byte-order mark is fine); ``what`` names it in errors."""
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise RecipeError(f"{what} '{path}': a folder, not a file. Fix: pass the file.") from None
    except OSError as error:
        raise RecipeError(
            f"{what} '{path}': cannot be read ({error.strerror or error}). Fix: check the path "
            "and its permissions."
        ) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ProblemsError(f"in {what} '{path}'", [not_utf8(path, raw, error.start)]) from None


def not_utf8(path: Path, raw: bytes, start: int) -> Problem:
    """The problem of a file whose byte at ``start`` is not UTF-8: its line and column, the
    likely encoding, and the iconv command that converts the file."""
    from charset_normalizer import from_bytes

    line_start = raw.rfind(b"\n", 0, start) + 1
    line_end = raw.find(b"\n", start)
    line = raw.count(b"\n", 0, start) + 1
    column = len(raw[line_start:start].decode("utf-8", errors="replace")) + 1
    best = from_bytes(raw[:GUESS_BYTES]).best()
    converted = path.with_name(f"{path.stem}.utf8{path.suffix}")
    if best is None:
        likely, fix = "", "save the file as UTF-8 from the program that wrote it"
    else:
        likely = f"; it looks like {best.encoding}"
        fix = (
            f"save it as UTF-8, e.g. iconv -f {best.encoding} -t utf-8 "
            f"{shlex.quote(str(path))} > {shlex.quote(str(converted))}, and pass that file"
        )
    return Problem(
        f"{path}, line {line}, column {column}",
        raw[line_start : line_end if line_end >= 0 else len(raw)],
        f"the file is not UTF-8: byte 0x{raw[start]:02x} is not a UTF-8 character{likely}",
        fix,
    )
