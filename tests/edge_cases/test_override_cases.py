"""Settings given twice or given empty on the command line: the parser would keep the last,
YAML reads an empty value as null (the field's default), so each is refused, naming the key.
"""

from __future__ import annotations

import pytest
from corpus import Case, run_case

from peftkit.testing import prompt_completion_rows

ROWS = prompt_completion_rows(12)
TRAIN = ("train", "json-output", "--model", "{model}", "--output", "out")

OVERRIDES = [
    Case("override-given-twice", ("validate", "json-output", "lora.r=8", "lora.r=32"),
         ("lora.r", "set twice", "lora.r=8", "lora.r=32")),
    Case("override-given-twice-under-its-old-name",
         ("validate", "json-output", "training.max_seq_length=512", "training.max_length=256"),
         ("training.max_length", "set twice", "max_seq_length=512")),
    Case("override-given-twice-to-train",
         (*TRAIN, "--data", "t.jsonl", "training.max_steps=2", "training.max_steps=20"),
         ("training.max_steps", "set twice"), {"t.jsonl": ROWS}, model=True),
    Case("override-and-option-for-the-same-field",
         (*TRAIN, "--data", "t.jsonl", "data.train_path=other.jsonl"),
         ("data.train_path", "set twice", "other.jsonl"), {"t.jsonl": ROWS}, model=True),
    Case("override-with-an-empty-value", ("validate", "json-output", "training.max_steps="),
         ("training.max_steps", "empty value", "training.max_steps=null")),
    Case("override-with-a-blank-value", ("show", "json-output", "lora.r= "),
         ("lora.r", "empty value")),
    Case("override-with-an-empty-value-to-train",
         (*TRAIN, "--data", "t.jsonl", "training.max_steps="),
         ("training.max_steps", "empty value"), {"t.jsonl": ROWS}, model=True),
    Case("data-given-twice", (*TRAIN, "--data", "a.jsonl", "--data", "b.jsonl"),
         ("--data", "given twice", "a.jsonl", "b.jsonl", "one file"),
         {"a.jsonl": ROWS, "b.jsonl": ROWS}, model=True),
    Case("data-given-twice-to-check",
         ("check", "json-output", "--model", "{model}", "--data=a.jsonl", "--data", "b.jsonl"),
         ("--data", "given twice"), {"a.jsonl": ROWS, "b.jsonl": ROWS}, model=True),
    Case("eval-data-given-twice",
         (*TRAIN, "--data", "a.jsonl", "--eval-data", "a.jsonl", "--eval-data", "b.jsonl"),
         ("--eval-data", "given twice"), {"a.jsonl": ROWS, "b.jsonl": ROWS}, model=True),
    Case("output-given-twice", (*TRAIN, "--data", "a.jsonl", "--output", "other"),
         ("--output", "given twice", "--output out", "--output other"), {"a.jsonl": ROWS},
         model=True),
    Case("gpu-memory-given-twice",
         ("estimate", "--model", "c.json", "--gpu-memory", "24", "--gpu-memory", "80"),
         ("--gpu-memory", "given twice", "24", "80"), {"c.json": {"model_type": "llama"}}),
    Case("a-tracker-listed-twice",
         ("validate", "json-output", "training.report_to=[tensorboard,tensorboard]"),
         ("training.report_to", "more than once", "training.report_to=[tensorboard]")),
]  # fmt: skip


@pytest.mark.parametrize("case", [c.param() for c in OVERRIDES])
def test_a_setting_given_twice_or_empty(case: Case, tmp_path, monkeypatch, tiny_model_dir):
    run_case(case, tmp_path, monkeypatch, tiny_model_dir)
