"""Content and stops of generated answers: exact and per-key match against the reference
answers, and whether each answer ended by itself or ran to ``max_new_tokens``.

The matches are pure functions of text. The stops are read from real generation on the tiny
model, steered by a bias on its output logits: a token given +1e4 is the greedy choice, so a
test decides per prompt and per step whether the model emits EOS.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from peftkit.evaluation import STOPPED_AT_LEAST, Answers, content_rates, generate_answers

REFERENCE = '{"code": 404, "phrase": "Not Found", "tags": ["client", "error"]}'
EOS = 0  # the tiny model's "<|endoftext|>", its generation config's eos_token_id
WORD = 68  # "a", an ordinary token


# --- exact match and key match --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "exact", "keys"),
    [
        (REFERENCE, 1.0, 1.0),
        # key order and whitespace do not matter: the parsed values are compared
        ('\n { "tags":["client","error"],"phrase":"Not Found",  "code":404 }  ', 1.0, 1.0),
        ('{"code": 404.0, "phrase": "Not Found", "tags": ["client", "error"]}', 1.0, 1.0),
        # one value wrong: not exact, 2 of 3 keys
        ('{"code": 404, "phrase": "Not found", "tags": ["client", "error"]}', 0.0, 2 / 3),
        # a nested value counts whole: a list in another order is another value
        ('{"code": 404, "phrase": "Not Found", "tags": ["error", "client"]}', 0.0, 2 / 3),
        # a key missing, or an extra key: not exact; the reference's keys still score
        ('{"code": 404, "phrase": "Not Found"}', 0.0, 2 / 3),
        ('{"code": 404, "phrase": "Not Found", "tags": ["client", "error"], "x": 1}', 0.0, 1.0),
        # the values, not their text: "404" is a string
        ('{"code": "404", "phrase": "Not Found", "tags": ["client", "error"]}', 0.0, 2 / 3),
        # schema-valid-looking but all wrong
        ('{"code": 200, "phrase": "OK", "tags": []}', 0.0, 0.0),
        # not JSON, or JSON that is not an object: 0 for every key
        ('Sure! {"code": 404, "phrase": "Not Found", "tags": ["client", "error"]}', 0.0, 0.0),
        ("[404]", 0.0, 0.0),
        ("", 0.0, 0.0),
        ('{"code": NaN}', 0.0, 0.0),
    ],
)
def test_an_answer_against_a_json_object_reference(answer: str, exact: float, keys: float):
    rates = content_rates([answer], [REFERENCE])
    assert rates == {"exact_match_rate": exact, "key_match_rate": pytest.approx(keys)}


def test_booleans_are_not_numbers():
    """Python's True == 1 would count {"ok": 1} as {"ok": true}; JSON does not."""
    assert content_rates(['{"ok": 1}'], ['{"ok": true}']) == {
        "exact_match_rate": 0.0,
        "key_match_rate": 0.0,
    }
    assert content_rates(["[true, 0]"], ["[1, false]"])["exact_match_rate"] == 0.0


def test_rates_are_averaged_over_rows():
    answers = [REFERENCE, '{"code": 404}', "no"]
    rates = content_rates(answers, [REFERENCE] * 3)
    assert rates["exact_match_rate"] == pytest.approx(1 / 3)
    assert rates["key_match_rate"] == pytest.approx((1 + 1 / 3 + 0) / 3)


def test_references_that_are_not_json_objects_have_no_keys_to_score():
    """A JSON array or number is compared whole; plain text after stripping whitespace. Only
    object references (with keys) enter the key match, which is absent without any."""
    answers = [" [1, 2] ", "42.0", "  Paris\n", "paris", '{"a": 1}']
    references = ["[1,2]", "42", "Paris", "Paris", "{}"]
    assert content_rates(answers, references) == {"exact_match_rate": pytest.approx(3 / 5)}
    mixed = content_rates(['{"a": 1}', "x"], ['{"a": 1, "b": 2}', "x"])
    assert mixed == {"exact_match_rate": 0.5, "key_match_rate": 0.5}  # one object reference


