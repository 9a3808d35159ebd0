"""A model's parameter shapes, read from its ``config.json`` alone (no torch, no weights).

Every term of the memory estimate starts from these shapes: which linear layers a decoder layer
has (what LoRA attaches to and what bitsandbytes quantizes), the embeddings and norms (which stay
in 16/32-bit), and the attention and MLP widths (which size the activations). Families covered:
Llama, Mistral, Qwen2/Qwen3, Gemma/Gemma2, Phi-3 (fused projections), Phi (1/1.5/2), GPT-2,
GPT-BigCode, OPT and BLOOM.

Every field is checked first (:mod:`peftkit.memory.config_fields`), so that the arithmetic
here only ever sees sound numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from peftkit.core.errors import ProblemsError, RecipeError, json_kind
from peftkit.core.targets import ALL_LINEAR, check_targets, matches
from peftkit.memory.config_fields import (
    MAX_LAYERS,
    MAX_POSITIONS,
    MAX_VOCAB,
    MAX_WIDTH,
    FieldReader,
    family_problem,
)

DEFAULT_POSITIONS = 2048


@dataclass(frozen=True)
class Linear:
    """One linear layer of a decoder layer (LoRA targets it; 4-bit quantization packs it)."""

    name: str
    in_features: int
    out_features: int
    bias: bool
    reads: str = ""
    """The tensor the layer reads, for the activations: layers of one decoder layer that name
    the same one share it (q, k and v read the attention norm's output); "attention" is the
    attention's output, which the attention keeps for its own backward anyway; "" is a tensor
    of its own."""

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
    context: int | None = None
    """Tokens the model reads at most, from ``context_key``: a longer sequence has no position
    to go to. None when the config does not say, and for BLOOM, whose ALiBi sets no limit."""
    context_key: str = ""
    """The config key ``context`` comes from (GPT-2 calls it n_positions), for messages."""
    scaled_context: int | None = None
    """Tokens the model takes with the rope scaling its config carries, when that stretches
    ``context`` (Llama-2 with linear scaling, factor 4: 16,384); None without such scaling."""
    scaling: str = ""
    """How ``scaled_context`` comes about, for notices: "rope_scaling linear, factor 4"."""
    defaults: tuple[str, ...] = ()
    """Fields the config leaves out, each with the default of the family's transformers
    config class that stands in for it ("intermediate_size=11008 (LlamaConfig)")."""
    quantized: str = ""
    """The quantization a pre-quantized checkpoint is stored in ("gptq", "bitsandbytes"), from
    its quantization_config; "" for a 16/32-bit checkpoint."""
    quantized_bits: int | None = None
    """The bits per weight of that quantization, when the config says."""

    @property
    def all_linears(self) -> list[Linear]:
        """Every linear layer but the output head, each decoder layer's repeated."""
        return [*(list(self.linears) * self.layers), *self.outer_linears]

    @property
    def linear_names(self) -> list[str]:
        """The names LoRA targets can match (last components; GPT-2's c_proj is two layers)."""
        return list(dict.fromkeys(linear.name for linear in (*self.linears, *self.outer_linears)))

    @property
    def total_params(self) -> int:
        per_layer = sum(linear.params for linear in self.linears) + self.layer_other_params
        outer = self.outer_params + sum(linear.params for linear in self.outer_linears)
        return self.layers * per_layer + outer + self.lm_head_params

    def targets(self, target_modules: str | tuple[str, ...] | list[str]) -> list[Linear]:
        """Every linear layer (of the whole model) that LoRA with these targets attaches to.

        A target that matches no layer is refused here, the one place every estimate resolves
        its targets: PEFT would train nothing for it and the estimate would count nothing.
        """
        if target_modules == ALL_LINEAR:
            return self.all_linears
        names = self.linear_names
        check_targets(target_modules, names, f"the {self.family} model")
        wanted = {name for name in names if any(matches(t, name) for t in target_modules)}
        return [linear for linear in self.all_linears if linear.name in wanted]


ROPE_KEYS = ("rope_scaling", "rope_parameters")
"""Where a config keeps its rotary scaling (transformers 5 writes rope_parameters)."""


def rope_scaled(config: Mapping[str, Any], context: int | None) -> tuple[int | None, str]:
    """The tokens a rope-scaled model takes (the original context times the factor, never
    less than ``context``) and how, when the config's rope scaling has a factor above 1;
    (None, "") otherwise. Published long-context runs rely on it (Llama-2-7B at 8k and 16k
    with linear scaling, Qwen2.5 at 128k with YaRN)."""
    if context is None:
        return None, ""
    for key in ROPE_KEYS:
        rope = config.get(key)
        factor = rope.get("factor") if isinstance(rope, Mapping) else None
        if isinstance(factor, bool) or not isinstance(factor, int | float):
            continue
        if not 1 < factor < MAX_POSITIONS:
            continue
        original = rope.get("original_max_position_embeddings")  # type: ignore[union-attr]
        base = original if isinstance(original, int) and 0 < original <= context else context
        kind = rope.get("rope_type") or rope.get("type") or "scaling"  # type: ignore[union-attr]
        return max(context, int(base * factor)), f"{key} {kind}, factor {factor:g}"
    return None, ""


def usable_context(config: Mapping[str, Any]) -> tuple[int | None, str]:
    """The longest sequence a model config allows, and the key that says so (with its rope
    scaling, when that stretches it); (None, "") when the config sets no limit."""
    key = next((name for name in _POSITIONS if isinstance(config.get(name), int)), "")
    context = config.get(key) if key else None
    scaled, how = rope_scaled(config, context)
    if scaled is not None and scaled > context:  # type: ignore[operator]
        return scaled, f"{key} {context} with {how}"
    return context, key


_LLAMA_LIKE = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "smollm3"}
_FAMILIES = sorted(_LLAMA_LIKE | {"phi", "gpt2", "gpt_bigcode", "opt", "bloom"})
_TIED_BY_DEFAULT = {"gemma", "gemma2", "gpt2", "gpt_bigcode", "opt", "bloom"}

