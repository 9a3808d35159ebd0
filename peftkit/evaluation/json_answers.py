"""Does the model answer in JSON, does the JSON satisfy the recipe's schema, does it say what
the reference says, and did the model stop by itself?

Strict on purpose: an answer counts as JSON only if the whole generated text (whitespace
aside) parses, because that is what a program downstream will do with it. Format is not
content: a model can answer schema-valid JSON every time with every value wrong, so where the
evaluation rows carry reference answers the values are scored too (:func:`content_rates`).
And an answer cut off at ``max_new_tokens`` is a model that never learned to stop, however
good the text before the cut (:class:`Answers`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

STOPPED_AT_LEAST = 0.5
"""After training, fewer than this share of answers ending by themselves is named in the run's
metrics: most answers then end only because generation was cut off, which is how a model that
never learned to emit EOS looks (a few long answers cut at the limit are not)."""

NOT_JSON = object()
"""What :func:`parsed_json` gives for text that is not JSON (None is JSON's null)."""


def json_rates(answers: list[str], schema: dict[str, Any] | None = None) -> dict[str, float]:
    """The share of answers that parse as JSON and (with a schema) that satisfy it."""
    validator = None
    if schema is not None:
        from jsonschema import validators

        validator = validators.validator_for(schema)(schema)
    parsed = valid = 0
    for answer in answers:
        value = parsed_json(answer)
        if value is NOT_JSON:
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


def parsed_json(text: str) -> Any:
    """``text`` (whitespace aside) as a JSON value, or ``NOT_JSON``: None is JSON's null."""
    try:
        return json.loads(text.strip(), parse_constant=_reject_constant)
    except ValueError:
        return NOT_JSON


def content_rates(answers: Sequence[str], references: Sequence[Any]) -> dict[str, float]:
    """How often the answers say what the reference answers say, not only in which format.

    ``exact_match_rate``: the share of answers equal to their reference; whitespace around
    them aside, and, when the reference is JSON, as parsed values (key order and spacing do not
    matter, ``true`` is not ``1``). ``key_match_rate``: for each reference that is a JSON object
    with keys, the share of its keys whose value the answer gives equally (an answer that is
    not a JSON object scores 0; keys the reference lacks are not counted), averaged over those
    rows; absent when no reference is such an object. Rows whose reference is None (or chat
    turns without text) are left out; with none left, the result is empty.
    """
    pairs = [
        (answer, text)
        for answer, reference in zip(answers, references, strict=True)
        if (text := _reference_text(reference)) is not None
    ]
    if not pairs:
        return {}
    exact = [_same_answer(answer, reference) for answer, reference in pairs]
    rates = {"exact_match_rate": sum(exact) / len(exact)}
    shares = [s for answer, ref in pairs if (s := _key_share(answer, ref)) is not None]
    if shares:
        rates["key_match_rate"] = sum(shares) / len(shares)
    return rates


def _reference_text(reference: Any) -> str | None:
    """A reference as text: conversational completions are chat turns, whose last text is the
    answer the model was to give."""
    if isinstance(reference, str) or reference is None:
        return reference
    if isinstance(reference, list):
        texts = [m["content"] for m in reference if isinstance(m, dict)]
        texts = [text for text in texts if isinstance(text, str)]
        return texts[-1] if texts else None
    return None


def _same_answer(answer: str, reference: str) -> bool:
    expected = parsed_json(reference)
    if expected is NOT_JSON:
        return answer.strip() == reference.strip()
    given = parsed_json(answer)
    return given is not NOT_JSON and _same_value(given, expected)


def _key_share(answer: str, reference: str) -> float | None:
    """The share of the reference object's keys the answer gets right; None when the reference
    is not a JSON object with keys, so it has no keys to score."""
    expected = parsed_json(reference)
    if not isinstance(expected, dict) or not expected:
        return None
    given = parsed_json(answer)
    if not isinstance(given, dict):
        return 0.0
    right = sum(key in given and _same_value(given[key], value) for key, value in expected.items())
    return right / len(expected)


def _same_value(given: Any, expected: Any) -> bool:
    """JSON equality of parsed values: numbers by value (JSON has one number type, so ``1`` is
    ``1.0``), but a boolean is not a number, as Python's ``True == 1`` would have it."""
    if isinstance(given, bool) or isinstance(expected, bool):
        return type(given) is type(expected) and given == expected
    if isinstance(given, dict) and isinstance(expected, dict):
        return given.keys() == expected.keys() and all(
            _same_value(given[key], value) for key, value in expected.items()
        )
    if isinstance(given, list) and isinstance(expected, list):
        return len(given) == len(expected) and all(map(_same_value, given, expected))
    if isinstance(given, (dict, list)) or isinstance(expected, (dict, list)):
        return False
    return given == expected


@dataclass(frozen=True)
class Answers:
    """Generated answers, and for each whether it stopped by itself.

    ``stopped[i]`` is True when answer ``i`` ended with an end-of-sequence token (any of the
    generation config's ``eos_token_id``; one generated as the last allowed token counts) and
    False when it ran to ``max_new_tokens``: the decoded text cannot tell, as special tokens
    are skipped, yet a model that never ends its answers is unusable however good their start.
    """

    texts: list[str]
    stopped: list[bool]
    max_new_tokens: int

    def stop_rates(self) -> dict[str, float]:
        """``stopped_rate`` (ended by themselves) and ``truncated_rate`` (ran to the limit)."""
        count = max(len(self.stopped), 1)
        stopped = sum(self.stopped)
        return {
            "stopped_rate": stopped / count,
            "truncated_rate": (len(self.stopped) - stopped) / count,
        }

    def stop_note(self) -> str | None:
        """The notice for a trained model most of whose answers ran to the limit (fewer than
        ``STOPPED_AT_LEAST`` stopped by themselves); None otherwise."""
        rates = self.stop_rates()
        if not self.stopped or rates["stopped_rate"] >= STOPPED_AT_LEAST:
            return None
        truncated = rates["truncated_rate"]
        return (
            f"the model never learned to stop: {truncated:.0%} of answers ran to "
            f"max_new_tokens={self.max_new_tokens} without an EOS token. Fix: check that the "
            "training answers end with the tokenizer's EOS token and that padding does not "
            "mask it out of the labels (a pad token that is the EOS token does, with a collator "
            "that masks pad tokens); if the answers are simply longer, raise "
            "generation.max_new_tokens"
        )


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
) -> Answers:
    """Greedy, batched answers to ``prompts`` (left padding, so every answer starts together),
    with whether each stopped by itself (:class:`Answers`)."""
    import torch

    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    # An unmerged adapter makes every generated token pay for the extra matmuls; merging for the
    # duration is exact enough in 16/32-bit, but lossy on a quantized base, so not there; and
    # inside peft's disable_adapter() a merged adapter would answer for the base model.
    merge = (
        hasattr(model, "merge_adapter")
        and not getattr(model, "is_quantized", False)
        and not _adapters_disabled(model)
    )
    if merge:
        model.merge_adapter()
    eos = torch.tensor(_eos_ids(model), dtype=torch.long, device=model.device)
    answers: list[str] = []
    stopped: list[bool] = []
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
            # After its EOS an answer is padded; with no EOS it ran to max_new_tokens.
            stopped += torch.isin(new_tokens, eos).any(dim=1).tolist()
    finally:
        if merge:
            model.unmerge_adapter()
        tokenizer.padding_side = side
        model.train(was_training)
    return Answers(answers, stopped, max_new_tokens)


def _adapters_disabled(model: Any) -> bool:
    """Whether the model's adapter layers are switched off (peft's ``disable_adapter()``)."""
    return any(getattr(module, "disable_adapters", False) is True for module in model.modules())


def _eos_ids(model: Any) -> list[int]:
    """The token ids that end generation: the generation config's ``eos_token_id`` (one id or
    several, as Llama 3's end-of-turn and end-of-text); none when it has none."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ids is None:
        return []
    return [int(ids)] if isinstance(ids, int) else [int(i) for i in ids]