def test_chat_turn_references_and_missing_references():
    """A conversational completion is chat turns: its last text is the reference. Rows without
    a reference are left out; with none, there is nothing to score."""
    turns = [{"role": "assistant", "content": REFERENCE}]
    rates = content_rates([REFERENCE, "x"], [turns, None])
    assert rates == {"exact_match_rate": 1.0, "key_match_rate": 1.0}
    assert content_rates(["x"], [None]) == {}
    with pytest.raises(ValueError):
        content_rates(["x", "y"], ["x"])  # one reference per answer


# --- stopped and truncated ------------------------------------------------------------------------


def test_stop_rates_and_the_note_for_a_model_that_never_learned_to_stop():
    stopped = Answers(["a", "b", "c", "d"], [True, True, False, False], max_new_tokens=8)
    assert stopped.stop_rates() == {"stopped_rate": 0.5, "truncated_rate": 0.5}
    assert STOPPED_AT_LEAST == 0.5 and stopped.stop_note() is None  # half is not fewer than half
    running = Answers(["a", "b", "c", "d"], [True, False, False, False], max_new_tokens=8)
    note = running.stop_note()
    assert note is not None
    assert note.startswith("the model never learned to stop: 75% of answers ran to ")
    assert "max_new_tokens=8" in note and "generation.max_new_tokens" in note
    assert Answers([], [], 8).stop_rates() == {"stopped_rate": 0.0, "truncated_rate": 0.0}
    assert Answers([], [], 8).stop_note() is None


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id == EOS
    return model, tokenizer


@contextmanager
def steered(model: Any, choose: Callable[[int, int], int]) -> Iterator[None]:
    """The model's greedy token for batch row ``r`` at generation step ``s`` is ``choose(r, s)``
    (a +1e4 logit bias on the last position)."""
    calls = []

    def bias(module: Any, args: Any, logits: Any) -> Any:
        step = len(calls)
        calls.append(step)
        logits = logits.clone()
        for row in range(logits.shape[0]):
            logits[row, -1, choose(row, step)] += 1e4
        return logits

    handle = model.lm_head.register_forward_hook(bias)
    try:
        yield
    finally:
        handle.remove()


PROMPTS = ["Describe HTTP status 404 as JSON.", "Describe HTTP status 200 as JSON."]


@pytest.mark.parametrize("pad_is_eos", [False, True])
def test_generation_tells_answers_that_stopped_from_answers_cut_at_the_limit(tiny, pad_is_eos):
    """Row 0 writes two words then EOS; row 1 never emits EOS. In one batch, row 0 is padded
    after its EOS while row 1 runs on; with the pad token the EOS token (the pad=EOS setup),
    the padding is EOS too and row 1 still did not stop."""
    model, tokenizer = tiny
    if pad_is_eos:
        tokenizer = type(tokenizer).from_pretrained(tokenizer.name_or_path)
        tokenizer.pad_token = tokenizer.eos_token
    with steered(model, lambda row, step: EOS if row == 0 and step == 2 else WORD):
        answers = generate_answers(model, tokenizer, PROMPTS, max_new_tokens=5)
    assert answers.stopped == [True, False]
    assert answers.texts == ["aa", "aaaaa"]
    assert answers.stop_rates() == {"stopped_rate": 0.5, "truncated_rate": 0.5}
    assert answers.max_new_tokens == 5


def test_an_eos_as_the_last_allowed_token_is_a_stop(tiny):
    model, tokenizer = tiny
    with steered(model, lambda row, step: EOS):
        answers = generate_answers(model, tokenizer, PROMPTS, max_new_tokens=1)
    assert answers.stopped == [True, True] and answers.texts == ["", ""]


