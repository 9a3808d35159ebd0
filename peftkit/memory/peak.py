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
  (Dettmers et al. 2022) plus an fp32 absmax per 256 values, and fp32 states for a tensor of
  fewer than 4,096 values (bitsandbytes' ``min_8bit_size``); Adafactor's factored states and
  plain SGD are counted as 0.
- ``activations``: the tensors autograd saves for the backward pass, per token and layer
  (:func:`layer_bytes`): each norm's input in fp32 and one fp32 statistic (RMSNorm upcasts; so
  does autocast's LayerNorm), the rotated q and k, v, the attention output and SDPA's fp32
  logsumexp per head (flash/SDPA attention: no s^2 term), the gated MLP's three i-wide tensors
  (one for a plain MLP), and what the linear layers keep of their input: nothing when frozen,
  the distinct inputs when trained, and per LoRA layer lora_A's input and its r-wide output:
  the layer's own dropout output and 1-byte mask with dropout, autocast's 16-bit copy when the
  adapters are fp32 and the activations 16-bit, else the shared input. With activation
  checkpointing only each layer's input is kept, plus one layer recomputed at a time. Measured
  tensor by tensor in tests/test_memory_terms.py (:mod:`calibration.terms`).
- ``logits``: s*b*V*12 bytes, the peak of the loss's backward pass: the fp32 log-softmax saved
  by the forward, the fp32 gradient of the loss and the fp32 gradient of the log-softmax
  (transformers upcasts logits to fp32 for the loss; the 16-bit logits are freed with the
  model's output, which the Trainer does not keep).
  With a fused loss (TRL 1.15 and newer compute SFT's loss through a tiled LM head; Liger's
  fused linear cross-entropy on older TRL) no full logits tensor exists: the peak is one tile
  of at most 4,096 tokens x 32,768 vocabulary entries in fp32 (TRL's ``TOKEN_CHUNK_SIZE`` and
  ``_CHUNKED_LOGPROB_CHUNK_SIZE``) plus the fp32 gradient of the hidden states, an upper bound
  read from TRL's code, not measured here.
- ``overhead``: CUDA context and allocator slack, CONTEXT_BYTES + SLACK x the rest, fitted
  to the two *calibration* rows of :mod:`calibration.published` (Qwen's LoRA peaks at 256
  tokens, where the other terms leave little but the overhead): 1.5 GB, and no slack that grows
  with the rest. tests/test_memory.py refits them; only the other (judged) rows test them.

FSDP shards weights, trainable parameters, gradients and optimizer states across the GPUs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

from peftkit.memory.optimizers import OPTIMIZERS
from peftkit.memory.shapes import Linear, ModelShape

GB = 1e9
BLOCK = 64
"""Weights per 4-bit quantization block (bitsandbytes' default)."""
NESTED_BLOCK = 256
TABLES_PER_TENSOR = 16 * 4 + 256 * 4 + 4
"""NF4 code (16 fp32), nested code (256 fp32) and offset, per quantized tensor."""
LOGIT_BYTES = 12
FUSED_TILE_TOKENS = 4096
FUSED_TILE_VOCAB = 32768
CONTEXT_BYTES = 1.5 * GB
"""Fitted: ``published.overhead_fit(published.calibration_rows())`` is 1.53 GB, rounded to 0.1."""
SLACK = 0.0
"""Fitted with CONTEXT_BYTES; the fit is 0 (it would be negative without the bound at 0)."""

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
EIGHT_BIT_BLOCK = 256
"""Values per fp32 absmax of bitsandbytes' blockwise 8-bit optimizer states."""
MIN_8BIT_SIZE = 4096
"""bitsandbytes keeps 32-bit states for a tensor with fewer values (``min_8bit_size``)."""

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
    fused_loss: bool = False
    """The loss never holds the full logits (TRL >= 1.15's tiled LM head, or Liger's)."""


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


def _distinct_inputs(linears: list[Linear]) -> int:
    """Width of the tensors ``linears`` read, each once, without the attention's output (the
    attention keeps that one already)."""
    widths = {linear.reads or id(linear): linear.in_features for linear in linears}
    return sum(width for key, width in widths.items() if key != "attention")


def _adapter_inputs(linears: list[Linear], setup: Setup, adapter_bytes: int) -> float:
    """Bytes per token LoRA keeps for ``linears``: lora_A's input and output. With dropout, each
    layer's own dropout output and its 1-byte mask; without it, autocast's own 16-bit copy for
    each layer when the adapters are fp32 and the activations 16-bit; else the input itself,
    shared."""
    a = setup.activation_bytes
    lora_a_outputs = a * setup.r * len(linears)
    if setup.lora_dropout > 0:
        return (a + 1) * sum(linear.in_features for linear in linears) + lora_a_outputs
    if adapter_bytes != a:
        return a * sum(linear.in_features for linear in linears) + lora_a_outputs
    return a * _distinct_inputs(linears) + lora_a_outputs


def _norm_bytes(shape: ModelShape, setup: Setup) -> float:
    """Bytes per token a norm keeps: its input in fp32 (RMSNorm and autocast's LayerNorm upcast
    it) and one fp32 statistic, plus the normalised input when its weight trains."""
    trained = setup.activation_bytes * shape.hidden if setup.method == "full" else 0
    return 4 * shape.hidden + 4 + trained


def layer_bytes(shape: ModelShape, setup: Setup) -> float:
    """Bytes per token one decoder layer keeps for its backward pass (measured term by term in
    tests/test_memory_terms.py): its norms', the rotated q and k, v, the attention output and
    SDPA's logsumexp, the MLP's activation input and output and up projection (gated) or its
    activation input, and what trained or adapted linear layers keep of their input (a frozen
    linear keeps none)."""
    a = setup.activation_bytes
    norms = len({linear.reads for linear in shape.linears if linear.reads.startswith("norm")})
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    kept = norms * _norm_bytes(shape, setup) + a * 2 * (q + kv) + 4 * shape.heads
    kept += a * (3 if shape.gated_mlp else 1) * shape.intermediate
    if setup.method == "full":
        return kept + a * _distinct_inputs(list(shape.linears))
    targeted = {linear.name for linear in shape.targets(setup.targets)}
    adapted = [linear for linear in shape.linears if linear.name in targeted]
    return kept + _adapter_inputs(adapted, setup, _param_bytes(setup))


def _first_masks(shape: ModelShape, setup: Setup) -> int:
    """Dropout masks the first layer does not keep: those on its first norm's output, which
    needs no gradient (the embedding is frozen), so dropout saves no mask for it."""
    targeted = {linear.name for linear in shape.targets(setup.targets)}
    first = [x for x in shape.linears if x.name in targeted and x.reads == "norm1"]
    return sum(linear.in_features for linear in first)


def activation_bytes(shape: ModelShape, setup: Setup) -> float:
    """Saved activations for one micro-batch, in bytes: every layer's, or with activation
    checkpointing every layer's input and one layer recomputed. Outside the layers: the final
    norm (with LoRA it stands in for the first layer's first norm, which keeps nothing as its
    input needs no gradient, nor do the dropout masks on that norm's output), and when the
    embedding trains the token ids (8 bytes)."""
    tokens = setup.batch_size * setup.seq_len
    per_layer = layer_bytes(shape, setup)
    if setup.method == "full":
        outside = 8 + (0 if setup.activation_checkpointing else _norm_bytes(shape, setup))
    else:
        outer = [x for x in shape.targets(setup.targets) if x in shape.outer_linears]
        outside = _adapter_inputs(outer, setup, _param_bytes(setup)) if outer else 0.0
        if setup.lora_dropout > 0 and not setup.activation_checkpointing:
            outside -= _first_masks(shape, setup)
    if setup.activation_checkpointing:
        kept = shape.layers * shape.hidden * setup.activation_bytes
        return tokens * (kept + per_layer + outside)
    return tokens * (shape.layers * per_layer + outside)


def _param_bytes(setup: Setup) -> int:
    """Bytes of a trainable parameter: fp32 LoRA (peft), bf16 on a quantized base (TRL)."""
    if setup.method == "full":
        return DTYPE_BYTES[setup.weights_dtype]
    return 2 if setup.method == "qlora" else 4


def _trainable_tensors(shape: ModelShape, setup: Setup) -> list[int]:
    """Sizes of the LoRA tensors (A, B and DoRA's magnitude per adapted layer)."""
    sizes = []
    for linear in shape.targets(setup.targets):
        sizes += [setup.r * linear.in_features, setup.r * linear.out_features]
        sizes += [linear.out_features] if setup.use_dora else []
    return sizes


def optimizer_bytes(shape: ModelShape, setup: Setup, trainable_params: int) -> float:
    """Optimizer states. bitsandbytes' 8-bit AdamW keeps two 1-byte states and an fp32 absmax
    per 256 values for a tensor of at least 4,096 values, and two fp32 states for a smaller one
    (its ``min_8bit_size``), which LoRA's B of a narrow k/v projection can be."""
    facts = OPTIMIZERS.get(setup.optimizer)
    if facts is None or facts.state_bytes is None:
        return trainable_params * 2 * _param_bytes(setup)
    if not facts.eight_bit or setup.method == "full":
        return trainable_params * facts.state_bytes
    return sum(
        2 * n + 8 * math.ceil(n / EIGHT_BIT_BLOCK) if n >= MIN_8BIT_SIZE else 8 * n
        for n in _trainable_tensors(shape, setup)
    )


def logits_bytes(shape: ModelShape, setup: Setup) -> int:
    """The loss's peak: the full logits' three fp32 copies, or with a fused loss one tile and
    the fp32 gradient of the hidden states."""
    tokens = setup.batch_size * setup.seq_len
    if not setup.fused_loss:
        return tokens * shape.vocab * LOGIT_BYTES
    tile = min(tokens, FUSED_TILE_TOKENS) * min(shape.vocab, FUSED_TILE_VOCAB)
    return (tile + tokens * shape.hidden) * 4


def estimate(shape: ModelShape, setup: Setup) -> Breakdown:
    """The peak-memory breakdown of one GPU for ``setup`` on a model of ``shape``."""
    weight_bytes = DTYPE_BYTES[setup.weights_dtype]
    total = shape.total_params
    if setup.method == "full":
        trainable_params, frozen, constants = total, 0.0, 0.0
    else:
        trainable_params = lora_params(shape, setup)
        packed, constants = quantized_bytes(shape, setup)
        quantized = sum(linear.weights for linear in shape.all_linears)
        unquantized = total - (quantized if setup.bits else 0)
        frozen = packed + unquantized * weight_bytes
    shard = setup.gpus if setup.sharded else 1
    trainable = trainable_params * _param_bytes(setup) / shard
    subtotal = {
        "weights": frozen / shard,
        "quantization_constants": constants / shard,
        "trainable": trainable,
        "gradients": trainable,
        "optimizer": optimizer_bytes(shape, setup, trainable_params) / shard,
        "activations": activation_bytes(shape, setup),
        "logits": logits_bytes(shape, setup),
    }
    overhead = CONTEXT_BYTES + SLACK * sum(subtotal.values())
    return Breakdown(
        **subtotal, overhead=overhead, trainable_params=trainable_params, total_params=total
    )
