"""Which tokens the loss is computed on, read off a real batch: the recipe's SFTConfig, TRL's
SFTTrainer tokenizing the data, and the trainer's own data collator building the labels.

A finite loss says nothing about *which* tokens are trained: a recipe that silently trained on
the prompts too would pass every other test. Here the labels of a collated batch are checked
token by token (-100 is ignored by the loss).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from peftkit import recipes
from peftkit.testing import prompt_completion_rows, text_rows

IGNORED = -100

CHAT = [
    {
        "messages": [
            {"role": "system", "content": "Answer with one JSON object."},
            {"role": "user", "content": "HTTP status 200?"},
            {"role": "assistant", "content": '{"code": 200, "phrase": "OK"}'},
            {"role": "user", "content": "And 404?"},
            {"role": "assistant", "content": '{"code": 404, "phrase": "Not Found"}'},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "HTTP status 500?"},
            {"role": "assistant", "content": '{"code": 500}'},
        ]
    },
]
"""System, user and assistant turns, two assistant turns in one conversation, and a shorter
conversation so that the batch is padded."""


def _batch(
    model_dir: Path, out: Path, name: str, overrides: list[str], rows: list[dict]
) -> tuple[Any, dict[str, Any]]:
    """The tokenizer and one collated batch of ``rows``, as SFTTrainer trains on them."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    recipe = recipes.load(name, [f"model.name={model_dir}", "training.max_length=128", *overrides])
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(model_dir),
            args=recipe.build_sft_config(out),
            peft_config=recipe.build_lora_config(),
            train_dataset=Dataset.from_list(rows),
            eval_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
        )
    examples = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    assert len(examples) == len(rows), "no example may be dropped for this check"
    return tokenizer, trainer.data_collator(examples)


def _trained_runs(ids: list[int], labels: list[int]) -> list[list[int]]:
    """The token ids of each contiguous run of positions that carry a label."""
    runs: list[list[int]] = []
    previous = IGNORED
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORED:
            assert label == token, "a label must be the token at its own position"
            if previous == IGNORED:
                runs.append([])
            runs[-1].append(token)
        previous = label
    return runs


def _rows(batch: dict[str, Any]) -> list[tuple[list[int], list[int]]]:
    return list(zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True))


def test_json_output_trains_on_the_completion_only(tiny_model_dir: Path, tmp_path: Path):
    """prompt/completion data: every prompt token is -100; the completion and its end-of-text
    token carry labels, and nothing else does."""
    rows = prompt_completion_rows(3)
    tokenizer, batch = _batch(
        tiny_model_dir, tmp_path, "json-output", ["data.format=prompt-completion"], rows
    )
    for row, (ids, labels) in zip(rows, _rows(batch), strict=True):
        [trained] = _trained_runs(ids, labels)
        assert tokenizer.decode(trained) == row["completion"] + tokenizer.eos_token
        start = labels.index(next(label for label in labels if label != IGNORED))
        assert tokenizer.decode(ids[:start]) == row["prompt"]
        assert all(label == IGNORED for label in labels[:start])


def test_the_completion_only_switch_really_switches(tiny_model_dir: Path, tmp_path: Path):
    """data.completion_only_loss=false on the same data: the prompt is trained too."""
    rows = prompt_completion_rows(3)
    overrides = ["data.format=prompt-completion", "data.completion_only_loss=false"]
    tokenizer, batch = _batch(tiny_model_dir, tmp_path, "json-output", overrides, rows)
    for row, (ids, labels) in zip(rows, _rows(batch), strict=True):
        [trained] = _trained_runs(ids, labels)
        assert tokenizer.decode(trained) == row["prompt"] + row["completion"] + tokenizer.eos_token


def test_json_output_trains_on_the_assistant_turns_only(tiny_model_dir: Path, tmp_path: Path):
    """messages data (assistant_only_loss through the template's generation markers): system
    and user turns and the role headers are -100, each assistant answer is trained, up to and
    including its end-of-turn token."""
    tokenizer, batch = _batch(
        tiny_model_dir, tmp_path, "json-output", ["data.format=messages"], CHAT
    )
    for row, (ids, labels) in zip(CHAT, _rows(batch), strict=True):
        runs = [tokenizer.decode(run) for run in _trained_runs(ids, labels)]
        answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        assert runs == [answer + "<|im_end|>" for answer in answers]
        ignored = tokenizer.decode(
            [t for t, label in zip(ids, labels, strict=True) if label == IGNORED]
        )
        for message in row["messages"]:
            if message["role"] != "assistant":
                assert message["content"] in ignored
                assert all(message["content"] not in run for run in runs)


def test_domain_adaptation_trains_on_every_token(tiny_model_dir: Path, tmp_path: Path):
    """Domain adaptation learns the text itself: every real token carries its label, and only
    padding is -100."""
    rows = text_rows(3)
    _, batch = _batch(tiny_model_dir, tmp_path, "domain-adaptation", ["data.format=text"], rows)
    for (ids, labels), mask in zip(_rows(batch), batch["attention_mask"].tolist(), strict=True):
        assert labels == [t if m else IGNORED for t, m in zip(ids, mask, strict=True)]
    assert 0 in batch["attention_mask"], "premise: the batch is padded"
