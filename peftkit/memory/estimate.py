"""Peak GPU memory of a training run, from the model's shapes and the run's settings.

One formula, every term documented with its source (bytes per GPU; s = sequence length,
b = micro-batch, L = layers, h = hidden size, V = vocabulary):

- ``weights``: frozen weights. 16-bit: 2 bytes/param (4 in fp32). 4-bit NF4: the linear layers
  of the decoder at 0.5 byte/param, everything else (embeddings, norms, output head) in the
  model dtype, as bitsandbytes stores them (Dettmers et al. 2023, QLoRA, sec. 2-3). 8-bit:
  1 byte/param for the linear layers (LLM.int8).
- ``quantization_constants``: 4-bit absmax per 64-weight block: fp32 (4 bytes), or with double
  quantization 1 byte plus an fp32 per 256 blocks (0.127 bit/param, QLoRA sec. 3), plus the code
  tables per tensor (1,092 bytes, measured on bitsandbytes 0.50). 8-bit: an fp32 scale per row.
- ``trainable``: LoRA adds r*(in+out) per targeted linear layer (+out for DoRA's magnitude).
  peft keeps adapters in fp32 (4 bytes); TRL's SFTTrainer casts them to bf16 on a quantized base
  (2 bytes). Full fine-tuning trains every weight in the model dtype.
- ``gradients``: one per trainable parameter, in its dtype.
- ``optimizer``: AdamW keeps two states per trainable parameter in the parameter's dtype
  (torch), always fp32 for bitsandbytes' 32-bit/paged variants, 1 byte each for 8-bit AdamW
  (Dettmers et al. 2022); Adafactor's factored states and plain SGD are counted as 0.
- ``activations``: tensors saved for the backward pass per token and layer, in the activation
  dtype: the residual input and normed input of attention and MLP, q, k, v (and their rotary
  copies), the attention output, and the MLP's intermediate tensors (4 of width i for a gated
  MLP, 2 for a plain one), plus the dropout output of each LoRA input when lora dropout > 0.
  This is Korthikanti et al. 2022 (eq. 1) for SDPA/flash attention (no s^2 term) and today's
  MLP shapes. With activation checkpointing only each layer's input is kept, plus one layer
  recomputed at a time.
- ``logits``: s*b*V*12 bytes: the 16-bit logits, their fp32 log-softmax, and the fp32 gradient
  of the loss (transformers upcasts logits to fp32 for the loss).
- ``overhead``: CUDA context and allocator slack, 0.5 GB + 5% of the rest (an assumption
  checked against the published measurements in the tests).

FSDP shards weights, trainable parameters, gradients and optimizer states across the GPUs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

from peftkit.memory.shapes import ModelShape

GB = 1e9
BLOCK = 64
"""Weights per 4-bit quantization block (bitsandbytes' default)."""
NESTED_BLOCK = 256
TABLES_PER_TENSOR = 16 * 4 + 256 * 4 + 4
"""NF4 code (16 fp32), nested code (256 fp32) and offset, per quantized tensor."""
LOGIT_BYTES = 12
CONTEXT_BYTES = 0.5 * GB
SLACK = 0.05

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
OPTIMIZER_STATE_BYTES = {
    "adamw_torch": None,  # two states in the parameter's dtype
    "adamw_torch_fused": None,
    "paged_adamw_32bit": 8,
    "adamw_8bit": 2,
    "paged_adamw_8bit": 2,
    "adafactor": 0,
    "sgd": 0,
}

Method = Literal["full", "lora", "qlora"]


@dataclass(frozen=True)
class Setup:
    """The run settings that decide memory (a recipe gives them; so does `peftkit estimate`)."""

    method: Method = "lora"
    bits: Literal[4, 8] | None = None
    double_quant: bool = True
    r: int = 16
    targets: str | tuple[str, ...] = "all-linear"
    use_dora: bool = False
    lora_dropout: float = 0.05
    batch_size: int = 1
    seq_len: int = 1024
    activation_checkpointing: bool = False
    optimizer: str = "adamw_torch"
    weights_dtype: str = "bfloat16"
    activation_bytes: int = 2
    gpus: int = 1
    sharded: bool = False


@dataclass(frozen=True)
class Breakdown:
    """Peak memory per GPU, by term, in bytes."""

    weights: float
    quantization_constants: float
    trainable: float
    gradients: float
    optimizer: float
    activations: float
    logits: float
    overhead: float
    trainable_params: int
    total_params: int

    @property
    def total(self) -> float:
        return (
            self.weights
            + self.quantization_constants
            + self.trainable
            + self.gradients
            + self.optimizer
            + self.activations
            + self.logits
            + self.overhead
        )

    def as_gb(self) -> dict[str, float]:
        """Every term in GB (10^9 bytes), plus ``total_gb`` and the parameter counts."""
        terms = {k: v for k, v in asdict(self).items() if not k.endswith("_params")}
        result: dict[str, float] = {f"{k}_gb": round(v / GB, 3) for k, v in terms.items()}
        result["total_gb"] = round(self.total / GB, 3)
        result["trainable_params"] = self.trainable_params
        result["total_params"] = self.total_params
        return result


def auto_dtype(checkpoint_dtype: str) -> str:
    """The dtype loading with ``dtype="auto"`` gives: the checkpoint's own, or float32 (what
    transformers falls back to) when the config names none the estimate knows."""
    return checkpoint_dtype if checkpoint_dtype in DTYPE_BYTES else "float32"


def lora_params(shape: ModelShape, setup: Setup) -> int:
    """Trainable LoRA (and DoRA) parameters, as peft counts them."""
    return sum(
        setup.r * (linear.in_features + linear.out_features)
        + (linear.out_features if setup.use_dora else 0)
        for linear in shape.targets(setup.targets)
    )


def quantized_bytes(shape: ModelShape, setup: Setup) -> tuple[int, int]:
    """(packed weights, constants) of the quantized linear layers, in bytes."""
    tensors = [linear.weights for linear in shape.all_linears]
    if setup.bits == 4:
        packed = sum(math.ceil(n / 2) for n in tensors)
        constants = 0
        for n in tensors:
            blocks = math.ceil(n / BLOCK)
            if setup.double_quant:
                constants += blocks + 4 * math.ceil(blocks / NESTED_BLOCK) + TABLES_PER_TENSOR
            else:
                constants += 4 * blocks + 16 * 4
        return packed, constants
    if setup.bits == 8:
        rows = sum(linear.out_features for linear in shape.all_linears)
        return sum(tensors), 4 * rows
    return 0, 0


def activation_bytes(shape: ModelShape, setup: Setup) -> float:
    """Saved activations for one micro-batch, in bytes."""
    h, i = shape.hidden, shape.intermediate
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    attention = 2 * h + 2 * (q + 2 * kv) - kv + q  # inputs, q/k/v, rotary q/k, output
    mlp = 2 * h + (4 * i if shape.gated_mlp else 2 * i)
    per_token = (attention + mlp) * setup.activation_bytes + 4 * shape.heads  # + SDPA logsumexp
    if setup.method != "full" and setup.lora_dropout > 0:
        inputs = sum(linear.in_features for linear in shape.targets(setup.targets)) // shape.layers
        per_token += inputs * (setup.activation_bytes + 1)  # dropout output and its mask
    tokens = setup.batch_size * setup.seq_len
    if setup.activation_checkpointing:
        return tokens * (shape.layers * h * setup.activation_bytes + per_token)
    return tokens * shape.layers * per_token


def estimate(shape: ModelShape, setup: Setup) -> Breakdown:
    """The peak-memory breakdown of one GPU for ``setup`` on a model of ``shape``."""
    weight_bytes = DTYPE_BYTES[setup.weights_dtype]
    total = shape.total_params
    if setup.method == "full":
        trainable_params, frozen, constants = total, 0.0, 0.0
        param_bytes = weight_bytes
    else:
        trainable_params = lora_params(shape, setup)
        packed, constants = quantized_bytes(shape, setup)
        quantized = sum(linear.weights for linear in shape.all_linears)
        unquantized = total - (quantized if setup.bits else 0)
        frozen = packed + unquantized * weight_bytes
        param_bytes = 2 if setup.method == "qlora" else 4
    state_bytes = OPTIMIZER_STATE_BYTES.get(setup.optimizer)
    states = 2 * param_bytes if state_bytes is None else state_bytes
    shard = setup.gpus if setup.sharded else 1
    trainable = trainable_params * param_bytes / shard
    subtotal = {
        "weights": frozen / shard,
        "quantization_constants": constants / shard,
        "trainable": trainable,
        "gradients": trainable,
        "optimizer": trainable_params * states / shard,
        "activations": activation_bytes(shape, setup),
        "logits": setup.batch_size * setup.seq_len * shape.vocab * LOGIT_BYTES,
    }
    overhead = CONTEXT_BYTES + SLACK * sum(subtotal.values())
    return Breakdown(
        **subtotal, overhead=overhead, trainable_params=trainable_params, total_params=total
    )
