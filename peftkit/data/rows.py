"""Every row checked against its format before training: a bad row found here is one line in
one message, where TRL would fail on it mid-run with a traceback, or train on it silently.

The rules are what TRL's SFTTrainer needs of each format: ``text`` a non-empty string;
``prompt``/``completion`` non-empty strings, or both chat turns (the same kind in every row,
as Arrow holds one type per column); ``messages`` chat turns with at least one assistant turn
to learn from.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from peftkit.core.errors import MISSING, Problem, RecipeError, json_kind
from peftkit.core.formats import FORMAT_COLUMNS, describe_formats, row_format
from peftkit.data.reading import Found, Source

ROLES = ("system", "user", "assistant", "tool")
ROLE_ALIASES = {
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "ai": "assistant",
    "human": "user",
    "person": "user",
    "developer": "system",
}
"""Other tools' names for the roles (ShareGPT's gpt and human, Gemini's model, OpenAI's
developer), so that the fix names the role the turn meant, not any valid one."""
TURNS_EXAMPLE = '[{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]'
NOUNS = {
    "text": "the text",
    "prompt": "the prompt",
    "completion": "the answer",
    "content": "the turn's text",
}
NOT_A_STRING_FIXES = {
    "text": "write the text as one string",
    "prompt": 'write the prompt as a string, or as chat turns [{"role": "user", "content": "..."}]',
    "completion": "write the answer as a string; for a JSON answer, write the JSON as text "
    '("{\\"key\\": 1}") or use the json-output recipe, which does that for you',
    "content": "write the turn's text as a string",
}


TOOL_CALLS = (
    "a turn with tool_calls: peftkit trains on the turns' text, and a chat template renders "
    "tool calls its own way or drops them, so the model would learn the answer without its call",
    "write the call into the turn's content as text, or leave the tool-calling rows out",
)
IMAGES = (
    "an image: peftkit trains text-only models, so the image would be dropped and the text "
    "learned without it",
    "remove the images (keep the text, as a string), or leave the row out",
)
IMAGE_COLUMNS = ("images", "image")
"""Columns of TRL's vision datasets."""
IMAGE_PARTS = ("image", "image_url", "input_image")
"""Content parts that carry an image (TRL's and OpenAI's)."""


def _has_image(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(part, dict) and part.get("type") in IMAGE_PARTS for part in content
    )


@dataclass(frozen=True)
class Checked:
    """A file's rows ready for ``Dataset.from_list`` (the format's columns only), what is wrong
    with the others, and how many answers were JSON values written as JSON text."""

    rows: list[dict[str, Any]]
    problems: list[Found]
    converted: int


def choose_format(
    columns: set[str],
    counts: Counter[str | None],
    wanted: str,
    where: str,
    formats: tuple[str, ...],
    evaluation: bool = False,
) -> str:
    """The file's format: ``wanted`` if its columns are there, or for 'auto' the format of most
    rows (``counts``), so that the few rows of another format are the ones reported.

    ``formats``: the recipe's formats, the only ones a fix may offer (the recipe refuses the
    others). ``evaluation``: ``wanted`` is the training data's format, which evaluation data
    must have.
    """
    found = ", ".join(sorted(columns)) or "none"
    if wanted == "auto":
        present = [name for name in FORMAT_COLUMNS if counts[name]]
        if present:
            return max(present, key=lambda name: counts[name])
        raise RecipeError(
            f"data '{where}': cannot tell the format from the columns {found}. The recipe "
            f"trains on {describe_formats(formats)}. Fix: rename the columns to those of one of "
            "these formats."
        )
    needed = FORMAT_COLUMNS[wanted]
    missing = ", ".join(column for column in needed if column not in columns)
    if not missing:
        return wanted
    if evaluation:
        raise RecipeError(
            f"data '{where}': evaluation data must have the training data's format, "
            f"{describe_formats((wanted,))}, and the column(s) {missing} are missing; found: "
            f"{found}. Fix: give it the training data's columns."
        )
    fix = f"rename the columns to those of {describe_formats((wanted,))}"
    others = [name for name in formats if name != wanted and counts[name]]
    if others:
        fix += f", or set data.format={max(others, key=lambda name: counts[name])}"
    raise RecipeError(
        f"data '{where}': data.format is '{wanted}', but the column(s) {missing} are missing; "
        f"found: {found}. Fix: {fix}."
    )


def check_rows(source: Source, fmt: str, expected: str, json_answers: bool) -> Checked:
    """``source``'s rows checked as ``fmt`` rows; ``expected`` says why that format (for rows of
    another); ``json_answers``: a JSON object or array given as an answer is written as JSON
    text instead of being a problem."""
    return _Rows(source, fmt, expected, json_answers).run()


