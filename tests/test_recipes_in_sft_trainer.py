"""The built configs drive a real SFTTrainer on the tiny model: every built-in recipe trains."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from test_loss_labels import _trained_runs

from peftkit import recipes
from peftkit.testing import prompt_completion_rows, text_rows

SHORT_RUN = [
    "training.max_steps=3",
    "training.batch_size=2",
    "training.gradient_accumulation_steps=1",
    "training.max_length=64",
    "training.logging_steps=1",
    "training.eval_steps=2",
]


def _train(recipe: recipes.Recipe, model_dir: Path, out: Path, rows: list[dict]) -> object:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, quantization_config=recipe.build_bnb_config()
    )
    data = Dataset.from_list(rows).train_test_split(test_size=0.25, seed=0)
    trainer = SFTTrainer(
        model=model,
        args=recipe.build_sft_config(out),
        peft_config=recipe.build_lora_config(),
        train_dataset=data["train"],
        eval_dataset=data["test"],
        processing_class=tokenizer,
    )
    trainer.train()
    return trainer


def _losses(trainer: object, key: str) -> list[float]:
    return [row[key] for row in trainer.state.log_history if key in row]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("json-output", prompt_completion_rows(24)),
        ("domain-adaptation", text_rows(24)),
        ("qlora-budget", prompt_completion_rows(24)),
    ],
)
def test_builtin_recipe_trains(name: str, rows: list[dict], tiny_model_dir: Path, tmp_path: Path):
    """SFTTrainer accepts the three built configs and trains to a finite loss."""
    recipe = recipes.load(name, [f"model.name={tiny_model_dir}", *SHORT_RUN])
    trainer = _train(recipe, tiny_model_dir, tmp_path / "out", rows)
    train_losses, eval_losses = _losses(trainer, "loss"), _losses(trainer, "eval_loss")
    assert train_losses and all(math.isfinite(x) for x in train_losses)
    assert eval_losses and all(math.isfinite(x) for x in eval_losses)
    assert trainer.state.global_step == 3
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_qlora_budget_loads_the_base_in_4bit(tiny_model_dir: Path, tmp_path: Path):
    """QLoRABudget's BitsAndBytesConfig really quantizes the base through bitsandbytes (on CPU)."""
    import bitsandbytes as bnb

    recipe = recipes.load("qlora-budget", [f"model.name={tiny_model_dir}", *SHORT_RUN])
    trainer = _train(recipe, tiny_model_dir, tmp_path / "out", prompt_completion_rows(16))
    four_bit = [m for m in trainer.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(four_bit) == 2 * 7  # q, k, v, o, gate, up, down in each of the two layers
    assert four_bit[0].weight.quant_state.quant_type == "nf4"


def test_full_method_builds_no_lora_config_and_trains_every_weight(
    tiny_model_dir: Path, tmp_path: Path
):
    """``method: full`` returns no LoraConfig, and the same trainer code then trains all weights."""
    recipe = recipes.load(
        "json-output",
        [f"model.name={tiny_model_dir}", "method=full", "training.learning_rate=5e-5"]
        + ["callbacks.early_stopping.allow_full_copy=true", *SHORT_RUN],
    )
    assert recipe.build_lora_config() is None
    assert recipe.build_bnb_config() is None
    from transformers import AutoModelForCausalLM

    before = dict(AutoModelForCausalLM.from_pretrained(tiny_model_dir).named_parameters())
    trainer = _train(recipe, tiny_model_dir, tmp_path / "out", prompt_completion_rows(16))
    after = dict(trainer.model.named_parameters())
    assert after.keys() == before.keys() and all(p.requires_grad for p in after.values())
    unchanged = [n for n, p in after.items() if torch.equal(p.detach(), before[n].detach())]
    assert unchanged == []  # every weight tensor of the model moved in 3 steps
    assert all(math.isfinite(x) for x in _losses(trainer, "loss"))


def _trained_texts(trainer: Any) -> list[list[str]]:
    """For each training example, the text of each run of tokens that carries a label, in a
    batch the trainer's own collator builds (what the loss is computed on)."""
    examples = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(examples)
    rows = zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True)
    return [[trainer.processing_class.decode(run) for run in _trained_runs(*row)] for row in rows]


def _answers_only(trained: list[list[str]], rows: list[dict[str, Any]]) -> None:
    """Each example trains on its answer and the end of the turn, and on nothing else (an
    answer longer than max_length is cut, so its start is what is trained)."""
    assert len(trained) == len(rows)
    for runs, (question, answer) in zip(trained, rows, strict=True):
        assert len(runs) == 1 and runs[0], runs
        assert (answer + "<|im_end|>").startswith(runs[0]) and len(runs[0]) >= 8
        assert question not in runs[0]


def test_messages_format_trains_on_assistant_turns(tiny_model_dir: Path, tmp_path: Path):
    """Chat data goes through the chat template, and the loss is on the assistant turns only:
    read off the labels of a batch the trainer builds."""
    pairs = [(r["prompt"], r["completion"]) for r in prompt_completion_rows(16)]
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in pairs
    ]
    recipe = recipes.load(
        "json-output",
        [f"model.name={tiny_model_dir}", "data.format=messages", *SHORT_RUN],
    )
    assert recipe.build_sft_config(tmp_path).assistant_only_loss is True
    trainer = _train(recipe, tiny_model_dir, tmp_path / "out", rows)
    assert trainer.state.global_step == 3
    # Keys sorted: datasets may store a turn's keys in another order than the rows had them.
    by_text = {json.dumps(r, sort_keys=True): pair for r, pair in zip(rows, pairs, strict=True)}
    trained_rows = [
        by_text[json.dumps({"messages": e["messages"]}, sort_keys=True)]
        for e in trainer.train_dataset
    ]
    _answers_only(_trained_texts(trainer), trained_rows)


def test_chat_turn_prompts_and_completions_train(tiny_model_dir: Path, tmp_path: Path):
    """Prompt/completion rows written as chat turns (which peftkit's data checks accept) go
    through the chat template and train, with the loss on the completion only."""
    pairs = [(r["prompt"], r["completion"]) for r in prompt_completion_rows(16)]
    rows = [
        {
            "prompt": [{"role": "user", "content": q}],
            "completion": [{"role": "assistant", "content": a}],
        }
        for q, a in pairs
    ]
    recipe = recipes.load("json-output", [f"model.name={tiny_model_dir}", *SHORT_RUN])
    trainer = _train(recipe, tiny_model_dir, tmp_path / "out", rows)
    assert trainer.state.global_step == 3
    trained_rows = [
        (e["prompt"][0]["content"], e["completion"][0]["content"]) for e in trainer.train_dataset
    ]
    _answers_only(_trained_texts(trainer), trained_rows)


def test_building_configs_emits_no_future_warning(tmp_path: Path, tiny_model_dir: Path):
    """Only current HF field names are passed: no FutureWarning spam on every build."""
    for name in recipes.BUILTIN:
        recipe = recipes.load(name, [f"model.name={tiny_model_dir}"])
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            recipe.build_sft_config(tmp_path)
            recipe.build_lora_config()
            recipe.build_bnb_config()
