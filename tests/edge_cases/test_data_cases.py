"""Bad training data through ``peftkit train``: every case ends as one plain "error:" message
that names the file, the line or row, and the column, with nothing written.

Most files are a few good rows with one bad row at line (or row) 3, so that each message must
point at that row.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from corpus import Case, run_case
from fix_reader import applied, fix_of, options, overrides
from train_helpers import run_main, short

from peftkit.testing import messages_rows, prompt_completion_rows, text_rows

MODEL = Path("{model}")
CUSTOM = {"custom.yaml": "recipe: custom\n"}
"""A custom recipe: it trains on every format, and its answers are not JSON."""


def train(data: str, *extra: str, recipe: str = "json-output") -> tuple[str, ...]:
    overrides = short(MODEL, *extra, json_output=recipe == "json-output")
    return ("train", recipe, "--model", "{model}", "--data", data, "--output", "out", *overrides)


def with_row(row: Any, good: list[dict[str, Any]] | None = None) -> list[Any]:
    """Four good rows with ``row`` as the third."""
    rows: list[Any] = list(good or prompt_completion_rows(4))
    rows.insert(2, row)
    return rows


def pc_case(id: str, row: Any, *mentions: str, custom: bool = False) -> Case:
    """A prompt-completion JSONL file whose line 3 is ``row``."""
    files: dict[str, Any] = {"train.jsonl": with_row(row)}
    args = train("train.jsonl")
    if custom:
        files.update(CUSTOM)
        args = train("train.jsonl", recipe="custom.yaml")
    return Case(id, args, ("train.jsonl, line 3", *mentions), files, model=True)


def chat_case(id: str, row: Any, *mentions: str) -> Case:
    """A messages JSONL file whose line 3 is ``row``."""
    files = {"chat.jsonl": with_row(row, messages_rows(4))}
    args = train("chat.jsonl", "data.format=auto")
    return Case(id, args, ("chat.jsonl, line 3", *mentions), files, model=True)


def text_case(id: str, row: Any, *mentions: str) -> Case:
    """A text JSONL file whose line 3 is ``row``, for domain adaptation."""
    files = {"corpus.jsonl": with_row(row, text_rows(4))}
    args = train("corpus.jsonl", recipe="domain-adaptation")
    return Case(id, args, ("corpus.jsonl, line 3", *mentions), files, model=True)


def turns(*pairs: Any) -> list[Any]:
    return [{"role": role, "content": content} for role, content in pairs]


def dataset_dict(name: str, **splits: list[dict[str, Any]]) -> Callable[[Path], None]:
    """A setup that saves ``splits`` as the DatasetDict folder ``name``."""

    def setup(folder: Path) -> None:
        from datasets import Dataset, DatasetDict

        saved = DatasetDict({split: Dataset.from_list(rows) for split, rows in splits.items()})
        saved.save_to_disk(str(folder / name))

    return setup


Q = "What is HTTP status 200?"
C = "column 'completion'"
P = "column 'prompt'"
M = "column 'messages'"
CHAT_PROMPTS = [
    {
        "prompt": turns(("user", row["prompt"])),
        "completion": turns(("assistant", row["completion"])),
    }
    for row in prompt_completion_rows(4)
]
HELD_OUT = {"train.jsonl": prompt_completion_rows(6)}
BAD_ROWS = [{"prompt": Q, "completion": None}] * 50

CASES = [
    # --- a value that is not a string where one belongs, in each column ---
    pc_case("completion null", {"prompt": Q, "completion": None}, C, "null", "write the answer"),
    pc_case("completion number", {"prompt": Q, "completion": 42}, C, '"completion": "42"'),
    pc_case("completion boolean", {"prompt": Q, "completion": True}, C, "not true/false"),
    pc_case("completion object, custom", {"prompt": Q, "completion": {"a": 1}}, C,
            "not a JSON object", "json-output recipe", custom=True),
    pc_case("completion array, custom", {"prompt": Q, "completion": [1, 2]}, C, "not a list",
            custom=True),
    pc_case("prompt null", {"prompt": None, "completion": "{}"}, P, "prompt is null"),
    pc_case("prompt number", {"prompt": 7, "completion": "{}"}, P, '"prompt": "7"'),
    pc_case("prompt boolean", {"prompt": False, "completion": "{}"}, P, '"prompt": "false"'),
    pc_case("prompt object", {"prompt": {"q": Q}, "completion": "{}"}, P, "not a JSON object",
            "chat turns"),
    pc_case("prompt list of strings", {"prompt": ["a", "b"], "completion": "{}"}, P,
            "not a list", "chat turns"),
    text_case("text null", {"text": None}, "column 'text'", "text is null"),
    text_case("text number", {"text": 3.5}, "column 'text'", '"text": "3.5"'),
    text_case("text object", {"text": {"body": "x"}}, "column 'text'", "not a JSON object"),
    text_case("text list", {"text": ["a", "b"]}, "column 'text'", "not a list"),
    chat_case("user content number",
              {"messages": turns(("user", 5), ("assistant", "{}"))},
              M, "turn 1, 'content'", "not an integer"),
    chat_case("user content object",
              {"messages": turns(("user", {"q": 1}), ("assistant", "{}"))},
              M, "turn 1, 'content'", "not a JSON object"),
    chat_case("assistant content null",
              {"messages": turns(("user", Q), ("assistant", None))},
              M, "turn 2, 'content'", "content is null"),
    # --- missing and empty ---
    pc_case("completion missing", {"prompt": Q}, C, "(missing)", "row's columns: prompt"),
    pc_case("prompt missing", {"completion": "{}"}, P, "(missing)"),
    pc_case("misspelled column", {"prompt": Q, "completon": "{}"}, C, "(missing)", "completon"),
    pc_case("empty prompt", {"prompt": "", "completion": "{}"}, P, "prompt is empty"),
    pc_case("whitespace-only prompt", {"prompt": " \t", "completion": "{}"}, P, "only whitespace"),
    pc_case("empty completion", {"prompt": Q, "completion": ""}, C, "completion is empty"),
    pc_case("whitespace-only completion", {"prompt": Q, "completion": "\n "}, C,
            "only whitespace"),
    text_case("empty text", {"text": ""}, "column 'text'", "text is empty"),
    text_case("whitespace-only text", {"text": "   "}, "column 'text'", "only whitespace"),
    Case(
        "all completions empty",
        train("train.jsonl"),
        ("4 problem(s)", "train.jsonl, line 1, column 'completion'",
         "train.jsonl, line 4, column 'completion'", "completion is empty"),
        {"train.jsonl": [{"prompt": Q, "completion": ""}] * 4},
        model=True,
    ),
    # --- mixed formats, mixed kinds ---
    pc_case("a text row among prompt-completion rows", {"text": "hello"}, "column 'text'",
            "a text row", "data.format is 'prompt-completion'", "one format per file"),
    Case(
        "a text row among prompt-completion rows, detected",
        train("train.jsonl", "data.format=auto"),
        ("train.jsonl, line 3, column 'text'", "most rows of the file are prompt-completion",
         "one format per file"),
        {"train.jsonl": with_row({"text": "hello"})},
        model=True,
    ),
    chat_case("a prompt-completion row among messages rows", {"prompt": Q, "completion": "{}"},
              P, "a prompt-completion row", "most rows of the file are messages"),
    Case(
        "a conversational prompt with a string completion",
        train("train.jsonl", "data.format=auto"),
        ("train.jsonl, line 3, column 'completion'", "must be chat turns too"),
        {"train.jsonl": with_row({"prompt": turns(("user", Q)), "completion": "{}"},
                                 CHAT_PROMPTS)},
        model=True,
    ),
    pc_case("a string prompt with a conversational completion",
            {"prompt": Q, "completion": turns(("assistant", "{}"))}, C,
            "completion is chat turns, but the prompt is a string"),
    pc_case("a conversational row among string rows",
            {"prompt": turns(("user", Q)), "completion": turns(("assistant", "{}"))}, P,
            "most rows' prompts are strings", "one kind per file"),
    Case(
        "a string prompt among conversational rows",
        train("train.jsonl", "data.format=auto"),
        ("train.jsonl, line 3, column 'prompt'", "most rows' prompts are chat turns"),
        {"train.jsonl": with_row({"prompt": Q, "completion": "{}"}, CHAT_PROMPTS)},
        model=True,
    ),
    # --- chat turns ---
    chat_case("a turn without content", {"messages": [{"role": "user"},
                                                      {"role": "assistant", "content": "{}"}]},
              M, "turn 1, 'content'", "(missing)", "no content"),
    chat_case("a turn with an unknown role",
              {"messages": turns(("narrator", Q), ("assistant", "{}"))},
              M, "turn 1, 'role'", "'narrator'", "system, user, assistant, tool",
              '"system", "user", "assistant", "tool"'),
    chat_case("ShareGPT's roles", {"messages": turns(("human", Q), ("gpt", "{}"))},
              "2 problem(s)", "turn 1, 'role'", '"role": "user"', "turn 2, 'role'",
              '"role": "assistant" (peftkit\'s name for \'gpt\')'),
    chat_case("Gemini's model role", {"messages": turns(("user", Q), ("model", "{}"))},
              "1 problem(s)", "turn 2, 'role'", '"role": "assistant"'),
    chat_case("bot and ai roles", {"messages": turns(("ai", Q), ("bot", "{}"))},
              "turn 1, 'role'", "turn 2, 'role'", '"role": "assistant"'),
    chat_case("a person role", {"messages": turns(("person", Q), ("assistant", "{}"))},
              "turn 1, 'role'", '"role": "user"'),
    chat_case("OpenAI's developer role",
              {"messages": turns(("developer", "Be brief."), ("user", Q), ("assistant", "{}"))},
              "turn 1, 'role'", '"role": "system"'),
    chat_case("a role in capitals", {"messages": turns(("User", Q), ("assistant", "{}"))},
              "turn 1, 'role'", "'User'", '"role": "user"'),
    chat_case("a turn without a role", {"messages": [{"content": Q},
                                                     {"role": "assistant", "content": "{}"}]},
              M, "turn 1, 'role'", "(missing)"),
    chat_case("no assistant turn", {"messages": turns(("system", "Be brief."), ("user", Q))},
              M, "no assistant turn"),
    chat_case("turns that are not objects", {"messages": ["hello", "{}"]}, M, "turn 1",
              "turn 2", "not a string"),
    chat_case("an empty messages list", {"messages": []}, M, "an empty list"),
    chat_case("messages that are a string", {"messages": "hello"}, M, "not a string"),
    chat_case("an empty assistant answer", {"messages": turns(("user", Q), ("assistant", " "))},
              M, "turn 2, 'content'", "only whitespace"),
    Case(
        "messages in a CSV file",
        train("chat.csv", "data.format=auto"),
        ("chat.csv, line 2, column 'messages'", "not a string", "CSV cannot hold lists"),
        {"chat.csv": 'messages\n"[{""role"": ""user""}]"\n'},
        model=True,
    ),
    # --- rows that are not objects, bad JSON ---
    pc_case("a JSON line that is a list", [1, 2], "must be a JSON object", "got [1, 2]"),
    pc_case("a JSON line that is a number", 5, "must be a JSON object", "got 5"),
    pc_case("a JSON line that is a string", "hello", "must be a JSON object"),
    Case(
        "a bad JSON line in the middle",
        train("train.jsonl"),
        ("train.jsonl, line 3", "not valid JSON", "at character 31", "1 problem(s)"),
        {"train.jsonl": '{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": "d"}\n'
         '{"prompt": "e", "completion": }\n{"prompt": "f", "completion": "g"}\n'},
        model=True,
    ),
    Case(
        "a JSON file that is an object",
        train("train.json"),
        ("train.json: got {", "must hold an array of rows", "under 'rows'"),
        {"train.json": {"rows": prompt_completion_rows(3)}},
        model=True,
    ),
    Case(
        "a JSON array with a row that is not an object",
        train("train.json"),
        ("train.json, row 3", "must be a JSON object"),
        {"train.json": '[{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}, '
         '"e", {"prompt": "f", "completion": "g"}]'},
        model=True,
    ),
    Case(
        "a JSON array with a number prompt",
        train("train.json"),
        ("train.json, row 3, column 'prompt'", "not an integer"),
        {"train.json": with_row({"prompt": 1, "completion": "{}"})},
        model=True,
    ),
    Case(
        "broken JSON in a .json file",
        train("train.json"),
        ("train.json, line 2, column 32", "not valid JSON", ".jsonl"),
        {"train.json": '[{"prompt": "a", "completion": "b"},\n {"prompt": "c", "completion": }]'},
        model=True,
    ),
    # --- CSV ---
    Case(
        "a missing CSV cell",
        train("train.csv"),
        ("train.csv, line 3, column 'completion'", "a missing cell", "(missing)"),
        {"train.csv": "prompt,completion\nq1,a1\nq2\nq3,a3\n"},
        model=True,
    ),
    Case(
        "an extra CSV cell",
        train("train.csv"),
        ("train.csv, line 3, column 3", "extra cells", "quote cells"),
        {"train.csv": "prompt,completion\nq1,a1\nq2,a,b\nq3,a3\n"},
        model=True,
    ),
    Case(
        "an empty CSV cell after a cell over two lines",
        train("train.csv"),
        ("train.csv, line 4, column 'completion'", "completion is empty"),
        {"train.csv": 'prompt,completion\n"q1\nstill q1",a1\nq2,\nq3,a3\n'},
        model=True,
    ),
    # --- not UTF-8 ---
    Case(
        "cp1252 bytes in JSONL",
        train("train.jsonl"),
        ("train.jsonl, line 2, column 16", "not UTF-8", "0xe9", "iconv -f", "-t utf-8"),
        {"train.jsonl": b'{"prompt": "q", "completion": "a"}\n'
         b'{"prompt": "caf\xe9", "completion": "b"}\n'},
        model=True,
    ),
    Case(
        "cp1252 bytes in JSON",
        train("train.json"),
        ("train.json, line 1, column 17", "not UTF-8", "iconv -f"),
        {"train.json": b'[{"prompt": "caf\xe9", "completion": "b"}]'},
        model=True,
    ),
    Case(
        "cp1252 bytes in CSV",
        train("train.csv"),
        ("train.csv, line 3, column 4", "not UTF-8", "iconv -f"),
        {"train.csv": b"prompt,completion\nq,a\ncaf\xe9,b\n"},
        model=True,
    ),
    # --- Parquet and saved datasets: rows by position ---
    Case(
        "a null completion in Parquet",
        train("train.parquet"),
        ("train.parquet, row 3, column 'completion'", "completion is null"),
        {"train.parquet": with_row({"prompt": Q, "completion": None})},
        model=True,
    ),
    Case(
        "an empty prompt in a saved dataset",
        train("saved"),
        ("saved, row 3, column 'prompt'", "prompt is empty"),
        {"saved": with_row({"prompt": "", "completion": "{}"})},
        model=True,
    ),
    # --- evaluation data ---
    Case(
        "eval data with a null completion",
        (*train("train.jsonl"), "--eval-data", "held-out.jsonl"),
        ("held-out.jsonl, line 3, column 'completion'", "completion is null"),
        {**HELD_OUT, "held-out.jsonl": with_row({"prompt": Q, "completion": None})},
        model=True,
    ),
    Case(
        "eval data with a bad JSON line",
        (*train("train.jsonl"), "--eval-data", "held-out.jsonl"),
        ("held-out.jsonl, line 2", "not valid JSON"),
        {**HELD_OUT, "held-out.jsonl": '{"prompt": "a", "completion": "b"}\n{"prompt": \n'},
        model=True,
    ),
    Case(
        "eval data not UTF-8",
        (*train("train.jsonl"), "--eval-data", "held-out.jsonl"),
        ("held-out.jsonl, line 1, column 16", "not UTF-8"),
        {**HELD_OUT, "held-out.jsonl": b'{"prompt": "caf\xe9", "completion": "b"}\n'},
        model=True,
    ),
    Case(
        "eval data in another format",
        (*train("train.jsonl"), "--eval-data", "held-out.jsonl"),
        ("held-out.jsonl", "prompt, completion", "found: text", "the training data's format"),
        {**HELD_OUT, "held-out.jsonl": [{"text": "t"}] * 3},
        model=True,
    ),
    Case(
        "eval data with a row of another format",
        (*train("train.jsonl"), "--eval-data", "held-out.jsonl"),
        ("held-out.jsonl, line 3, column 'text'", "the training data is prompt-completion"),
        {**HELD_OUT, "held-out.jsonl": with_row({"text": "t"})},
        model=True,
    ),
    Case(
        "problems in both training and eval data, reported together",
        (*train("train.jsonl"), "--eval-data", "held-out.jsonl"),
        ("2 problem(s) in data 'train.jsonl' and 'held-out.jsonl'",
         "train.jsonl, line 3, column 'prompt'", "held-out.jsonl, line 3, column 'completion'"),
        {"train.jsonl": with_row({"prompt": None, "completion": "{}"}),
         "held-out.jsonl": with_row({"prompt": Q, "completion": 1})},
        model=True,
    ),
    # --- the recipe's formats ---
    Case(
        "domain-adaptation given prompt-completion data",
        train("train.jsonl", recipe="domain-adaptation"),
        ("train.jsonl", "data.format is 'text'", "found: completion, prompt"),
        {"train.jsonl": prompt_completion_rows(4)},
        model=True,
    ),
    Case(
        "domain-adaptation given prompt-completion data, detected",
        train("train.jsonl", "data.format=auto", recipe="domain-adaptation"),
        ("data 'train.jsonl' is prompt-completion data", "domain-adaptation recipe trains on text"),
        {"train.jsonl": prompt_completion_rows(4)},
        model=True,
    ),
    Case(
        "json-output given text data",
        train("corpus.jsonl", "data.format=auto"),
        ("data 'corpus.jsonl' is text data", "json-output recipe trains on prompt-completion"),
        {"corpus.jsonl": text_rows(4)},
        model=True,
    ),
    # --- files that are not data (moved from test_bad_input.py) ---
    Case("missing data file", train("nope.jsonl"), ("nope.jsonl", "no such file"), model=True),
    Case("empty data file", train("empty.jsonl"), ("empty.jsonl", "the file is empty"),
         {"empty.jsonl": ""}, model=True),
    Case("whitespace-only data file", train("blank.jsonl"), ("blank.jsonl", "no rows"),
         {"blank.jsonl": "\n \n"}, model=True),
    Case("CSV with a header only", train("head.csv"),
         ("head.csv", "a header (columns prompt, completion) but no rows",
          "Fix: add rows under the header"),
         {"head.csv": "prompt,completion\n"}, model=True),
    Case("unknown file type", train("data.txt"), ("unknown file type", ".txt"),
         {"data.txt": "hello\n"}, model=True),
    Case("malformed JSON lines only", train("bad.jsonl"), ("bad.jsonl, line 1", "not valid JSON"),
         {"bad.jsonl": '{"prompt": "x"\n'}, model=True),
    Case("a folder that is not a saved dataset", train("folder"), ("folder", "save_to_disk"),
         {"folder/readme.jsonl": prompt_completion_rows(2)}, model=True),
    Case("not a Parquet file", train("data.parquet"), ("data.parquet", "Parquet"),
         {"data.parquet": "prompt,completion\n"}, model=True),
    Case(
        "columns that match no format",
        train("qa.jsonl", "data.format=auto"),
        ("answer, question", "prompt-completion (columns prompt, completion)",
         "messages (column messages)"),
        {"qa.jsonl": [{"question": "q", "answer": "a"}] * 4},
        model=True,
    ),
    Case(
        "columns that match no format, domain adaptation",
        train("qa.jsonl", "data.format=auto", recipe="domain-adaptation"),
        ("answer, question", "trains on text (column text)"),
        {"qa.jsonl": [{"question": "q", "answer": "a"}] * 4},
        model=True,
    ),
    Case(
        "chat data with the recipe's default format",
        train("chat.jsonl"),
        ("chat.jsonl", "data.format is 'prompt-completion'", "found: messages",
         "Fix: rename the columns to those of prompt-completion", "or set data.format=messages"),
        {"chat.jsonl": messages_rows(6)},
        model=True,
    ),
    Case(
        "prompt-completion data without a completion column",
        train("prompts.jsonl", "data.format=prompt-completion"),
        ("prompts.jsonl", "completion", "missing", "found: prompt"),
        {"prompts.jsonl": [{"prompt": "q"}] * 4},
        model=True,
    ),
    # --- saved DatasetDict folders: train on train, evaluate on validation or test ---
    Case(
        "a DatasetDict without a train split",
        train("dd"),
        ("data 'dd'", "without a 'train' split", "its splits: test, extra",
         "Fix: pass the folder of the split to train on, e.g. --data dd/extra"),
        setup=dataset_dict("dd", test=prompt_completion_rows(2), extra=prompt_completion_rows(8)),
        model=True,
    ),
    Case(
        "eval data a DatasetDict without a validation or test split",
        (*train("train.jsonl"), "--eval-data", "dd"),
        ("data 'dd'", "without a 'validation' or 'test' split to evaluate on",
         "its splits: train, dev", "--eval-data dd/dev"),
        {"train.jsonl": prompt_completion_rows(6)},
        setup=dataset_dict("dd", train=prompt_completion_rows(6), dev=prompt_completion_rows(3)),
        model=True,
    ),
    Case(
        "eval data a DatasetDict with a train split only",
        (*train("train.jsonl"), "--eval-data", "dd"),
        ("data 'dd'", "its splits: train", "--eval-data FILE", "training.eval_fraction"),
        {"train.jsonl": prompt_completion_rows(6)},
        setup=dataset_dict("dd", train=prompt_completion_rows(6)),
        model=True,
    ),
    Case(
        "a bad row in a DatasetDict's validation split",
        train("dd"),
        ("dd/validation, row 3, column 'completion'", "completion is null"),
        setup=dataset_dict("dd", train=prompt_completion_rows(6),
                           validation=with_row({"prompt": Q, "completion": None})),
        model=True,
    ),
    # --- too few rows to hold any out ---
    Case(
        "one row and an eval fraction",
        train("one.jsonl"),
        ("one.jsonl", "1 row(s) cannot be split", "--eval-data FILE",
         "training.eval_fraction=0 training.eval_strategy=no "
         "callbacks.early_stopping.enabled=false callbacks.overfit.enabled=false"),
        {"one.jsonl": prompt_completion_rows(1)},
        model=True,
    ),
    # --- many problems: the first 20 shown, the rest counted ---
    Case(
        "fifty bad rows",
        train("train.jsonl"),
        ("50 problem(s)", "train.jsonl, line 20, column 'completion'",
         "... and 30 more (the first 20 are shown)"),
        {"train.jsonl": BAD_ROWS},
        model=True,
    ),
]  # fmt: skip


NOT_MENTIONED = {
    "fifty bad rows": ("line 21,",),
    "columns that match no format": ("text",),
    "domain-adaptation given prompt-completion data": ("prompt-completion",),
    "columns that match no format, domain adaptation": ("prompt-completion", "messages"),
    "ShareGPT's roles": ("no assistant turn",),
}
"""What a message must not say: formats the recipe refuses, rows past the shown ones, a second
problem that is the first one again."""


@pytest.mark.parametrize("case", [case.param() for case in CASES])
def test_bad_data_is_one_clear_error(case: Case, tmp_path, monkeypatch, tiny_model_dir):
    err = run_case(case, tmp_path, monkeypatch, tiny_model_dir)
    for text in NOT_MENTIONED.get(case.id, ()):
        assert text not in err, f"{text!r} in: {err}"


BY_ID = {case.id: case for case in CASES}
FIXED = [
    (BY_ID["one row and an eval fraction"], overrides),
    (BY_ID["chat data with the recipe's default format"], overrides),
    (BY_ID["a DatasetDict without a train split"], options),
    (BY_ID["eval data a DatasetDict without a validation or test split"], options),
]


@pytest.mark.parametrize(("case", "read"), [pytest.param(c, r, id=c.id) for c, r in FIXED])
def test_the_suggested_fix_makes_the_command_work(
    case: Case, read, tmp_path: Path, monkeypatch, tiny_model_dir: Path
) -> None:
    """Each alternative of the fix that names overrides or a file, applied as written."""
    message = run_case(case, tmp_path, monkeypatch, tiny_model_dir)
    alternatives = read(fix_of(message))
    assert alternatives, f"nothing to apply in: {message}"
    for number, extra in enumerate(alternatives):
        args = [arg.replace("{model}", str(tmp_path / "model")) for arg in case.args]
        args = applied(args, extra)  # an option or a field given again: its value replaced
        args[args.index("--output") + 1] = f"fixed-{number}"
        code, _, err = run_main(monkeypatch, *args)
        assert code == 0, f"{' '.join(extra)} did not fix it:\n{err[-3000:]}"
