"""Loss on the answers only, for every data format, through the route a user takes: the labels
of a real SFTTrainer batch, built from ``recipe.build_sft_config(out, model, dataset=train)``
with the recipe's ``data.format: auto`` (the default of every imported recipe), and from
`peftkit train` (its trainer's first batch). Without the dataset, ``auto`` with answer-only loss
is refused: SFTConfig's ``completion_only_loss`` does nothing for chat data."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
from test_chat import LLAMA3_TOKENS, no_template_dir  # noqa: F401 (a fixture)
from test_loss_labels import _trained_runs
from train_helpers import load_recipe, short, with_data

from peftkit import RecipeError, recipes
from peftkit.testing import write_data

SYSTEM = {"role": "system", "content": "Answer in JSON."}
TURNS = [
    {"role": "user", "content": "HTTP status 200?"},
    {"role": "assistant", "content": '{"code": 200}'},
    {"role": "user", "content": "And 404?"},
    {"role": "assistant", "content": '{"code": 404}'},
]
TEXT = [{"text": "The cat sat on the mat."}, {"text": "A dog ran."}]
PROMPT_COMPLETION = [
    {"prompt": "HTTP status 200?", "completion": '{"code": 200}'},
    {"prompt": "And 404?", "completion": '{"code": 404}'},
]
CONVERSATIONAL = [
    {
        "prompt": [{"role": "user", "content": "HTTP status 200?"}],
        "completion": [{"role": "assistant", "content": '{"code": 200}'}],
    },
    {
        "prompt": [SYSTEM, {"role": "user", "content": "And 404?"}],
        "completion": [{"role": "assistant", "content": '{"code": 404}'}],
    },
]
WITH_SYSTEM = [{"messages": [SYSTEM, *TURNS]}, {"messages": TURNS[:2]}]
WITHOUT_SYSTEM = [{"messages": TURNS}, {"messages": TURNS[2:]}]
END = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>"}

CASES = {
    "text": ("domain-adaptation", [], TEXT),
    "prompt-completion": ("custom", [], PROMPT_COMPLETION),
    "conversational prompt-completion": ("custom", [], CONVERSATIONAL),
    "messages with a system turn": ("custom", [], WITH_SYSTEM),
    "messages without one": ("custom", [], WITHOUT_SYSTEM),
}


def _trained(tokenizer: Any, batch: dict[str, Any]) -> list[list[str]]:
    """Each row's trained text, one string per contiguous trained run."""
    rows = zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True)
    return [[tokenizer.decode(run) for run in _trained_runs(ids, labels)] for ids, labels in rows]


def _expected(case: str, rows: list[dict], tokenizer: Any, end: str) -> list[list[str]]:
    eos = tokenizer.eos_token
    if case == "text":
        return [[row["text"] + eos] for row in rows]
    if case == "prompt-completion":
        return [[row["completion"] + eos] for row in rows]
    if case == "conversational prompt-completion":
        return [[row["completion"][0]["content"] + end] for row in rows]
    return [
        [m["content"] + end for m in row["messages"] if m["role"] == "assistant"] for row in rows
    ]


