"""Published GPU-memory figures for LoRA / QLoRA fine-tuning, with their sources and setups.

Each row is used one way only. The two *calibration* rows are what the estimator's overhead
constants are fitted to (:func:`overhead_fit`); every other row is *judged*: the estimate must
land within TOLERANCE of it, on the right side of a bound, or (a setup the estimator does not
model) on the side its explanation predicts. A figure that set a constant is never evidence
that the constant is right.

Used by tests/test_memory.py and by benchmarks/memory_tables.py (the table in docs/memory.md,
with the judged error apart from the calibration error); it lies in benchmarks/calibration/ so
that both import it the same way, and the wheel does not carry it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from peftkit.memory.peak import Breakdown

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
    """'measured'; 'upper bound' or 'lower bound' (the source gives a maximum, "<48 GB", or a
    minimum, ">780 GB"); or 'rule of thumb'."""
    use: Literal["calibration", "judged"] = "judged"
    """'calibration': the overhead constants are fitted to this row (:func:`overhead_fit`), so
    it is no evidence for them; 'judged': compared with the estimate, nothing tuned to it."""
    miss: str = ""
    """Why the estimate cannot be expected within TOLERANCE: a setup the estimator does not
    model. Such a row is judged by ``predicted`` instead."""
    predicted: Literal["", "low", "high", "between"] = ""
    """For a miss, where its explanation puts the estimate: 'low' or 'high' against the figure,
    or 'between' (its error lies between those of the same model's rows at shorter and at
    longer sequences)."""
    floor_gb: float | None = None
    """For an upper bound: what the run cannot do with less (``floor_reason``), so that an
    estimate of 0 does not pass."""
    floor_reason: str = ""
    term: str = "total"
    """Which part of the estimate the figure is about."""
    extra: dict[str, Any] = field(default_factory=dict)


_GPTQ = (
    "Qwen's Q-LoRA rows use its GPTQ Int4 checkpoints (auto-gptq kernels and buffers), not "
    "bitsandbytes NF4, and Qwen-1's own modelling code computes the loss in bf16 without "
    "transformers' fp32 upcast: the estimate is low at 256 tokens (kernel buffers it does not "
    "model, a cost that does not grow with the sequence) and high at 8192 tokens (fp32 logits "
    "it assumes, a cost that does), and in between at 2048"
)


def _gptq_prediction(seq_len: int) -> Literal["low", "high", "between"]:
    """What :data:`_GPTQ` predicts for a Qwen Q-LoRA row of ``seq_len`` tokens."""
    return "low" if seq_len <= 256 else "high" if seq_len >= 8192 else "between"


_CALIBRATION: Literal["calibration"] = "calibration"
"""Qwen's LoRA measurements at 256 tokens: a fully specified bf16 LoRA run whose activations
and logits are a small share of the total (under a tenth), so that what the other terms leave
of the measured peak is the overhead. At longer sequences the remainder would also hold the
error of the activation and logit terms, which the judged rows are there to test."""

ROWS = [
    *(
        Row(
            f"Qwen-7B LoRA, {s} tokens",
            QWEN_7B,
            {**QWEN_SETUP, "method": "lora", "seq_len": s},
            gb,
            QWEN_README,
            use=_CALIBRATION if s == 256 else "judged",
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
            miss=_GPTQ,
            predicted=_gptq_prediction(s),
        )
        for s, gb in ((256, 11.5), (2048, 13.9), (8192, 23.5))
    ),
    Row(
        "Qwen-1.8B LoRA, 256 tokens",
        QWEN_1_8B,
        {**QWEN_SETUP, "method": "lora", "seq_len": 256},
        6.7,
        QWEN_README,
        use=_CALIBRATION,
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
        predicted=_gptq_prediction(256),
    ),
    Row(
        "Qwen-1.8B Q-LoRA, 8192 tokens",
        QWEN_1_8B,
        {**QWEN_SETUP, "method": "qlora", "seq_len": 8192},
        15.8,
        QWEN_README,
        miss=_GPTQ,
        predicted=_gptq_prediction(8192),
    ),
    Row(
        "Qwen-14B Q-LoRA, 256 tokens",
        QWEN_14B,
        {**QWEN_SETUP, "method": "qlora", "seq_len": 256},
        18.7,
        QWEN_README,
        miss=_GPTQ,
        predicted=_gptq_prediction(256),
    ),
    Row(
        "Qwen-14B Q-LoRA, 8192 tokens",
        QWEN_14B,
        {**QWEN_SETUP, "method": "qlora", "seq_len": 8192},
        27.9,
        QWEN_README,
        miss=_GPTQ,
        predicted=_gptq_prediction(8192),
    ),
    Row(
        "Qwen-72B Q-LoRA, 256 tokens",
        QWEN_72B,
        {**QWEN_SETUP, "method": "qlora", "seq_len": 256},
        61.4,
        QWEN_README,
        miss=_GPTQ,
        predicted=_gptq_prediction(256),
    ),
    Row(
        "Qwen-72B Q-LoRA, 8192 tokens",
        QWEN_72B,
        {**QWEN_SETUP, "method": "qlora", "seq_len": 8192},
        75.6,
        QWEN_README,
        miss=_GPTQ,
        predicted=_gptq_prediction(8192),
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
        kind="lower bound",  # the paper: "from >780GB of GPU memory to <48GB"
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
        floor_gb=32.6,
        floor_reason="its 4-bit weights alone: 65.3e9 parameters x 4 bits",
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


def _breakdown(row: Row) -> Breakdown:
    from peftkit.memory.peak import Setup, estimate
    from peftkit.memory.shapes import shape_of

    setup = dict(row.setup)
    if setup.get("method") == "qlora":
        setup.setdefault("bits", 4)
    return estimate(shape_of(row.config), Setup(**setup))


def estimated_gb(row: Row) -> float:
    """The estimator's figure for the part of the run the row is about, in GB."""
    breakdown = _breakdown(row)
    if row.term == "total":
        return breakdown.total / 1e9
    return sum(getattr(breakdown, part) for part in row.term.split("+")) / 1e9