# The keys a value may be stored under, in the order transformers' config classes use them.
_HIDDEN = ("hidden_size", "n_embd", "d_model", "n_embed")
_LAYERS = ("num_hidden_layers", "n_layer")
_HEADS = ("num_attention_heads", "n_head")
_INTERMEDIATE = ("intermediate_size", "n_inner", "ffn_dim")
_POSITIONS = ("max_position_embeddings", "n_positions", "seq_length")
_DTYPE = ("torch_dtype", "dtype")


ARCHITECTURE_DEFAULTS: dict[str, dict[str, int]] = {
    "llama": {"intermediate_size": 11008, "max_position_embeddings": 2048},
    "mistral": {
        "intermediate_size": 14336,
        "max_position_embeddings": 131072,
        "num_key_value_heads": 8,
    },
    "qwen2": {
        "intermediate_size": 22016,
        "max_position_embeddings": 32768,
        "num_key_value_heads": 32,
    },
    "qwen3": {
        "intermediate_size": 22016,
        "max_position_embeddings": 32768,
        "num_key_value_heads": 32,
        "head_dim": 128,
    },
    "gemma": {
        "intermediate_size": 24576,
        "max_position_embeddings": 8192,
        "num_key_value_heads": 16,
        "head_dim": 256,
    },
    "gemma2": {
        "intermediate_size": 9216,
        "max_position_embeddings": 8192,
        "num_key_value_heads": 4,
        "head_dim": 256,
    },
    "phi3": {"intermediate_size": 8192, "max_position_embeddings": 4096},
    "smollm3": {
        "intermediate_size": 11008,
        "max_position_embeddings": 32768,
        "num_key_value_heads": 4,
    },
    "phi": {"intermediate_size": 8192, "max_position_embeddings": 2048},
    "gpt2": {"n_positions": 1024},
    "gpt_bigcode": {"n_positions": 1024},
    "opt": {"ffn_dim": 3072, "max_position_embeddings": 2048},
    "bloom": {},
}
"""What each family's transformers config class (``AutoConfig.for_model(family)``) takes for
a field its config.json leaves out, so that the estimate sizes the model transformers builds
(tests/test_memory.py compares the table with the classes). GPT-2's and GPT-BigCode's MLP is 4x
the hidden size when n_inner is unset, as the arithmetic assumes; BLOOM's always is."""
_FILLED = {
    "intermediate_size": _INTERMEDIATE,
    "ffn_dim": _INTERMEDIATE,
    "max_position_embeddings": _POSITIONS,
    "n_positions": _POSITIONS,
}
"""Width and context: a null counts as missing (an unset field); the alternatives each key
has in other families."""


