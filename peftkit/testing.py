"""A tiny model, data and a Trainer built offline in seconds, for testing code that trains:
what peftkit's own tests and benchmarks use, and what you can use to test your callbacks (or a
recipe) in a real ``Trainer`` run without a model hub.

    from peftkit.testing import build_tiny_model, trainer
    model_dir = build_tiny_model(tmp_path / "model")
    run = trainer(model_dir, tmp_path / "out", [MyCallback()])   # evaluates every step
    run.train()

The tokenizer is trained on text that ships with Python (module docstrings) and the model has
random weights, so nothing is downloaded. Importing this module is light; building a model
imports the HF stack.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}<|im_end|>"
    "{% endgeneration %}{% else %}{{ message['content'] }}<|im_end|>{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML with ``{% generation %}`` markers, so assistant-only loss can be tested."""


def _corpus() -> list[str]:
    """Real English text that every Python install has: the standard library's docstrings."""
    import argparse
    import collections
    import email
    import functools
    import http
    import json as json_module
    import logging
    import pathlib
    import subprocess
    import unittest

    modules = [
        argparse,
        collections,
        email,
        functools,
        http,
        json_module,
        logging,
        pathlib,
        subprocess,
        unittest,
    ]
    return [m.__doc__ or "" for m in modules] + [JSON_LINE_EXAMPLE]


JSON_LINE_EXAMPLE = '{"name": "Ada", "year": 1815, "tags": ["math", "poetry"]}'


def build_tiny_model(folder: Path) -> Path:
    """Write a 2-layer Llama with a 512-token BPE tokenizer (and a chat template) to ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        _corpus(),
        trainers.BpeTrainer(
            vocab_size=512,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|endoftext|>",
        pad_token="<pad>",
        chat_template=CHAT_TEMPLATE,
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    import torch

    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def prompt_completion_rows(count: int) -> list[dict[str, str]]:
    """Small instruction -> JSON examples derived from the standard library's HTTP statuses."""
    from http import HTTPStatus

    rows = []
    for status in list(HTTPStatus)[:count]:
        answer = {"code": status.value, "phrase": status.phrase}
        rows.append(
            {
                "prompt": f"Describe HTTP status {status.value} as JSON.",
                "completion": json.dumps(answer),
            }
        )
    return rows


def text_rows(count: int) -> list[dict[str, str]]:
    """Raw text examples (paragraphs of standard-library docstrings)."""
    paragraphs = [p.strip() for doc in _corpus() for p in doc.split("\n\n") if len(p.strip()) > 40]
    return [{"text": paragraphs[i % len(paragraphs)]} for i in range(count)]


def messages_rows(count: int) -> list[dict[str, Any]]:
    """Chat examples: the prompt/completion rows as a user turn and an assistant turn."""
    return [
        {
            "messages": [
                {"role": "user", "content": row["prompt"]},
                {"role": "assistant", "content": row["completion"]},
            ]
        }
        for row in prompt_completion_rows(count)
    ]


def write_data(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``rows`` as the file type ``path`` names: .jsonl, .json (an array), .csv, .parquet, or
    (no suffix) a folder written by ``Dataset.save_to_disk``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        from datasets import Dataset

        dataset = Dataset.from_list(rows)
        if suffix == ".csv":
            dataset.to_csv(str(path), index=False)
        elif suffix == ".parquet":
            dataset.to_parquet(str(path))
        elif suffix == "":
            dataset.save_to_disk(str(path))
        else:
            raise ValueError(f"no writer for {path}")
    return path


# --- a Trainer on the tiny model, for the callbacks ----------------------------------------

SEQ_LEN = 32


def tokenized(model_dir: Path, rows: list[dict[str, str]]) -> Any:
    """``text`` rows as fixed-length causal-LM examples (input_ids, attention_mask, labels), a
    ``datasets.Dataset`` a plain ``Trainer`` takes."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = tokenizer(
        [r["text"] for r in rows],
        max_length=SEQ_LEN,
        truncation=True,
        padding="max_length",
    )
    encoded["labels"] = [
        [tok if mask else -100 for tok, mask in zip(ids, masks, strict=True)]
        for ids, masks in zip(encoded["input_ids"], encoded["attention_mask"], strict=True)
    ]
    return Dataset.from_dict(dict(encoded))


def peft_model(model_dir: Path, r: int = 8, seed: int = 0) -> Any:
    """The model in ``model_dir`` with a LoRA adapter of rank ``r`` on every linear layer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear", lora_dropout=0.0)
    return get_peft_model(model, config)


def trainer(
    model_dir: Path,
    out: Path,
    callbacks: list[Any],
    *,
    model: Any = None,
    train_rows: list[dict[str, str]] | None = None,
    eval_rows: list[dict[str, str]] | None = None,
    trainer_class: Any = None,
    **args: Any,
) -> Any:
    """A Trainer that evaluates and logs every step unless ``args`` says otherwise."""
    from transformers import Trainer, TrainingArguments

    train_rows = train_rows or text_rows(16)
    eval_rows = eval_rows or text_rows(24)[16:]
    settings = {
        "output_dir": str(out),
        "max_steps": 10,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "learning_rate": 1e-3,
        "eval_strategy": "steps",
        "eval_steps": 1,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "seed": 0,
        "disable_tqdm": True,
        **args,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        training_args = TrainingArguments(**settings)
    return (trainer_class or Trainer)(
        model=model if model is not None else peft_model(model_dir),
        args=training_args,
        train_dataset=tokenized(model_dir, train_rows),
        eval_dataset=tokenized(model_dir, eval_rows),
        callbacks=callbacks,
    )


def trainable(model: Any) -> dict[str, Any]:
    """A CPU copy of the trainable parameters, by name."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}
