"""Published GPU-memory figures for LoRA / QLoRA fine-tuning, with their sources and setups.

Used by tests/test_memory.py (the estimator must land within TOLERANCE of each figure, or be a
listed, explained miss) and by benchmarks/memory_tables.py (the table in docs/memory.md); it is
part of the package so that both import it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TOLERANCE = 0.25
"""Setups are not all fully specified; within +-25% counts as agreement."""

QWEN_README = "QwenLM/Qwen README, 'Profiling of Memory and Speed' (A100-80G, batch 1)"
QLORA_PAPER = "Dettmers et al. 2023, QLoRA (arXiv 2305.14314)"
LLAMA_FACTORY = "LLaMA-Factory README 'Hardware Requirement' (marked estimated)"


def qwen1(hidden: int, layers: int, mlp: int, vocab: int, heads: int) -> dict[str, Any]:
    """Qwen-1 shapes as a Qwen2 config: same widths, qkv bias, untied embeddings."""
    return {
        "model_type": "qwen2",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "intermediate_size": mlp,
        "vocab_size": vocab,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }


def llama(hidden: int, layers: int, mlp: int, heads: int, kv_heads: int | None = None) -> dict:
    return {
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "intermediate_size": mlp,
        "vocab_size": 32000,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads or heads,
        "torch_dtype": "bfloat16",
    }


QWEN_7B = qwen1(4096, 32, 11008, 151936, 32)
QWEN_1_8B = qwen1(2048, 24, 5504, 151936, 16)
QWEN_14B = qwen1(5120, 40, 13696, 152064, 40)
QWEN_72B = qwen1(8192, 80, 24576, 152064, 64)
LLAMA_7B = llama(4096, 32, 11008, 32)
LLAMA_65B = llama(8192, 80, 22016, 64)
LLAMA2_70B = llama(8192, 80, 28672, 64, kv_heads=8)

# Qwen's finetune.py: LoRA r=64 on every linear layer, gradient checkpointing, AdamW.
QWEN_SETUP = {"r": 64, "activation_checkpointing": True, "batch_size": 1}


@dataclass(frozen=True)
class Row:
    """One published figure, the setup we estimate it with, and what we know of the rest."""

    label: str
    config: dict[str, Any]
    setup: dict[str, Any]
    published_gb: float
    source: str
    kind: str = "measured"
    """'measured', 'upper bound' (the figure is a published maximum), or 'rule of thumb'."""
    miss: str = ""
    """Why the estimate is outside TOLERANCE, for the rows where it is."""
    term: str = "total"
    """Which part of the estimate the figure is about."""
    extra: dict[str, Any] = field(default_factory=dict)


_GPTQ = (
    "Qwen's Q-LoRA rows use its GPTQ Int4 checkpoints (auto-gptq kernels and buffers), not "
    "bitsandbytes NF4, and Qwen-1's own modelling code computes the loss in bf16 without "
    "transformers' fp32 upcast: the estimate is low at 256 tokens (kernel buffers it does not "
    "model) and high at 8192 tokens (fp32 logits it assumes)"
)

ROWS = [
    *(
        Row(
            f"Qwen-7B LoRA, {s} tokens",
            QWEN_7B,
            {**QWEN_SETUP, "method": "lora", "seq_len": s},
            gb,
            QWEN_README,
        )
        for s, gb in ((256, 20.1), (2048, 23.8), (8192, 36.6))
    ),
    *(
        Row(
            f"Qwen-7B Q-LoRA, {s} tokens",
            QWEN_7B,
            {**QWEN_SETUP, "method": "qlora", "seq_len": s},
            gb,
            QWEN_README,
            miss=_GPTQ if s == 256 else "",
        )
        for s, gb in ((256, 11.5), (2048, 13.9), (8192, 23.5))
    ),
    Row(
        "Qwen-1.8B LoRA, 256 tokens",
        QWEN_1_8B,
        {**QWEN_SETUP, "method": "lora", "seq_len": 256},
        6.7,
        QWEN_README,
    ),
    Row(
        "Qwen-1.8B LoRA, 8192 tokens",
        QWEN_1_8B,
        {**QWEN_SETUP, "method": "lora", "seq_len": 8192},
        21.8,
        QWEN_README,
    ),
    Row(
        "Qwen-1.8B Q-LoRA, 256 tokens",
        QWEN_1_8B,
        {**QWEN_SETUP, "method": "qlora", "seq_len": 256},
        5.8,
        QWEN_README,
        miss=_GPTQ,
    ),
    Row(
        "Qwen-1.8B Q-LoRA, 8192 tokens",
        QWEN_1_8B,
        {**QWEN_SETUP, "method": "qlora", "seq_len": 8192},
        15.8,
        QWEN_README,
        miss=_GPTQ,
    ),
    Row(
        "Qwen-14B Q-LoRA, 256 tokens",
        QWEN_14B,
        {**QWEN_SETUP, "method": "qlora", "seq_len": 256},
        18.7,
        QWEN_README,
        miss=_GPTQ,
    ),
    Row(
        "Qwen-14B Q-LoRA, 8192 tokens",
        QWEN_14B,
        {**QWEN_SETUP, "method": "qlora", "seq_len": 8192},
        27.9,
        QWEN_README,
        miss=_GPTQ,
    ),
    Row(
        "Qwen-72B Q-LoRA, 256 tokens",
        QWEN_72B,
        {**QWEN_SETUP, "method": "qlora", "seq_len": 256},
        61.4,
        QWEN_README,
    ),
    Row(
        "Qwen-72B Q-LoRA, 8192 tokens",
        QWEN_72B,
        {**QWEN_SETUP, "method": "qlora", "seq_len": 8192},
        75.6,
        QWEN_README,
    ),
    Row(
        "LLaMA-7B 4-bit NF4 base model",
        LLAMA_7B,
        {"method": "qlora"},
        5.048,
        QLORA_PAPER,
        term="weights+quantization_constants",
    ),
    Row(
        "LLaMA-65B full fine-tuning in 16-bit (weights, grads, Adam)",
        LLAMA_65B,
        {"method": "full", "optimizer": "paged_adamw_32bit"},
        780,
        QLORA_PAPER,
        term="trainable+gradients+optimizer",
    ),
    Row(
        "LLaMA-65B QLoRA on one GPU",
        LLAMA_65B,
        {
            "method": "qlora",
            "r": 64,
            "seq_len": 512,
            "activation_checkpointing": True,
            "optimizer": "paged_adamw_32bit",
        },
        48,
        QLORA_PAPER,
        kind="upper bound",
    ),
    Row(
        "7B LoRA",
        LLAMA_7B,
        {"method": "lora", "r": 8, "seq_len": 512, "activation_checkpointing": True},
        16,
        LLAMA_FACTORY,
        kind="rule of thumb",
    ),
    Row(
        "7B QLoRA 4-bit",
        LLAMA_7B,
        {"method": "qlora", "r": 8, "seq_len": 512, "activation_checkpointing": True},
        6,
        LLAMA_FACTORY,
        kind="rule of thumb",
    ),
    Row(
        "70B LoRA",
        LLAMA2_70B,
        {"method": "lora", "r": 8, "seq_len": 512, "activation_checkpointing": True},
        160,
        LLAMA_FACTORY,
        kind="rule of thumb",
    ),
    Row(
        "70B QLoRA 4-bit",
        LLAMA2_70B,
        {"method": "qlora", "r": 8, "seq_len": 512, "activation_checkpointing": True},
        48,
        LLAMA_FACTORY,
        kind="rule of thumb",
    ),
]

NOT_COMPARED = {
    "PEFT README, bigscience/T0_3B and mt0-xxl": "encoder-decoder (T5) models; peftkit sizes "
    "causal LMs only",
    "PEFT README, bloomz-7b1 LoRA 32 GB": "batch size, sequence length and targets of that run "
    "are not published",
    "QLoRA paper, LoRA input gradients 567 MB / 18 MB per sequence": "the sequence length of "
    "that measurement is not given",
}


def estimated_gb(row: Row) -> float:
    """The estimator's figure for the part of the run the row is about, in GB."""
    from peftkit.memory import Setup, estimate, shape_of

    setup = dict(row.setup)
    if setup.get("method") == "qlora":
        setup.setdefault("bits", 4)
    breakdown = estimate(shape_of(row.config), Setup(**setup))
    if row.term == "total":
        return breakdown.total / 1e9
    return sum(getattr(breakdown, part) for part in row.term.split("+")) / 1e9