def _with_defaults(config: Mapping[str, Any], family: str) -> tuple[dict[str, Any], list[str]]:
    """``config`` with the family's defaults for the fields it leaves out, and which they are.
    A null width or context is left out too; a null head count or width keeps its meaning
    (the number of heads, hidden / heads), as in transformers."""
    filled, used = dict(config), []
    kind = _config_class_name(family)
    for key, value in ARCHITECTURE_DEFAULTS[family].items():
        names = _FILLED.get(key, (key,))
        given = any(config.get(name) is not None for name in names)
        if given or (key not in _FILLED and key in config):
            continue
        filled[key] = value
        used.append(f"{key}={value} ({kind}'s default)")
    return filled, used


def _config_class_name(family: str) -> str:
    names = {"gpt2": "GPT2", "gpt_bigcode": "GPTBigCode", "opt": "OPT", "smollm3": "SmolLM3"}
    return names.get(family, family.title().replace("_", "")) + "Config"


def _quantization(config: Mapping[str, Any]) -> tuple[str, int | None]:
    """The method and bits of a pre-quantized checkpoint's quantization_config."""
    found = config.get("quantization_config")
    if not isinstance(found, Mapping):
        return "", None
    method = str(found.get("quant_method") or "unknown")
    bits = found.get("bits")
    if method == "bitsandbytes":
        bits = 4 if found.get("load_in_4bit") else 8 if found.get("load_in_8bit") else None
    return method, bits if isinstance(bits, int) and not isinstance(bits, bool) else None


def _flag_defaults(family: str) -> dict[str, bool]:
    """The true/false keys the estimate reads for ``family``, with transformers' defaults."""
    flags = {"tie_word_embeddings": family in _TIED_BY_DEFAULT}
    if family in _LLAMA_LIKE:
        flags |= {"attention_bias": False, "mlp_bias": False}
    elif family == "gpt_bigcode":
        flags["multi_query"] = True
    elif family == "opt":
        flags |= {
            "enable_bias": True,
            "do_layer_norm_before": True,
            "_remove_final_layer_norm": False,
            "layer_norm_elementwise_affine": True,
        }
    return flags


@dataclass(frozen=True)
class _Dims:
    """The checked numbers from which a family's builder lays out its layers."""

    family: str
    hidden: int
    q: int
    kv: int
    head_dim: int
    intermediate: int
    vocab: int
    positions: int
    projection: int
    flags: dict[str, bool]


Layout = tuple[list[Linear], int, int, list[Linear]]
"""A decoder layer's linears, its other parameters, the parameters outside the layers, and the
linears outside the layers."""


