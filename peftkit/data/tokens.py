"""The rows as ``SFTTrainer`` will see them, tokenized in batches without the trainer.

TRL prepares a dataset row by row (``SFTTrainer._prepare_dataset``): EOS appended to text and
completions, the chat template applied to conversations, the prompt's tokens found as the common
prefix of the prompt and of prompt+completion, and the loss mask from the completion or from the
template's assistant marks. This module does the same with batched calls of the fast tokenizer,
so that the data audit takes seconds on 100,000 rows; tests/test_data_audit.py checks that the
tokens and labels equal the trainer's own. Truncation is left to the audit, which needs to know
what it cuts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

BATCH = 1000
"""Rows per tokenizer call: large enough for the fast tokenizer's batching to pay off."""


@dataclass(frozen=True)
class Tokenized:
    """One split's rows as token ids and loss masks (1: the token is trained on), untruncated."""

    ids: list[list[int]]
    masks: list[list[int]]


def tokenize(rows: list[dict[str, Any]], fmt: str, tokenizer: Any, masked: bool) -> Tokenized:
    """``rows`` (a dataset's ``to_list()``) in ``fmt`` as the trainer tokenizes them;
    ``masked`` is the recipe's completion-only (or assistant-only) loss."""
    parts = [
        batch_tokens(rows[s : s + BATCH], fmt, tokenizer, masked)
        for s in range(0, len(rows), BATCH)
    ]
    return Tokenized([i for ids, _ in parts for i in ids], [m for _, masks in parts for m in masks])


def batch_tokens(
    rows: list[dict[str, Any]], fmt: str, tokenizer: Any, masked: bool
) -> tuple[list[list[int]], list[list[int]]]:
    """One batch of rows: their token ids and loss masks."""
    column = {key: [row[key] for row in rows] for key in rows[0]} if rows else {}
    if fmt == "text":
        return _text(column["text"], tokenizer)
    if fmt == "prompt-completion":
        return _prompt_completion(column, tokenizer, masked)
    return _messages(column["messages"], tokenizer, masked)


def _with_eos(texts: list[str], eos: str) -> list[str]:
    return [text if text.endswith(eos) else text + eos for text in texts]


def _encode(tokenizer: Any, texts: list[str], special: bool = True) -> list[list[int]]:
    """Token ids of ``texts``: what ``tokenizer(texts)`` gives (``special``: with the special
    tokens it adds), through the fast tokenizer's batch call that skips character offsets."""
    backend = tokenizer.backend_tokenizer
    return [row.ids for row in backend.encode_batch_fast(texts, add_special_tokens=special)]


def _text(texts: list[str], tokenizer: Any) -> tuple[list[list[int]], list[list[int]]]:
    ids = _encode(tokenizer, _with_eos(texts, tokenizer.eos_token))
    return ids, [[1] * len(row) for row in ids]


def _prompt_completion(
    rows: dict[str, list[Any]], tokenizer: Any, masked: bool
) -> tuple[list[list[int]], list[list[int]]]:
    """The completion starts where the tokenized prompt and prompt+completion diverge (TRL's
    ``common_prefix_length``): usually the prompt's end, earlier when tokens merge across."""
    prompts = rows["prompt"]
    if prompts and isinstance(prompts[0], list):  # conversational: turns, through the template
        prompt_ids = _chat(tokenizer, prompts, add_generation_prompt=True)
        joined = [p + c for p, c in zip(prompts, rows["completion"], strict=True)]
        full_ids = _chat(tokenizer, joined)
    else:  # plain text: EOS appended to the completion
        completions = _with_eos(rows["completion"], tokenizer.eos_token)
        prompt_ids = _encode(tokenizer, prompts)
        full_ids = _encode(tokenizer, [p + c for p, c in zip(prompts, completions, strict=True)])
    masks = []
    for prompt, row in zip(prompt_ids, full_ids, strict=True):
        start = len(prompt) if row[: len(prompt)] == prompt else _common_prefix(prompt, row)
        masks.append([0] * start + [1] * (len(row) - start) if masked else [1] * len(row))
    return full_ids, masks


def _chat(tokenizer: Any, conversations: list[Any], **kwargs: Any) -> list[list[int]]:
    """What ``apply_chat_template(tokenize=True)`` gives: the rendered text's tokens, without
    the special tokens the tokenizer would add (the template writes its own)."""
    texts = tokenizer.apply_chat_template(conversations, tokenize=False, **kwargs)
    return _encode(tokenizer, texts, special=False)


def _common_prefix(a: list[int], b: list[int]) -> int:
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return length


def _messages(
    conversations: list[list[dict[str, Any]]], tokenizer: Any, masked: bool
) -> tuple[list[list[int]], list[list[int]]]:
    """The chat template over whole conversations; with ``masked``, the assistant tokens its
    ``{% generation %}`` blocks mark (all zero when the template has none)."""
    found = tokenizer.apply_chat_template(
        conversations, tokenize=True, return_dict=True, return_assistant_tokens_mask=masked
    )
    ids = [list(row) for row in found["input_ids"]]
    if masked:
        return ids, [list(row) for row in found["assistant_masks"]]
    return ids, [[1] * len(row) for row in ids]
