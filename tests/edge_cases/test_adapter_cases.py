"""Bad input for ``evaluate`` and ``generate``: adapters that are missing, incomplete, without
their recipe or a whole model; evaluation data that is missing or not the recipe's format;
prompts and lengths that ask for nothing. Each ends as a user error (exit 2, the fix, no
traceback) before a weight loads, with nothing written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus import Case, run_case
from test_model_cases import adapter

from peftkit.testing import prompt_completion_rows, text_rows

EVAL = {"e.jsonl": prompt_completion_rows(6)}
RECIPE = "recipe: json-output\nmodel: {name: model}\n"
"""What `peftkit train` writes beside the adapter, its base the case's copy of the tiny model."""


def adapter_with_recipe(folder: Path) -> None:
    adapter(folder)
    (folder / "adapter" / "recipe.yaml").write_text(RECIPE, encoding="utf-8")


def adapter_without_base(folder: Path) -> None:
    adapter(folder)
    (folder / "adapter" / "adapter_config.json").write_text('{"peft_type": "LORA"}')


def evaluate(*args: str) -> tuple[str, ...]:
    return ("evaluate", "adapter", *args)


ADAPTERS = [
    # --- the adapter ---
    Case("evaluate-adapter-missing", ("evaluate", "nowhere", "--data", "e.jsonl"),
         ("nowhere", "adapter_config.json"), EVAL),
    Case("evaluate-adapter-without-recipe", evaluate("--data", "e.jsonl"),
         ("recipe.yaml", "--recipe FILE"), EVAL, adapter, model=True),
    Case("evaluate-recipe-missing", evaluate("--data", "e.jsonl", "--recipe", "nope.yaml"),
         ("nope.yaml", "no such file"), EVAL, adapter, model=True),
    Case("evaluate-a-whole-model", ("evaluate", "model", "--data", "e.jsonl"),
         ("whole model", "OUTPUT/adapter"), EVAL, model=True),
    Case("evaluate-adapter-without-weights", evaluate("--data", "e.jsonl"),
         ("adapter weights",), EVAL,
         lambda f: (adapter_with_recipe(f), (f / "adapter/adapter_model.safetensors").unlink()),
         model=True),
    # --- the data ---
    Case("evaluate-no-data-option", evaluate(), ("--data",), {}, adapter_with_recipe, model=True),
    Case("evaluate-data-missing", evaluate("--data", "nope.jsonl"), ("nope.jsonl", "no such"),
         {}, adapter_with_recipe, model=True),
    Case("evaluate-data-empty", evaluate("--data", "e.jsonl"), ("e.jsonl", "empty"),
         {"e.jsonl": ""}, adapter_with_recipe, model=True),
    Case("evaluate-data-bad-line", evaluate("--data", "e.jsonl"), ("e.jsonl", "line 2"),
         {"e.jsonl": '{"prompt": "a", "completion": "{}"}\n{"prompt": \n'},
         adapter_with_recipe, model=True),
    Case("evaluate-data-of-another-format", evaluate("--data", "e.jsonl"),
         ("e.jsonl", "prompt"), {"e.jsonl": text_rows(4)}, adapter_with_recipe, model=True),
    # --- generate ---
    Case("generate-adapter-missing", ("generate", "nowhere", "hi"), ("nowhere",), {}),
    Case("generate-empty-prompt", ("generate", "adapter", " "), ("PROMPT", "empty"), {},
         adapter_with_recipe, model=True),
    Case("generate-no-tokens", ("generate", "adapter", "hi", "--max-new-tokens", "0"),
         ("--max-new-tokens",), {}, adapter_with_recipe, model=True),
    Case("generate-adapter-names-no-base", ("generate", "adapter", "hi"),
         ("names no base model", "--recipe"), {}, adapter_without_base, model=True),
]  # fmt: skip


@pytest.mark.parametrize("case", [c.param() for c in ADAPTERS])
def test_adapter_that_cannot_be_scored(case: Case, tmp_path, monkeypatch, tiny_model_dir) -> None:
    run_case(case, tmp_path, monkeypatch, tiny_model_dir)
