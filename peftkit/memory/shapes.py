"""A model's parameter shapes, read from its ``config.json`` alone (no torch, no weights).

Every term of the memory estimate starts from these shapes: which linear layers a decoder layer
has (what LoRA attaches to and what bitsandbytes quantizes), the embeddings and norms (which stay
in 16/32-bit), and the attention and MLP widths (which size the activations). Families covered:
Llama, Mistral, Qwen2/Qwen3, Gemma/Gemma2, Phi-3 (fused projections), Phi (1/1.5/2), GPT-2,
GPT-BigCode, OPT and BLOOM.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftkit.errors import RecipeError


@dataclass(frozen=True)
class Linear:
    """One linear layer of a decoder layer (LoRA targets it; 4-bit quantization packs it)."""

    name: str
    in_features: int
    out_features: int
    bias: bool

    @property
    def weights(self) -> int:
        return self.in_features * self.out_features

    @property
    def params(self) -> int:
        return self.weights + (self.out_features if self.bias else 0)


@dataclass(frozen=True)
class ModelShape:
    """What the estimator needs to know about a causal LM, derived from its config."""

    family: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    gated_mlp: bool
    linears: tuple[Linear, ...]
    """The linear layers of one decoder layer."""
    layer_other_params: int
    """Norm weights/biases in one decoder layer."""
    outer_params: int
    """Embeddings, position embeddings and final norm outside the layers."""
    outer_linears: tuple[Linear, ...]
    """Linear layers outside the decoder layers (OPT's embedding projections)."""
    lm_head_params: int
    """0 when the output head is tied to the input embedding."""
    checkpoint_dtype: str
    """The dtype the checkpoint is stored in ('auto' loading keeps it)."""

    @property
    def all_linears(self) -> list[Linear]:
        """Every linear layer but the output head, each decoder layer's repeated."""
        return [*(list(self.linears) * self.layers), *self.outer_linears]

    @property
    def total_params(self) -> int:
        per_layer = sum(linear.params for linear in self.linears) + self.layer_other_params
        outer = self.outer_params + sum(linear.params for linear in self.outer_linears)
        return self.layers * per_layer + outer + self.lm_head_params

    def targets(self, target_modules: str | tuple[str, ...] | list[str]) -> list[Linear]:
        """Every linear layer (of the whole model) that LoRA with these targets attaches to."""
        if target_modules == "all-linear":
            return self.all_linears
        wanted = set(target_modules)
        return [linear for linear in self.all_linears if linear.name in wanted]


_LLAMA_LIKE = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "smollm3"}
_FAMILIES = sorted(_LLAMA_LIKE | {"phi", "gpt2", "gpt_bigcode", "opt", "bloom"})
_TIED_BY_DEFAULT = {"gemma", "gemma2", "gpt2", "gpt_bigcode", "opt", "bloom"}


def shape_of(config: dict[str, Any]) -> ModelShape:
    """The shape of a causal LM from its config mapping."""
    family = config.get("model_type")
    if family not in _FAMILIES:
        raise RecipeError(
            f"model_type {family!r} is not one peftkit can size from its config; supported: "
            f"{', '.join(_FAMILIES)}. Fix: pass the config of a supported architecture."
        )
    get = _getter(config)
    hidden = get("hidden_size", "n_embd", "d_model")
    layers = get("num_hidden_layers", "n_layer")
    heads = get("num_attention_heads", "n_head")
    kv_heads = config.get("num_key_value_heads") or heads
    if family == "gpt_bigcode" and config.get("multi_query", True):
        kv_heads = 1
    head_dim = config.get("head_dim") or hidden // heads
    intermediate = (
        config.get("intermediate_size") or config.get("n_inner") or config.get("ffn_dim")
    ) or 4 * hidden
    vocab = get("vocab_size")
    tied = config.get("tie_word_embeddings", family in _TIED_BY_DEFAULT)
    positions = (
        config.get("max_position_embeddings")
        or config.get("n_positions")
        or config.get("seq_length")
        or 2048
    )
    q, kv = heads * head_dim, kv_heads * head_dim
    builder = _llama_like if family in _LLAMA_LIKE else _BUILDERS[family]
    linears, other, outer, *outer_linears = builder(
        config, family, hidden, q, kv, intermediate, vocab, positions
    )
    gated = family in _LLAMA_LIKE
    lm_head = 0 if tied else vocab * (config.get("word_embed_proj_dim") or hidden)
    if family == "phi" and not tied:
        lm_head += vocab  # Phi's output head has a bias
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    return ModelShape(
        family=family,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=intermediate,
        vocab=vocab,
        gated_mlp=gated,
        linears=tuple(linears),
        layer_other_params=other,
        outer_params=outer,
        outer_linears=tuple(outer_linears),
        lm_head_params=lm_head,
        checkpoint_dtype=dtype,
    )


def _getter(config: dict[str, Any]) -> Any:
    def get(*names: str) -> int:
        for name in names:
            if config.get(name) is not None:
                return int(config[name])
        raise RecipeError(f"model config lacks {' / '.join(names)}; is it a causal LM config?")

    return get