def test_every_eos_id_of_the_generation_config_ends_an_answer(tiny):
    """Generation stops at any of the generation config's EOS ids (Llama 3 has two), and so
    does the count; without an EOS id nothing stops."""
    model, tokenizer = tiny
    config = model.generation_config
    try:
        config.eos_token_id = [EOS, WORD]
        with steered(model, lambda row, step: WORD):
            answers = generate_answers(model, tokenizer, PROMPTS, max_new_tokens=4, batch_size=1)
        assert answers.stopped == [True, True] and answers.texts == ["a", "a"]
        config.eos_token_id = None
        with steered(model, lambda row, step: EOS):
            answers = generate_answers(model, tokenizer, PROMPTS, max_new_tokens=3)
        assert answers.stopped == [False, False]
    finally:
        config.eos_token_id = EOS


# --- where people read them -----------------------------------------------------------------------


def _metrics(tmp_path: Path) -> dict[str, Any]:
    rates = {
        "json_valid_rate": 1.0,
        "exact_match_rate": 0.25,
        "key_match_rate": 0.5,
        "stopped_rate": 0.0,
        "truncated_rate": 1.0,
    }
    note = Answers(["x"], [False], 8).stop_note()
    return {
        "recipe": "json-output",
        "model": "tiny",
        "data": {"format": "prompt-completion", "train_rows": 36, "eval_rows": 4, "notes": []},
        "before": {"eval_loss": 2.0, **rates},
        "after": {"eval_loss": 1.0, **rates, "notes": [note]},
        "stop_reason": None,
        "global_step": 4,
        "best_step": 4,
        "train_time_s": 1.0,
        "tokens_per_s": 100.0,
        "output": str(tmp_path),
    }


def test_the_summary_and_the_card_show_the_content_and_stop_rates(tmp_path: Path):
    from rich.console import Console

    from peftkit import recipes
    from peftkit.run.card import adapter_card
    from peftkit.run.report import print_training

    metrics = _metrics(tmp_path)
    console = Console(record=True, width=400)
    print_training(metrics, tmp_path, console)
    summary = console.export_text()
    card = adapter_card(recipes.load("json-output"), metrics)
    for label in ("exact match with the reference", "keys matching the reference"):
        assert label in summary and label in card
    assert "| answers cut at max_new_tokens | 100.0% | 100.0% |" in card
    assert "| answers that stopped (EOS) | 0.0% | 0.0% |" in card
    note = "the model never learned to stop: 100% of answers ran to max_new_tokens=8"
    assert f"note: {note}" in summary
    assert f"Note: {note}" in card
    json.dumps(metrics)  # metrics.json holds them as they are


# --- more of the values compared, and how answers are generated -----------------------------------


@pytest.mark.parametrize(
    ("answer", "reference", "exact"),
    [
        ('{"ok": true}', '{"ok": true}', 1.0),  # a boolean equals itself
        ("[false]", "[false]", 1.0),
        ('{"ok": false}', '{"ok": true}', 0.0),
        ('["code"]', '{"code": 1}', 0.0),  # a list is not an object with those keys
        ('["a", "b"]', '"ab"', 0.0),  # nor a string of those characters
        ("[1]", "1", 0.0),
        ("{}", "[]", 0.0),
    ],
)
def test_values_of_other_kinds_are_never_equal(answer: str, reference: str, exact: float):
    assert content_rates([answer], [reference])["exact_match_rate"] == exact


def test_chat_turns_without_text_are_no_reference():
    """A reference given as chat turns whose contents are not text (or not turns at all)
    has no text to compare: the row is left out, as a None reference is."""
    no_text = [{"role": "assistant", "content": None}, "not a turn"]
    assert content_rates(["x"], [no_text]) == {}
    assert content_rates(["x"], [7]) == {}
    turns = ["not a turn", {"role": "assistant", "content": "x"}]
    assert content_rates(["x"], [turns]) == {"exact_match_rate": 1.0}


def _inputs_of_generate(model: Any) -> tuple[list[Any], Any]:
    """Record the input ids of every forward pass of ``model`` (a hook; the run is real)."""
    seen: list[Any] = []

    def record(module: Any, args: Any, kwargs: Any) -> None:
        seen.append(kwargs.get("input_ids", args[0] if args else None))

    return seen, model.register_forward_pre_hook(record, with_kwargs=True)


