"""Chat templates, special tokens and system prompts: a base model without a template trains on
chat data once one is chosen (``data.chat_template``), on the answers only, read off a real
SFTTrainer batch; the built-in templates mark exactly the answers and their end of turn; a
template without ``{% generation %}`` markers gets TRL's training version or is refused with the
fix; ``data.system_prompt`` puts a system turn first; ``peftkit train`` does all of it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from test_loss_labels import IGNORED, _rows, _trained_runs
from train_helpers import assert_user_error, load_recipe, run_main, short, without_chat_template

from peftkit.core.errors import RecipeError
from peftkit.data import add_system_prompt, use_chat_template
from peftkit.recipes.chat_templates import CHAT_TEMPLATES
from peftkit.testing import messages_rows, prompt_completion_rows, write_data

SYSTEM = "Answer with one JSON object."
CHAT = [
    {
        "messages": [
            {"role": "system", "content": "Be terse."},
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
"""A conversation with its own system turn and two answers, and one without a system turn."""
LLAMA3_TOKENS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


@pytest.fixture(scope="module")
def no_template_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as a base model ships: its tokenizer has no chat template."""
    return without_chat_template(tiny_model_dir, tmp_path_factory.mktemp("base") / "model")


def _tokenizer(folder: Path, *extra_tokens: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if extra_tokens:  # a tokenizer that has Llama 3's tokens
        tokenizer.add_special_tokens({"additional_special_tokens": list(extra_tokens)})
    return tokenizer


def _answers(row: dict[str, Any]) -> list[str]:
    return [m["content"] for m in row["messages"] if m["role"] == "assistant"]


# --- the Python route: a real SFTTrainer batch ------------------------------------------------


def test_a_base_model_without_a_template_trains_on_the_answers_only(no_template_dir, tmp_path):
    """data.chat_template=chatml and data.system_prompt, applied with the functions the job uses:
    the batch's labels are each answer and its <|im_end|>, nothing of the system and user
    turns; the conversation without a system turn got the recipe's, the other kept its own;
    the trainer made <|im_end|> an end of generation."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTTrainer

    recipe = load_recipe(
        "json-output",
        [f"model.name={no_template_dir}", "training.max_length=128", "data.format=messages"]
        + ["data.chat_template=chatml"]
        + [f"data.system_prompt={json.dumps(SYSTEM)}"],
    )
    assert _tokenizer(no_template_dir).chat_template is None  # premise: a base model
    tokenizer = use_chat_template(
        _tokenizer(no_template_dir), recipe.data.chat_template, assistant_only_loss=True
    )
    rows = add_system_prompt(Dataset.from_list(CHAT), recipe.data.system_prompt)
    model = AutoModelForCausalLM.from_pretrained(no_template_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = SFTTrainer(
            model=model,
            args=recipe.build_sft_config(tmp_path, eos_token=tokenizer.eos_token),
            peft_config=recipe.build_lora_config(),
            train_dataset=rows,
            eval_dataset=rows,
            processing_class=tokenizer,
        )
    examples = [trainer.train_dataset[i] for i in range(len(CHAT))]
    batch = trainer.data_collator(examples)
    for row, (ids, labels) in zip(CHAT, _rows(batch), strict=True):
        runs = [tokenizer.decode(run) for run in _trained_runs(ids, labels)]
        assert runs == [answer + "<|im_end|>" for answer in _answers(row)]
        ignored = tokenizer.decode(
            [t for t, lab in zip(ids, labels, strict=True) if lab == IGNORED]
        )
        for message in row["messages"]:
            if message["role"] != "assistant":
                assert message["content"] in ignored
    first, second = (tokenizer.decode(ids) for ids, _ in _rows(batch))
    assert "Be terse." in first and SYSTEM not in first
    assert second.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in model.generation_config.eos_token_id


@pytest.mark.parametrize("name", list(CHAT_TEMPLATES))
def test_each_built_in_template_marks_the_answers_and_their_end(name, no_template_dir):
    """Rendered over a conversation with a system turn and two answers, the assistant mask is
    each answer and the token that ends it, which becomes the EOS token (zephyr's is the
    tokenizer's own), and TRL agrees that the end of turn is trained."""
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    extra = LLAMA3_TOKENS if name == "llama3" else []
    tokenizer = use_chat_template(_tokenizer(no_template_dir, *extra), name)
    end = CHAT_TEMPLATES[name].end or "<|endoftext|>"
    assert tokenizer.eos_token == end
    found = tokenizer.apply_chat_template(
        CHAT[0]["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = found["input_ids"], found["assistant_masks"]
    runs = _trained_runs(ids, [t if m else IGNORED for t, m in zip(ids, mask, strict=True)])
    assert [tokenizer.decode(run) for run in runs] == [a + end for a in _answers(CHAT[0])]
    assert is_chat_template_stop_token_trained(tokenizer)
    prompt = tokenizer.apply_chat_template(
        CHAT[1]["messages"][:1], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith(("assistant\n", "<|assistant|>\n", "<|end_header_id|>\n\n"))


# --- markers added or checked -------------------------------------------------------------------


def test_a_template_trl_knows_gets_its_generation_markers(no_template_dir):
    """Llama 3's own template has no markers; with assistant-only loss it is replaced by TRL's
    training version, which marks the answers (so the data audit and the trainer agree)."""
    from trl.chat_template_utils import has_generation_markers, llama3_chat_template

    tokenizer = _tokenizer(no_template_dir, *LLAMA3_TOKENS)
    tokenizer.chat_template = llama3_chat_template
    assert not has_generation_markers(tokenizer.chat_template)
    use_chat_template(tokenizer, assistant_only_loss=True)
    assert has_generation_markers(tokenizer.chat_template)
    found = tokenizer.apply_chat_template(
        CHAT[1]["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    assert 1 in found["assistant_masks"]


def test_a_template_without_markers_that_trl_does_not_know_is_refused(no_template_dir, tmp_path):
    plain = tmp_path / "plain.jinja"
    plain.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    tokenizer = use_chat_template(_tokenizer(no_template_dir), str(plain))  # fine without loss
    assert tokenizer.chat_template == plain.read_text()
    with pytest.raises(RecipeError) as info:
        use_chat_template(_tokenizer(no_template_dir), str(plain), assistant_only_loss=True)
    message = str(info.value)
    assert "data.chat_template" in message and "{% generation %}" in message
    assert "data.completion_only_loss=false" in message
    with pytest.raises(RecipeError, match=r"no chat template\. Fix: set data\.chat_template"):
        use_chat_template(_tokenizer(no_template_dir), assistant_only_loss=True)


# --- choosing a template and tokens --------------------------------------------------------------


def test_a_template_from_its_text_or_a_file_and_names_that_are_neither(no_template_dir, tmp_path):
    text = CHAT_TEMPLATES["chatml"].text
    assert use_chat_template(_tokenizer(no_template_dir), text).chat_template == text
    (tmp_path / "t.j2").write_text(text)
    assert use_chat_template(_tokenizer(no_template_dir), str(tmp_path / "t.j2")).chat_template
    for choice, words in [
        ("chatm1", ["'chatm1' is not a built-in", "did you mean 'chatml'"]),
        (str(tmp_path / "nope.jinja"), ["nope.jinja", "not a file"]),
        (str(tmp_path / "t.txt"), ["t.txt", "no Jinja"]),
    ]:
        (tmp_path / "t.txt").write_text("just words")
        with pytest.raises(RecipeError) as info:
            use_chat_template(_tokenizer(no_template_dir), choice)
        assert all(word in str(info.value) for word in words), str(info.value)


def test_special_tokens_are_tokens_the_tokenizer_has(no_template_dir):
    """A template's end token, or a special token, that the vocabulary lacks is refused (a new
    token would start untrained), with zephyr as the template that fits any tokenizer."""
    tokenizer = use_chat_template(
        _tokenizer(no_template_dir),
        special_tokens={"eos_token": "<|im_end|>", "pad_token": "<pad>"},
    )
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<pad>")
    with pytest.raises(RecipeError, match=r"data.special_tokens.eos_token: '<\|nope\|>'.*zephyr"):
        use_chat_template(_tokenizer(no_template_dir), special_tokens={"eos_token": "<|nope|>"})
    with pytest.raises(RecipeError, match=r"llama3 template's end of turn: '<\|eot_id\|>'"):
        use_chat_template(_tokenizer(no_template_dir), "llama3")


def test_a_system_prompt_goes_first_in_conversations_without_one() -> None:
    conversational = {"prompt": [{"role": "user", "content": "Hi"}], "completion": "Hello"}
    rows = add_system_prompt([*CHAT, conversational], SYSTEM)
    assert rows[0] == CHAT[0]
    assert rows[1]["messages"][0] == {"role": "system", "content": SYSTEM}
    assert rows[1]["messages"][1:] == CHAT[1]["messages"]
    assert rows[2]["prompt"][0] == {"role": "system", "content": SYSTEM}
    with pytest.raises(RecipeError, match="no turns"):
        add_system_prompt(prompt_completion_rows(2), SYSTEM)


def test_the_job_s_data_has_the_system_prompt(tmp_path) -> None:
    """What `peftkit train`, `check` and `evaluate` read (peftkit.data.prepare): the recipe's
    system prompt first in each conversation without one, in training and evaluation rows."""
    from peftkit.data import prepare

    path = write_data(tmp_path / "chat.jsonl", CHAT * 5)
    recipe = load_recipe(
        "json-output", ["data.format=messages", f"data.system_prompt={json.dumps(SYSTEM)}"]
    )
    splits = prepare(recipe, path, None)
    rows = [*splits.train.to_list(), *splits.eval.to_list()]
    assert {row["messages"][0]["content"] for row in rows} == {SYSTEM, "Be terse."}
    assert all(row["messages"][0]["role"] == "system" for row in rows)


# --- peftkit train --------------------------------------------------------------------------------


def test_peftkit_train_uses_the_recipe_s_template_and_system_prompt(
    monkeypatch, no_template_dir, tmp_path
):
    """A base model without a template trains on chat data once data.chat_template is set; the
    adapter's tokenizer carries the template and its EOS, recipe.yaml the choice."""
    data = write_data(tmp_path / "chat.jsonl", messages_rows(12))
    out = tmp_path / "out"
    chat = ["data.format=messages", "data.chat_template=chatml", f"data.system_prompt={SYSTEM!r}"]
    args = ["train", "json-output", *short(no_template_dir, *chat, "training.max_length=128")]
    args += ["--data", str(data)]
    code, _, err = run_main(monkeypatch, *args, "--output", str(out))
    assert code == 0, err
    saved = _tokenizer(out / "adapter")
    assert saved.chat_template == CHAT_TEMPLATES["chatml"].text and saved.eos_token == "<|im_end|>"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["audit"]["errors"] == 0
    assert load_recipe(out / "recipe.yaml", []).data.system_prompt == SYSTEM
    # and the adapter is scored and tried with what it trained with
    code, shown, err = run_main(
        monkeypatch, "evaluate", str(out / "adapter"), "--data", str(data), "--json"
    )
    assert code == 0, err
    found = json.loads(shown)
    assert found["data"]["format"] == "messages" and "json_valid_rate" in found["after"]
    args = ["generate", str(out / "adapter"), "HTTP 200?", "--max-new-tokens", "8"]
    code, answer, err = run_main(monkeypatch, *args)
    assert code == 0, err
    asked = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "HTTP 200?"}]
    assert answer == _answer(no_template_dir, out / "adapter", asked) + "\n"


def _answer(base: Path, adapter: Path, turns: list[dict[str, str]]) -> str:
    """The greedy 8-token answer of ``base`` with ``adapter`` to ``turns``, through the
    adapter's tokenizer (its template), stopping at its EOS as training set it."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from peftkit.evaluation import generate_answers

    tokenizer = _tokenizer(adapter)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return generate_answers(model, tokenizer, [turns], max_new_tokens=8).texts[0]


def test_peftkit_train_refuses_a_system_prompt_for_plain_prompts(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    data = write_data(tmp_path / "t.jsonl", prompt_completion_rows(12))
    code, _, err = run_main(
        monkeypatch, "train", "json-output", "data.system_prompt=Be brief.", "--data", str(data)
    )
    assert not (tmp_path / "out").exists()
    assert_user_error(code, err, "data.system_prompt", "t.jsonl", "no turns")