def _llama_like(config, family, hidden, q, kv, intermediate, vocab, positions):  # type: ignore[no-untyped-def]
    qkv_bias = family == "qwen2" or bool(config.get("attention_bias", False))
    o_bias = bool(config.get("attention_bias", False)) and family != "qwen2"
    mlp_bias = bool(config.get("mlp_bias", False))
    if family == "phi3":
        linears = [
            Linear("qkv_proj", hidden, q + 2 * kv, qkv_bias),
            Linear("o_proj", q, hidden, o_bias),
            Linear("gate_up_proj", hidden, 2 * intermediate, mlp_bias),
            Linear("down_proj", intermediate, hidden, mlp_bias),
        ]
    else:
        linears = [
            Linear("q_proj", hidden, q, qkv_bias),
            Linear("k_proj", hidden, kv, qkv_bias),
            Linear("v_proj", hidden, kv, qkv_bias),
            Linear("o_proj", q, hidden, o_bias),
            Linear("gate_proj", hidden, intermediate, mlp_bias),
            Linear("up_proj", hidden, intermediate, mlp_bias),
            Linear("down_proj", intermediate, hidden, mlp_bias),
        ]
    norms = 4 if family == "gemma2" else 2
    head_dim = q // int(config["num_attention_heads"])
    other = norms * hidden + (2 * head_dim if family == "qwen3" else 0)  # Qwen3: q/k norms
    return linears, other, vocab * hidden + hidden


def _phi(config, family, hidden, q, kv, intermediate, vocab, positions):  # type: ignore[no-untyped-def]
    linears = [
        Linear("q_proj", hidden, q, True),
        Linear("k_proj", hidden, kv, True),
        Linear("v_proj", hidden, kv, True),
        Linear("dense", q, hidden, True),
        Linear("fc1", hidden, intermediate, True),
        Linear("fc2", intermediate, hidden, True),
    ]
    return linears, 2 * hidden, vocab * hidden + 2 * hidden


def _gpt2(config, family, hidden, q, kv, intermediate, vocab, positions):  # type: ignore[no-untyped-def]
    attention_out = hidden + 2 * kv if family == "gpt_bigcode" else 3 * hidden
    linears = [
        Linear("c_attn", hidden, attention_out, True),
        Linear("c_proj", hidden, hidden, True),
        Linear("c_fc", hidden, intermediate, True),
        Linear("c_proj", intermediate, hidden, True),
    ]
    return linears, 4 * hidden, vocab * hidden + positions * hidden + 2 * hidden


def _opt(config, family, hidden, q, kv, intermediate, vocab, positions):  # type: ignore[no-untyped-def]
    bias = bool(config.get("enable_bias", True))
    linears = [
        Linear("q_proj", hidden, hidden, bias),
        Linear("k_proj", hidden, hidden, bias),
        Linear("v_proj", hidden, hidden, bias),
        Linear("out_proj", hidden, hidden, bias),
        Linear("fc1", hidden, intermediate, bias),
        Linear("fc2", intermediate, hidden, bias),
    ]
    projection = config.get("word_embed_proj_dim") or hidden
    outer = vocab * projection + (positions + 2) * hidden
    if config.get("do_layer_norm_before", True) and not config.get("_remove_final_layer_norm"):
        outer += 2 * hidden
    norm_params = 2 * hidden if config.get("layer_norm_elementwise_affine", True) else 0
    if projection == hidden:
        return linears, 2 * norm_params, outer
    projections = [
        Linear("project_out", hidden, projection, False),
        Linear("project_in", projection, hidden, False),
    ]
    return linears, 2 * norm_params, outer, *projections


def _bloom(config, family, hidden, q, kv, intermediate, vocab, positions):  # type: ignore[no-untyped-def]
    linears = [
        Linear("query_key_value", hidden, 3 * hidden, True),
        Linear("dense", hidden, hidden, True),
        Linear("dense_h_to_4h", hidden, 4 * hidden, True),
        Linear("dense_4h_to_h", 4 * hidden, hidden, True),
    ]
    return linears, 4 * hidden, vocab * hidden + 4 * hidden


_BUILDERS = {"phi": _phi, "gpt2": _gpt2, "gpt_bigcode": _gpt2, "opt": _opt, "bloom": _bloom}


def read_config(source: str | os.PathLike[str] | Any) -> dict[str, Any]:
    """A model config mapping from a ``config.json`` path, a model folder, a transformers config
    object (or a plain mapping), or a hub name whose config is in the local Hugging Face cache."""
    if isinstance(source, dict):
        return source
    if hasattr(source, "to_dict"):
        return source.to_dict()
    path = Path(source)
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return json.loads(path.read_text())
    cached = _cached_config(str(source))
    if cached is not None:
        return json.loads(cached.read_text())
    raise RecipeError(
        f"model config '{source}': not a config.json, a model folder, or a hub name whose "
        "config is in the local cache. Fix: pass the path of the model's config.json."
    )


def _cached_config(name: str) -> Path | None:
    if name.count("/") != 1:
        return None
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    hub = Path(os.environ.get("HF_HUB_CACHE", home / "hub"))
    snapshots = hub / f"models--{name.replace('/', '--')}" / "snapshots"
    found = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None