class _Rows:
    """The checks of one file's rows; collects the problems and the checked rows."""

    def __init__(self, source: Source, fmt: str, expected: str, json_answers: bool) -> None:
        self.source, self.fmt, self.expected = source, fmt, expected
        self.json_answers = json_answers
        self.problems: list[Found] = []
        self.converted = 0
        """Rows whose answer was written as JSON text; ``row_converted`` says so of one row."""
        self.row_converted = False
        self.turn_prompts = Counter(_looks_like_turns(row.get("prompt")) for row in source.rows)
        """Prompts as chat turns (True) and as strings: the more frequent kind is the file's."""

    def run(self) -> Checked:
        needed = FORMAT_COLUMNS[self.fmt]
        check = {"text": self._text, "prompt-completion": self._pair, "messages": self._chat}[
            self.fmt
        ]
        good = []
        for index, row in enumerate(self.source.rows):
            images = [column for column in IMAGE_COLUMNS if row.get(column)]
            if images:
                self._problem(index, (f"column '{images[0]}'",), row[images[0]], *IMAGES)
            elif all(column in row for column in needed):
                before, self.row_converted = len(self.problems), False
                checked = check(index, {column: row[column] for column in needed})
                if len(self.problems) == before:
                    good.append(checked)
                    self.converted += self.row_converted
            else:
                self._misfit(index, row, needed)
        return Checked(good, self.problems, self.converted)

    def _problem(self, index: int, where: tuple[str, ...], value: Any, rule: str, fix: str) -> None:
        problem = Problem(self.source.at(index, *where), value, rule, fix)
        self.problems.append((self.source.places[index], problem))

    def _misfit(self, index: int, row: dict[str, Any], needed: tuple[str, ...]) -> None:
        """A row without the format's columns: of another format, or with columns missing."""
        other = row_format(row)
        if other is not None and not any(column in row for column in needed):
            column = FORMAT_COLUMNS[other][0]
            self._problem(
                index,
                (f"column '{column}'",),
                row[column],
                f"a {other} row, and {self.expected}",
                f"one format per file: write this row as {describe_formats((self.fmt,))}, or "
                "move it to a file of its own",
            )
            return
        found = ", ".join(sorted(row)) or "none"
        for column in needed:
            if column not in row:
                self._problem(
                    index,
                    (f"column '{column}'",),
                    MISSING,
                    f"a {self.fmt} row needs a '{column}' column (the row's columns: {found})",
                    f'add "{column}" to the row (or correct a misspelled column\'s name), or '
                    "remove the row",
                )

    # --- the formats ----------------------------------------------------------------------------

    def _text(self, index: int, row: dict[str, Any]) -> dict[str, Any]:
        self._string(index, ("column 'text'",), "text", row["text"])
        return row

    def _pair(self, index: int, row: dict[str, Any]) -> dict[str, Any]:
        prompt, completion = row["prompt"], row["completion"]
        as_turns = _looks_like_turns(prompt)
        if as_turns != (self.turn_prompts[True] > self.turn_prompts[False]):
            kind, other = (
                ("chat turns", "strings") if as_turns else (json_kind(prompt), "chat turns")
            )
            self._problem(
                index,
                ("column 'prompt'",),
                prompt,
                f"the prompt is {kind}, and most rows' prompts are {other}",
                f"one kind per file: write this row's prompt and completion as {other}",
            )
        elif as_turns:
            self._turns(index, "prompt", prompt, needs_answer=False)
            if isinstance(completion, list):
                self._turns(index, "completion", completion, needs_answer=True)
            else:
                self._problem(
                    index,
                    ("column 'completion'",),
                    completion,
                    "the prompt is chat turns, so the completion must be chat turns too",
                    'write the completion as [{"role": "assistant", "content": "..."}]',
                )
        else:
            self._string(index, ("column 'prompt'",), "prompt", prompt)
            if _looks_like_turns(completion):
                self._problem(
                    index,
                    ("column 'completion'",),
                    completion,
                    "the completion is chat turns, but the prompt is a string",
                    'write the prompt as chat turns too: [{"role": "user", "content": "..."}]',
                )
            else:
                row["completion"] = self._answer(
                    index, ("column 'completion'",), "completion", completion
                )
        return row

    def _chat(self, index: int, row: dict[str, Any]) -> dict[str, Any]:
        self._turns(index, "messages", row["messages"], needs_answer=True)
        return row

    # --- values ---------------------------------------------------------------------------------

    def _string(self, index: int, where: tuple[str, ...], column: str, value: Any) -> None:
        """A non-empty string: anything else is a problem whose fix says what to write."""
        if isinstance(value, str) and value.strip():
            return
        noun = NOUNS[column]
        if isinstance(value, str):
            blank = " (only whitespace)" if value else ""
            rule, fix = f"{column} is empty{blank}", f"write {noun}, or remove the row"
        elif value is None:
            rule, fix = f"{column} is null", f"write {noun} as a string, or remove the row"
        else:
            rule, fix = (
                f"{column} must be a string, not {json_kind(value)}",
                NOT_A_STRING_FIXES[column],
            )
            if isinstance(value, bool | int | float):
                quoted = json.dumps(json.dumps(value))  # as written in the file, in quotes
                fix = f'write {noun} as a string (quote it): "{column}": {quoted}'
        self._problem(index, where, value, rule, fix)

    def _answer(self, index: int, where: tuple[str, ...], column: str, value: Any) -> Any:
        """An answer (completion, assistant turn): JSON values become JSON text for recipes
        whose answers are JSON, since that is what the model must learn to write."""
        if self.json_answers and isinstance(value, dict | list):
            try:
                text = json.dumps(value, ensure_ascii=False, allow_nan=False)
            except ValueError:  # NaN or Infinity: Python's JSON reads them, JSON has none
                rule = "the JSON answer holds NaN or Infinity, which are not JSON"
                self._problem(index, where, value, rule, "write null or a number instead")
                return value
            self.row_converted = True
            return text
        self._string(index, where, column, value)
        return value

    def _turns(self, index: int, column: str, turns: Any, needs_answer: bool) -> None:
        """Chat turns, checked in place (assistant JSON values written as JSON text)."""
        if not isinstance(turns, list) or not turns:
            csv = " (CSV cannot hold lists: use JSONL)" if self.source.name.endswith(".csv") else ""
            self._problem(
                index,
                (f"column '{column}'",),
                turns,
                f"{column} must be a non-empty list of chat turns, not "
                + ("an empty list" if isinstance(turns, list) else json_kind(turns)),
                f"write {column} as chat turns, e.g. {TURNS_EXAMPLE}{csv}",
            )
            return
        answered = False
        for number, turn in enumerate(turns, 1):
            where = (f"column '{column}'", f"turn {number}")
            if not isinstance(turn, dict):
                rule = f"a chat turn must be an object with role and content, not {json_kind(turn)}"
                self._problem(index, where, turn, rule, f"write the turn as in {TURNS_EXAMPLE}")
                continue
            role = turn.get("role", MISSING)
            # a misnamed answer is reported as its role alone, not as a missing answer too
            answered = answered or _meant_role(role) == "assistant"
            if role not in ROLES:
                self._problem(index, (*where, "'role'"), role, *_role_rule_and_fix(role))
            content = turn.get("content", MISSING)
            if turn.get("tool_calls"):
                self._problem(index, (*where, "'tool_calls'"), turn["tool_calls"], *TOOL_CALLS)
            elif _has_image(content):
                self._problem(index, (*where, "'content'"), content, *IMAGES)
            elif content is MISSING:
                rule, fix = "the turn has no content", 'add "content": "..." to the turn'
                self._problem(index, (*where, "'content'"), MISSING, rule, fix)
            elif role == "assistant":
                turn["content"] = self._answer(index, (*where, "'content'"), "content", content)
            elif not isinstance(content, str):
                self._string(index, (*where, "'content'"), "content", content)
        if needs_answer and not answered:
            self._problem(
                index,
                (f"column '{column}'",),
                turns,
                f"{column} has no assistant turn, so there is nothing to learn",
                'add the answer as a turn {"role": "assistant", "content": "..."}',
            )


def _meant_role(role: Any) -> str | None:
    """The role ``role`` stands for: itself, itself in another case, or what another tool
    calls it; None for a role no one uses."""
    if not isinstance(role, str):
        return None
    name = role.strip().lower()
    return name if name in ROLES else ROLE_ALIASES.get(name)


def _role_rule_and_fix(role: Any) -> tuple[str, str]:
    rule = f"role must be one of {', '.join(ROLES)}"
    meant = _meant_role(role)
    if meant is None:
        roles = ", ".join(f'"{name}"' for name in ROLES)
        verb = "add" if role is MISSING else "write"
        who = '"user" asks, "assistant" answers, "system" instructs, "tool" is a tool\'s output'
        return rule, f'{verb} "role" as one of {roles} ({who})'
    why = f" (peftkit's name for '{role}')" if meant != role.strip().lower() else ""
    return rule, f'write "role": "{meant}"{why}'


def _looks_like_turns(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(turn, dict) and "role" in turn for turn in value)
    )