def test_prompts_are_chat_templated_and_tokenized_as_they_are(tiny):
    """A chat prompt is the chat template's text with the assistant's turn opened; a plain
    prompt is its own text. Neither gets a second set of special tokens from the tokenizer
    (the template already has them), even from a tokenizer that would add a BOS."""
    from tokenizers.processors import TemplateProcessing

    model, tokenizer = tiny
    bos_adding = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    bos = bos_adding.bos_token_id
    bos_adding._tokenizer.post_processor = TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", bos)]
    )
    assert bos_adding("a")["input_ids"][0] == bos  # premise: this one adds a BOS
    chat = [{"role": "user", "content": "Describe HTTP status 404 as JSON."}]
    expected = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert expected.endswith("<|im_start|>assistant\n")
    for prompt, text in ((chat, expected), (PROMPTS[0], PROMPTS[0])):
        seen, hook = _inputs_of_generate(model)
        try:
            with steered(model, lambda row, step: EOS):
                generate_answers(model, bos_adding, [prompt], max_new_tokens=2)
        finally:
            hook.remove()
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert seen[0][0].tolist() == ids


def test_defaults_and_what_is_left_as_it_was(tiny):
    """128 new tokens at most and 16 prompts to a batch by default; greedy even where the
    model's generation config samples; the tokenizer's padding side and the model's training
    mode are as they were."""
    model, tokenizer = tiny
    calls: list[int] = []
    generate = model.generate

    def counted(**kwargs: Any) -> Any:
        calls.append(kwargs["input_ids"].shape[0])
        return generate(**kwargs)

    model.generate = counted
    config = model.generation_config
    sampling = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    before = {key: getattr(config, key) for key in sampling}
    tokenizer.padding_side = "right"
    model.train()
    try:
        for key, value in sampling.items():
            setattr(config, key, value)
        with steered(model, lambda row, step: EOS):
            answers = generate_answers(model, tokenizer, PROMPTS * 9)
        assert calls == [16, 2] and answers.max_new_tokens == 128
        assert (tokenizer.padding_side, model.training) == ("right", True)
        first = generate_answers(model, tokenizer, PROMPTS, max_new_tokens=6).texts
        again = generate_answers(model, tokenizer, PROMPTS, max_new_tokens=6).texts
        assert first == again  # greedy: the sampling settings are not used
    finally:
        del model.generate
        for key, value in before.items():
            setattr(config, key, value)
        tokenizer.padding_side = "left"
        model.eval()


def _merged_while_generating(model: Any, tokenizer: Any) -> list[bool]:
    """Whether the adapter's layers were merged at each forward pass of generate_answers."""
    layers = [m for m in model.modules() if hasattr(m, "merged") and hasattr(m, "lora_A")]
    assert layers
    seen: list[bool] = []
    hook = layers[0].register_forward_pre_hook(lambda layer, _: seen.append(layer.merged))
    try:
        generate_answers(model, tokenizer, PROMPTS, max_new_tokens=2)
    finally:
        hook.remove()
    assert not any(layer.merged for layer in layers)  # unmerged again after
    return seen


def test_an_adapter_is_merged_while_generating_but_not_on_a_quantized_base(tiny_model_dir):
    """Merging for the duration saves the adapter's extra matmuls for every token; on a 4-bit
    base it would be lossy, so there it is not merged. Either way the model ends as it was."""
    import torch
    from transformers import AutoTokenizer, BitsAndBytesConfig

    from peftkit.testing import peft_model

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = peft_model(tiny_model_dir)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.1)  # an adapter that changes the output
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert set(_merged_while_generating(model, tokenizer)) == {True}
    after = dict(model.named_parameters())
    assert all(torch.allclose(after[n], before[n], atol=1e-6) for n in before)
    quantized = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=quantized)
    four_bit = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear"))
    assert set(_merged_while_generating(four_bit, tokenizer)) == {False}