def error(row: Row) -> float:
    """(estimate - published) / published."""
    return (estimated_gb(row) - row.published_gb) / row.published_gb


def overhead_fit(rows: list[Row]) -> tuple[float, float]:
    """``(context_gb, slack)`` of ``overhead = context + slack * rest`` fitted to ``rows``.

    ``rest`` is the estimate without its overhead term; the fit minimises the squared relative
    error of the whole estimate (TOLERANCE is relative too), with both constants >= 0 (memory
    is not negative): where the best unconstrained fit has a negative constant, that constant is
    0 and the other is refitted alone. This is how CONTEXT_BYTES and SLACK in
    :mod:`peftkit.memory.peak` were set, from the calibration rows.
    """
    if not rows or any(row.term != "total" for row in rows):
        raise ValueError("the overhead is fitted to total peak memory figures only")
    # Relative residual of row i: context * a_i + slack * b_i - t_i.
    a, b, t = [], [], []
    for row in rows:
        breakdown = _breakdown(row)
        rest = (breakdown.total - breakdown.overhead) / 1e9
        a.append(1 / row.published_gb)
        b.append(rest / row.published_gb)
        t.append((row.published_gb - rest) / row.published_gb)
    aa = sum(x * x for x in a)
    bb = sum(x * x for x in b)
    ab = sum(x * y for x, y in zip(a, b, strict=True))
    at = sum(x * y for x, y in zip(a, t, strict=True))
    bt = sum(x * y for x, y in zip(b, t, strict=True))

    def cost(fit: tuple[float, float]) -> float:
        context, slack = fit
        return sum((context * x + slack * y - z) ** 2 for x, y, z in zip(a, b, t, strict=True))

    candidates = [(max(at / aa, 0.0), 0.0), (0.0, max(bt / bb, 0.0))]
    determinant = aa * bb - ab * ab
    if determinant > 1e-12 * aa * bb:
        both = ((at * bb - bt * ab) / determinant, (bt * aa - at * ab) / determinant)
        if min(both) >= 0:
            candidates.append(both)
    return min(candidates, key=cost)


def calibration_rows() -> list[Row]:
    """The rows the overhead constants are fitted to: no evidence for them."""
    return [row for row in ROWS if row.use == "calibration"]


def judged_rows() -> list[Row]:
    """The rows that judge the estimator: nothing in it was tuned to them."""
    return [row for row in ROWS if row.use == "judged"]


def agrees(row: Row) -> bool:
    """Whether the estimate passes the row's own test (see :class:`Row`)."""
    estimate = estimated_gb(row)
    if row.kind == "upper bound":
        return (row.floor_gb or 0.0) <= estimate <= row.published_gb
    if row.kind == "lower bound":
        return row.published_gb <= estimate <= row.published_gb * (1 + TOLERANCE)
    if row.miss:
        return as_predicted(row)
    return abs(error(row)) <= TOLERANCE


def as_predicted(row: Row) -> bool:
    """Whether a miss errs the way its explanation says (``Row.predicted``)."""
    if row.predicted == "low":
        return error(row) < 0
    if row.predicted == "high":
        return error(row) > 0
    if row.predicted == "between":
        seq_len = row.setup["seq_len"]
        same = [
            other
            for other in ROWS
            if other.miss == row.miss and other.config == row.config and other is not row
        ]
        shorter = [error(o) for o in same if o.setup["seq_len"] < seq_len]
        longer = [error(o) for o in same if o.setup["seq_len"] > seq_len]
        return bool(shorter and longer) and max(shorter) < error(row) < min(longer)
    return False