@dataclass(frozen=True)
class _Fields:
    """A config's numbers as read and checked, before a family's builder lays them out; 0 for
    an optional number the config leaves out."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    positions: int
    context_key: str
    projection: int
    flags: dict[str, bool]
    dtype: str


def shape_of(config: Mapping[str, Any], name: str = "the model config") -> ModelShape:
    """The shape of a causal LM from its config mapping; ``name`` says where the mapping came
    from in the error, which lists every problem at once (a ProblemsError)."""
    subject = f"in {name}"
    if not isinstance(config, Mapping):
        raise RecipeError(
            f"{name} is {json_kind(config)}, not a mapping of config keys. Fix: pass the model's "
            "config.json, a model folder, or the dict that json.load gives for it."
        )
    family = config.get("model_type")
    if family not in _FAMILIES:
        raise ProblemsError(subject, [family_problem(config, _FAMILIES)])
    config, defaults = _with_defaults(config, family)
    f = _read_fields(config, family, subject)
    kv_heads = 1 if family == "gpt_bigcode" and f.flags["multi_query"] else f.kv_heads or f.heads
    head_dim = f.head_dim or f.hidden // f.heads
    dims = _Dims(
        family=family,
        hidden=f.hidden,
        q=f.heads * head_dim,
        kv=kv_heads * head_dim,
        head_dim=head_dim,
        intermediate=f.intermediate or 4 * f.hidden,
        vocab=f.vocab,
        positions=f.positions or DEFAULT_POSITIONS,  # BLOOM, which has no position table
        projection=f.projection or f.hidden,
        flags=f.flags,
    )
    scaled, how = rope_scaled(config, f.positions or None)
    quantized, bits = _quantization(config)
    builder = _llama_like if family in _LLAMA_LIKE else _BUILDERS[family]
    linears, other, outer, outer_linears = builder(dims)
    lm_head = 0 if f.flags["tie_word_embeddings"] else f.vocab * dims.projection
    if family == "phi" and not f.flags["tie_word_embeddings"]:
        lm_head += f.vocab  # Phi's output head has a bias
    return ModelShape(
        family=family,
        hidden=f.hidden,
        layers=f.layers,
        heads=f.heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=dims.intermediate,
        vocab=f.vocab,
        gated_mlp=family in _LLAMA_LIKE,
        linears=tuple(linears),
        layer_other_params=other,
        outer_params=outer,
        outer_linears=tuple(outer_linears),
        lm_head_params=lm_head,
        checkpoint_dtype=f.dtype or "float32",
        context=f.positions or None,
        context_key=f.context_key,
        scaled_context=scaled,
        scaling=how,
        defaults=tuple(defaults),
        quantized=quantized,
        quantized_bits=bits,
    )


def _read_fields(config: Mapping[str, Any], family: str, subject: str) -> _Fields:
    """Every number the shape needs, each checked, with all the problems in one ProblemsError
    (in the order read, which the message keeps)."""
    read = FieldReader(config)
    hidden = read.whole(_HIDDEN, "the hidden size", 4096, MAX_WIDTH)
    layers = read.whole(_LAYERS, "the number of decoder layers", 32, MAX_LAYERS)
    heads = read.whole(
        _HEADS, "the number of attention heads", 32, hidden or MAX_WIDTH, "hidden_size"
    )
    kv_heads = read.whole(
        ("num_key_value_heads",), "the number of key/value heads", 8, MAX_WIDTH, required=False
    )
    head_dim = read.whole(("head_dim",), "the width of one head", 128, MAX_WIDTH, required=False)
    intermediate = read.whole(_INTERMEDIATE, "the MLP width", 11008, MAX_WIDTH, required=False)
    vocab = read.whole(("vocab_size",), "the vocabulary size", 32000, MAX_VOCAB)
    positions, context_key, projection = 0, "", 0
    if family != "bloom":  # ALiBi: no position embedding, no hard limit
        positions = read.whole(
            _POSITIONS, "the number of positions", 2048, MAX_POSITIONS, required=False
        )
        context_key = next((key for key in _POSITIONS if config.get(key) is not None), "")
    if family == "opt":
        projection = read.whole(
            ("word_embed_proj_dim",), "the embedding width", 4096, MAX_WIDTH, required=False
        )
    flags = {key: read.flag(key, default) for key, default in _flag_defaults(family).items()}
    dtype = read.text(_DTYPE, "the checkpoint's dtype", "bfloat16")
    if hidden and heads and hidden % heads and config.get("head_dim") is None:
        read.divisor(_HEADS, heads, hidden, "hidden_size", "head_dim")
    if heads and kv_heads and heads % kv_heads:
        read.divisor(("num_key_value_heads",), kv_heads, heads, "num_attention_heads", None)
    if read.problems:
        raise ProblemsError(subject, read.problems)
    return _Fields(
        hidden,
        layers,
        heads,
        kv_heads,
        head_dim,
        intermediate,
        vocab,
        positions,
        context_key,
        projection,
        flags,
        dtype,
    )


def _llama_like(d: _Dims) -> Layout:
    qkv_bias = d.family == "qwen2" or d.flags["attention_bias"]
    o_bias = d.flags["attention_bias"] and d.family != "qwen2"
    mlp_bias = d.flags["mlp_bias"]
    hidden, q, kv, intermediate = d.hidden, d.q, d.kv, d.intermediate
    if d.family == "phi3":
        linears = [
            Linear("qkv_proj", hidden, q + 2 * kv, qkv_bias, "norm1"),
            Linear("o_proj", q, hidden, o_bias, "attention"),
            Linear("gate_up_proj", hidden, 2 * intermediate, mlp_bias, "norm2"),
            Linear("down_proj", intermediate, hidden, mlp_bias, "mlp"),
        ]
    else:
        linears = [
            Linear("q_proj", hidden, q, qkv_bias, "norm1"),
            Linear("k_proj", hidden, kv, qkv_bias, "norm1"),
            Linear("v_proj", hidden, kv, qkv_bias, "norm1"),
            Linear("o_proj", q, hidden, o_bias, "attention"),
            Linear("gate_proj", hidden, intermediate, mlp_bias, "norm2"),
            Linear("up_proj", hidden, intermediate, mlp_bias, "norm2"),
            Linear("down_proj", intermediate, hidden, mlp_bias, "mlp"),
        ]
    norms = 4 if d.family == "gemma2" else 2
    other = norms * hidden + (2 * d.head_dim if d.family == "qwen3" else 0)  # Qwen3: q/k norms
    return linears, other, d.vocab * hidden + hidden, []


def _phi(d: _Dims) -> Layout:
    linears = [
        Linear("q_proj", d.hidden, d.q, True, "norm1"),  # one norm feeds attention and MLP
        Linear("k_proj", d.hidden, d.kv, True, "norm1"),
        Linear("v_proj", d.hidden, d.kv, True, "norm1"),
        Linear("dense", d.q, d.hidden, True, "attention"),
        Linear("fc1", d.hidden, d.intermediate, True, "norm1"),
        Linear("fc2", d.intermediate, d.hidden, True, "mlp"),
    ]
    return linears, 2 * d.hidden, d.vocab * d.hidden + 2 * d.hidden, []


def _gpt2(d: _Dims) -> Layout:
    hidden = d.hidden
    attention_out = hidden + 2 * d.kv if d.family == "gpt_bigcode" else 3 * hidden
    linears = [
        Linear("c_attn", hidden, attention_out, True, "norm1"),
        Linear("c_proj", hidden, hidden, True, "attention"),
        Linear("c_fc", hidden, d.intermediate, True, "norm2"),
        Linear("c_proj", d.intermediate, hidden, True, "mlp"),
    ]
    return linears, 4 * hidden, d.vocab * hidden + d.positions * hidden + 2 * hidden, []


def _opt(d: _Dims) -> Layout:
    hidden, bias = d.hidden, d.flags["enable_bias"]
    linears = [
        Linear("q_proj", hidden, hidden, bias, "norm1"),
        Linear("k_proj", hidden, hidden, bias, "norm1"),
        Linear("v_proj", hidden, hidden, bias, "norm1"),
        Linear("out_proj", hidden, hidden, bias, "attention"),
        Linear("fc1", hidden, d.intermediate, bias, "norm2"),
        Linear("fc2", d.intermediate, hidden, bias, "mlp"),
    ]
    outer = d.vocab * d.projection + (d.positions + 2) * hidden
    if d.flags["do_layer_norm_before"] and not d.flags["_remove_final_layer_norm"]:
        outer += 2 * hidden
    norm_params = 2 * hidden if d.flags["layer_norm_elementwise_affine"] else 0
    if d.projection == hidden:
        return linears, 2 * norm_params, outer, []
    projections = [
        Linear("project_out", hidden, d.projection, False),
        Linear("project_in", d.projection, hidden, False),
    ]
    return linears, 2 * norm_params, outer, projections


def _bloom(d: _Dims) -> Layout:
    hidden = d.hidden
    linears = [
        Linear("query_key_value", hidden, 3 * hidden, True, "norm1"),
        Linear("dense", hidden, hidden, True, "attention"),
        Linear("dense_h_to_4h", hidden, 4 * hidden, True, "norm2"),
        Linear("dense_4h_to_h", 4 * hidden, hidden, True, "mlp"),
    ]
    return linears, 4 * hidden, d.vocab * hidden + 4 * hidden, []


_BUILDERS: dict[str, Callable[[_Dims], Layout]] = {
    "phi": _phi,
    "gpt2": _gpt2,
    "gpt_bigcode": _gpt2,
    "opt": _opt,
    "bloom": _bloom,
}