def _python_route(model_dir: Path, recipe: recipes.Recipe, rows: list[dict], out: Path) -> Any:
    """What a user writes: the recipe's model kwargs, the SFTConfig built for the model and the
    dataset, SFTTrainer; the first batch's labels."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    train = Dataset.from_list(rows)
    model = AutoModelForCausalLM.from_pretrained(model_dir, **recipe.model_kwargs())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = SFTTrainer(
            model=model,
            args=recipe.build_sft_config(out, model, dataset=train),
            train_dataset=train,
            eval_dataset=train,
            processing_class=tokenizer,
            peft_config=recipe.build_lora_config(),
        )
    examples = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    return tokenizer, trainer.data_collator(examples)


CUSTOM = Path(tempfile.mkdtemp(prefix="peftkit-custom-")) / "custom.yaml"
CUSTOM.write_text("recipe: custom\n")
"""A custom recipe, every section at its default: ``data.format: auto``, as ``peftkit import``
writes one."""


def _source(name: str) -> str:
    return str(CUSTOM) if name == "custom" else name


def _recipe(name: str, model_dir: Path, *extra: str) -> recipes.Recipe:
    answers = [] if name == "domain-adaptation" else ["data.completion_only_loss=true"]
    return load_recipe(
        _source(name), [f"model.name={model_dir}", "training.max_length=128", *answers, *extra]
    )


@pytest.mark.parametrize("case", list(CASES))
def test_the_python_route_trains_on_the_answers_only(case, tiny_model_dir, tmp_path):
    name, extra, rows = CASES[case]
    recipe = _recipe(name, tiny_model_dir, *extra)
    assert recipe.data.format == ("text" if name == "domain-adaptation" else "auto")
    tokenizer, batch = _python_route(tiny_model_dir, recipe, rows, tmp_path)
    assert _trained(tokenizer, batch) == _expected(case, rows, tokenizer, END["chatml"])


def test_a_template_without_generation_markers_gets_trl_s_version(no_template_dir, tmp_path):  # noqa: F811
    """Llama 3's own template has no ``{% generation %}``: SFTTrainer swaps in TRL's training
    version of it, so the answers (and their end of turn) are still the only trained tokens."""
    from trl.chat_template_utils import has_generation_markers, llama3_chat_template

    folder = tmp_path / "llama3-template"
    shutil.copytree(no_template_dir, folder)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_special_tokens({"additional_special_tokens": LLAMA3_TOKENS})
    tokenizer.chat_template = llama3_chat_template
    assert not has_generation_markers(tokenizer.chat_template)
    tokenizer.save_pretrained(folder)
    recipe = _recipe("custom", folder)
    loaded, batch = _python_route(folder, recipe, WITHOUT_SYSTEM, tmp_path / "out")
    assert _trained(loaded, batch) == _expected("messages", WITHOUT_SYSTEM, loaded, END["llama3"])


def test_auto_without_the_dataset_is_refused_with_both_fixes(tiny_model_dir, tmp_path):
    recipe = _recipe("custom", tiny_model_dir)
    with pytest.raises(RecipeError) as raised:
        recipe.build_sft_config(tmp_path, tiny_model_dir)
    message = str(raised.value)
    assert "dataset=train" in message and "data.format=prompt-completion" in message
    declared = _recipe("custom", tiny_model_dir, "data.format=messages")
    assert declared.build_sft_config(tmp_path, tiny_model_dir).assistant_only_loss is True


def test_a_dataset_of_another_format_than_the_declared_one_is_refused(tiny_model_dir, tmp_path):
    recipe = _recipe("json-output", tiny_model_dir)  # declares prompt-completion
    with pytest.raises(RecipeError, match=r"data\.format: got 'prompt-completion'.*messages"):
        recipe.build_sft_config(tmp_path, tiny_model_dir, dataset=WITH_SYSTEM)


@pytest.mark.parametrize("case", list(CASES))
def test_peftkit_train_trains_on_the_answers_only(case, tiny_model_dir, tmp_path, monkeypatch):
    """The same rows through `peftkit train` (format detected from the file): the labels of the
    first batch its trainer trains on."""
    from peftkit.run import train as job

    name, extra, rows = CASES[case]
    seen: list[Any] = []
    real = job._trainer_class

    def recording() -> type:
        class Recording(real()):  # type: ignore[misc]
            def training_step(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
                seen.append({k: inputs[k].detach().cpu() for k in ("input_ids", "labels")})
                return super().training_step(model, inputs, *args, **kwargs)

        return Recording

    monkeypatch.setattr(job, "_trainer_class", recording)
    data = write_data(tmp_path / "train.jsonl", rows * 4)
    overrides = short(
        tiny_model_dir, "training.max_steps=1", "training.eval_strategy=no",
        "callbacks.early_stopping.enabled=false", "callbacks.overfit.enabled=false",
        "training.eval_fraction=0", "training.batch_size=8",
        "training.gradient_accumulation_steps=1", "training.max_length=128", json_output=False,
    )  # fmt: skip
    answers = [] if name == "domain-adaptation" else ["data.completion_only_loss=true"]
    recipe = load_recipe(_source(name), [*overrides, *answers, *extra])
    job.train(with_data(recipe, data), tmp_path / "out", check=False)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trained = sorted(map(tuple, _trained(tokenizer, seen[0])))
    expected = _expected(case, rows * 4, tokenizer, END["chatml"])
    assert trained == sorted(map(tuple, expected))
