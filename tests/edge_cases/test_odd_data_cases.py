"""Data and YAML that are valid but odd, which used to be changed without a word or to end in a
traceback: a key given twice in a JSON object, a CSV column named twice, a quote never closed,
tool calls and images that the template drops, values nested thousands of levels deep, numbers
of thousands of digits. Each is now an error naming its line.
"""

from __future__ import annotations

import json

import pytest
from corpus import Case, run_case
from train_helpers import SHORT_GENERATION, SHORT_RUN

from peftkit.testing import messages_rows, prompt_completion_rows

ROWS = prompt_completion_rows(12)
CHATS = messages_rows(12)
DEEP = "[" * 3000 + "]" * 3000
HUGE = "1" + "0" * 5000


def lines(rows: list[dict], *extra: str) -> str:
    """JSONL text: ``rows``, then ``extra`` lines as written."""
    return "".join(json.dumps(row) + "\n" for row in rows) + "".join(f"{x}\n" for x in extra)


def train(data: str, *extra: str, command: str = "train") -> tuple[str, ...]:
    output = ("--output", "out") if command == "train" else ()
    return (command, "json-output", "--model", "{model}", "--data", data, *output, *SHORT_RUN,
            *SHORT_GENERATION, *extra)  # fmt: skip


PAIR = '{"prompt": "Give the status.", "completion": "{\\"code\\": 1}"'
TURN = '{"role": "assistant", "content": "{}"'

CASES = [
    Case("jsonl-key-twice", train("t.jsonl"),
         ("t.jsonl, line 13", "'completion' appears twice", "keeps only the last"),
         {"t.jsonl": lines(ROWS, PAIR + ', "completion": "{}"}')}, model=True),
    Case("jsonl-key-twice-in-a-turn", train("t.jsonl", "data.format=messages"),
         ("t.jsonl, line 13", "'content' appears twice"),
         {"t.jsonl": lines(CHATS, '{"messages": [{"role": "user", "content": "q"}, '
                                  + TURN + ', "content": "{\\"a\\": 1}"}]}')},
         model=True),
    Case("json-file-key-twice", train("t.json"),
         ("t.json, line 5", "'prompt' appears twice"),
         {"t.json": "[\n" + ",\n".join(json.dumps(r) for r in ROWS[:3])
                    + ',\n{"prompt": "a",\n "completion": "{}", "prompt": "b"}\n]\n'},
         model=True),
    Case("check-jsonl-key-twice", train("t.jsonl", command="check"),
         ("t.jsonl, line 13", "appears twice"),
         {"t.jsonl": lines(ROWS, PAIR + ', "prompt": "again"}')}, model=True),
    Case("csv-column-twice", train("t.csv"),
         ("t.csv, line 1, column 'prompt'", "2 times", "its own name"),
         {"t.csv": "prompt,completion,prompt\n"
                   + "".join(f"q{i},{{}},again\n" for i in range(12))},
         model=True),
    Case("csv-quote-never-closed", train("t.csv"),
         ("t.csv, line 5", "never closed", "end of the file"),
         {"t.csv": "prompt,completion\n" + "".join(f"q{i},{{}}\n" for i in range(3))
                   + 'q3,"{}\n' + "".join(f"q{i},{{}}\n" for i in range(4, 12))},
         model=True),
    Case("csv-quote-never-closed-with-a-cell-missing", train("t.csv"),
         ("t.csv, line 3", "never closed"),
         {"t.csv": 'prompt,completion,note\nq0,{},n\nq1,"{},n\n' + "q2,{},n\n" * 10},
         model=True),
    Case("tool-calls-in-an-assistant-turn", train("t.jsonl", "data.format=messages"),
         ("t.jsonl, line 13", "turn 2, 'tool_calls'", "renders tool calls its own way"),
         {"t.jsonl": lines(CHATS, json.dumps({"messages": [
             {"role": "user", "content": "Weather?"},
             {"role": "assistant", "content": "",
              "tool_calls": [{"type": "function", "function": {"name": "weather"}}]},
             {"role": "tool", "content": "sunny"},
             {"role": "assistant", "content": "{}"}]}))},
         model=True),
    Case("an-image-in-a-turn", train("t.jsonl", "data.format=messages"),
         ("t.jsonl, line 13", "turn 1, 'content'", "text-only models"),
         {"t.jsonl": lines(CHATS, json.dumps({"messages": [
             {"role": "user", "content": [{"type": "image", "url": "cat.png"},
                                          {"type": "text", "text": "What is it?"}]},
             {"role": "assistant", "content": "{}"}]}))},
         model=True),
    Case("an-images-column", train("t.jsonl"),
         ("t.jsonl, line 13", "column 'images'", "text-only models"),
         {"t.jsonl": lines(ROWS, json.dumps({**ROWS[0], "images": ["cat.png"]}))}, model=True),
    Case("jsonl-value-nested-3000-levels", train("t.jsonl"),
         ("t.jsonl, line 13", "nested more than 100 levels"),
         {"t.jsonl": lines(ROWS, PAIR + f', "extra": {DEEP}}}')}, model=True),
    Case("json-file-nested-3000-levels", train("t.json"),
         ("t.json", "nested more than 100 levels"),
         {"t.json": "[" + json.dumps(ROWS[0])[:-1] + f', "extra": {DEEP}}}]'}, model=True),
    Case("jsonl-5000-digit-integer", train("t.jsonl"),
         ("t.jsonl, line 13", "5,001 digits", "as a string"),
         {"t.jsonl": lines(ROWS, PAIR + f', "id": {HUGE}}}')}, model=True),
    Case("recipe-yaml-nested-3000-levels", ("validate", "r.yaml"),
         ("r.yaml", "nested more than 100 levels", "line 2"),
         {"r.yaml": f"recipe: json-output\njson_schema: {DEEP}\n"}),
    Case("recipe-yaml-5000-digit-integer", ("validate", "r.yaml"),
         ("r.yaml", "5,001 digits", "line 3"),
         {"r.yaml": f"recipe: json-output\nlora:\n  r: {HUGE}\n"}),
    Case("override-5000-digit-integer", ("validate", "json-output", f"lora.r={HUGE}"),
         ("lora.r=1000", "5,001 digits")),
    Case("override-nested-3000-levels", ("show", "json-output", f"json_schema={DEEP}"),
         ("json_schema=", "nested more than 100 levels")),
    Case("import-yaml-nested-3000-levels", ("import", "c.yaml"),
         ("c.yaml", "nested more than 100 levels"), {"c.yaml": f"learning_rate: {DEEP}\n"}),
    Case("import-yaml-5000-digit-integer", ("import", "c.yaml"),
         ("c.yaml", "5,001 digits", "line 2"),
         {"c.yaml": f"base_model: m\nlora_r: {HUGE}\n"}),
]  # fmt: skip


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_odd_but_valid_input_is_named(case: Case, tmp_path, monkeypatch, tiny_model_dir):
    run_case(case, tmp_path, monkeypatch, tiny_model_dir)
