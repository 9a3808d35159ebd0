"""Does the model answer in JSON, and does the JSON satisfy the recipe's schema?

Strict on purpose: an answer counts as JSON only if the whole generated text (whitespace
aside) parses, because that is what a program downstream will do with it.
"""

from __future__ import annotations

import json
from typing import Any


def json_rates(answers: list[str], schema: dict[str, Any] | None = None) -> dict[str, float]:
    """The share of answers that parse as JSON and (with a schema) that satisfy it."""
    validator = None
    if schema is not None:
        from jsonschema import validators

        validator = validators.validator_for(schema)(schema)
    parsed = valid = 0
    for answer in answers:
        try:
            value = json.loads(answer.strip(), parse_constant=_reject_constant)
        except ValueError:
            continue
        parsed += 1
        if validator is None or validator.is_valid(value):
            valid += 1
    count = max(len(answers), 1)
    rates = {"json_valid_rate": parsed / count, "count": len(answers)}
    if schema is not None:
        rates["schema_valid_rate"] = valid / count
    return rates


def _reject_constant(name: str) -> None:
    """NaN and Infinity: Python's json accepts them, RFC 8259 and other parsers do not."""
    raise ValueError(f"{name} is not JSON")


def prompt_text(prompt: Any, tokenizer: Any) -> str:
    """The text a prompt is at generation time: chat turns through the chat template, as TRL
    formats them for training; a plain string as it is."""
    if isinstance(prompt, list):
        return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return prompt


def generate_answers(
    model: Any,
    tokenizer: Any,
    prompts: list[Any],
    max_new_tokens: int = 128,
    batch_size: int = 16,
) -> list[str]:
    """Greedy, batched answers to ``prompts`` (left padding, so every answer starts together)."""
    import torch

    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    # An unmerged adapter makes every generated token pay for the extra matmuls; merging for the
    # duration is exact enough in 16/32-bit, but lossy on a quantized base, so not there.
    merge = hasattr(model, "merge_adapter") and not getattr(model, "is_quantized", False)
    if merge:
        model.merge_adapter()
    answers: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [prompt_text(p, tokenizer) for p in prompts[start : start + batch_size]]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            batch = batch.to(model.device)
            with torch.no_grad():
                output = model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                    use_cache=True,  # the Trainer switches the model's cache off for training
                )
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            answers += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    finally:
        if merge:
            model.unmerge_adapter()
        tokenizer.padding_side = side
        model.train(was_training)
    return answers
