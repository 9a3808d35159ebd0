"""Shared fixtures: a tiny Llama model and a trained BPE tokenizer, built offline in seconds.

There is no model hub here, and tests must not need one: the tokenizer is trained on text that
ships with Python (module docstrings) and the model has random weights. Both are written to disk
once per test session, so every test loads them the way a user loads a real checkpoint.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the tiny model and its tokenizer, built once per test session."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


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
