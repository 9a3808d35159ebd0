"""A model's parameter shapes, read from its ``config.json`` alone (no torch, no weights).

Every term of the memory estimate starts from these shapes: which linear layers a decoder layer
has (what LoRA attaches to and what bitsandbytes quantizes), the embeddings and norms (which stay
in 16/32-bit), and the attention and MLP widths (which size the activations). Families covered:
Llama, Mistral, Qwen2/Qwen3, Gemma/Gemma2, Phi-3 (fused projections), Phi (1/1.5/2), GPT-2,
GPT-BigCode, OPT and BLOOM.

A config is a file people edit and download, so every field the estimate reads is checked
before any arithmetic, and every problem of a config is reported at once: a count that is not
a whole number, is 0 or negative, or is far beyond any published model would otherwise give a
crash deep in the arithmetic or a confident estimate of nonsense. The bounds (``MAX_*`` below)
sit far above the largest published model, so that they catch typos and broken files only.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftkit.errors import MISSING, Problem, ProblemsError, RecipeError
from peftkit.targets import ALL_LINEAR, check_targets, matches
from peftkit.text import read_text

MAX_WIDTH = 2**20
"""Hidden size, MLP width, head width, OPT's projection: 1,048,576, 20 times the widest
published layer (the 53,248-wide MLP of Llama-3.1-405B)."""
MAX_LAYERS = 1024
"""8 times the deepest published decoder (Llama-3.1-405B, 126 layers)."""
MAX_VOCAB = 2**24
"""16,777,216 tokens, 64 times the largest published vocabulary (Gemma 3, 262,144)."""
MAX_POSITIONS = 2**26
"""Learned position embeddings (GPT-2, GPT-BigCode, OPT): 67,108,864, 6 times the longest
published context (Llama 4 Scout, 10M tokens)."""
MAX_CONFIG_BYTES = 2**24
"""A config.json is a few KB; a file of 16 MiB is weights passed by mistake, not read whole."""
DEFAULT_POSITIONS = 2048


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


_LLAMA_LIKE = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "smollm3"}
_FAMILIES = sorted(_LLAMA_LIKE | {"phi", "gpt2", "gpt_bigcode", "opt", "bloom"})
_TIED_BY_DEFAULT = {"gemma", "gemma2", "gpt2", "gpt_bigcode", "opt", "bloom"}
_LEARNED_POSITIONS = {"gpt2", "gpt_bigcode", "opt"}

# The keys a value may be stored under, in the order transformers' config classes use them.
_HIDDEN = ("hidden_size", "n_embd", "d_model", "n_embed")
_LAYERS = ("num_hidden_layers", "n_layer")
_HEADS = ("num_attention_heads", "n_head")
_INTERMEDIATE = ("intermediate_size", "n_inner", "ffn_dim")
_POSITIONS = ("max_position_embeddings", "n_positions", "seq_length")
_DTYPE = ("torch_dtype", "dtype")


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


def shape_of(config: Mapping[str, Any], name: str = "the model config") -> ModelShape:
    """The shape of a causal LM from its config mapping; ``name`` says where the mapping came
    from in the error, which lists every problem at once (a ProblemsError)."""
    subject = f"in {name}"
    if not isinstance(config, Mapping):
        raise RecipeError(
            f"{name} is {_kind(config)}, not a mapping of config keys. Fix: pass the model's "
            "config.json, a model folder, or the dict that json.load gives for it."
        )
    family = config.get("model_type")
    if family not in _FAMILIES:
        raise ProblemsError(subject, [_family_problem(config)])
    read = _Reader(config)
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
    positions = 0
    if family in _LEARNED_POSITIONS:
        positions = read.whole(
            _POSITIONS, "the number of positions", 2048, MAX_POSITIONS, required=False
        )
    projection = 0
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
    if family == "gpt_bigcode" and flags["multi_query"]:
        kv_heads = 1
    kv_heads = kv_heads or heads
    head_dim = head_dim or hidden // heads
    dims = _Dims(
        family=family,
        hidden=hidden,
        q=heads * head_dim,
        kv=kv_heads * head_dim,
        head_dim=head_dim,
        intermediate=intermediate or 4 * hidden,
        vocab=vocab,
        positions=positions or DEFAULT_POSITIONS,
        projection=projection or hidden,
        flags=flags,
    )
    builder = _llama_like if family in _LLAMA_LIKE else _BUILDERS[family]
    linears, other, outer, outer_linears = builder(dims)
    lm_head = 0 if flags["tie_word_embeddings"] else vocab * dims.projection
    if family == "phi" and not flags["tie_word_embeddings"]:
        lm_head += vocab  # Phi's output head has a bias
    return ModelShape(
        family=family,
        hidden=hidden,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=dims.intermediate,
        vocab=vocab,
        gated_mlp=family in _LLAMA_LIKE,
        linears=tuple(linears),
        layer_other_params=other,
        outer_params=outer,
        outer_linears=tuple(outer_linears),
        lm_head_params=lm_head,
        checkpoint_dtype=dtype or "float32",
    )


def _family_problem(config: Mapping[str, Any]) -> Problem:
    """Which keys the rest of a config needs depends on its family, so an unknown family is
    reported alone rather than with a list of keys that family may not use."""
    supported = ", ".join(_FAMILIES)
    if "model_type" not in config:
        return Problem(
            "model_type",
            MISSING,
            f"model_type names the architecture, one peftkit can size from its config: {supported}",
            'add the model\'s family, e.g. "model_type": "llama" (the model\'s published '
            "config.json has it)",
        )
    family = config["model_type"]
    spelled = str(family).strip().lower().replace("-", "_")
    return Problem(
        "model_type",
        family,
        f"model_type {family!r} is not one peftkit can size from its config; supported: "
        f"{supported}",
        f'write "model_type": "{spelled}"'
        if spelled in _FAMILIES
        else "pass the config of a supported architecture; a close name is no substitute "
        "(gemma3 and qwen2_moe have other layers than gemma and qwen2)",
    )


class _Reader:
    """Reads the fields of one config, noting every problem instead of stopping at the first.

    A value that is absent, null or wrong reads as 0 (or "" / the default), so that the
    remaining checks can run; a wrong one has then been noted, and nothing is computed from it.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.problems: list[Problem] = []

    def _find(self, names: tuple[str, ...]) -> tuple[str, Any]:
        """The first of ``names`` with a value; null counts as absent, as transformers writes
        an unset optional field. ('', None) when none has one."""
        for name in names:
            if self.config.get(name) is not None:
                return name, self.config[name]
        return "", None

    def whole(
        self,
        names: tuple[str, ...],
        what: str,
        example: int,
        high: int,
        high_name: str = "",
        required: bool = True,
    ) -> int:
        """A count or width: a JSON integer from 1 to ``high``."""
        key, value = self._find(names)
        bound = f"{high_name} ({high:,})" if high_name and high < MAX_WIDTH else f"{high:,}"
        if not key:
            if required:
                present = next((name for name in names if name in self.config), "")
                self.problems.append(
                    Problem(
                        present or names[0],
                        None if present else MISSING,
                        f"{what} is required: a whole number from 1 to {bound}"
                        + (f" (under {' or '.join(names)})" if len(names) > 1 else ""),
                        f'set it from the model\'s published config.json, e.g. "{names[0]}": '
                        f"{example}",
                    )
                )
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            self.problems.append(
                Problem(
                    key,
                    value,
                    f"{what} must be a JSON whole number from 1 to {bound}, not {_kind(value)}",
                    _number_fix(key, value, example, high),
                )
            )
            return 0
        if not 1 <= value <= high:
            self.problems.append(
                Problem(
                    key,
                    value,
                    f"{what} must be from 1 to {bound}",
                    f'set it from the model\'s published config.json, e.g. "{key}": {example}',
                )
            )
            return 0
        return value

    def flag(self, key: str, default: bool) -> bool:
        """A JSON true or false; absent or null means ``default``."""
        value = self.config.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problems.append(
                Problem(
                    key,
                    value,
                    f"{key} must be true or false, not {_kind(value)}",
                    f'write "{key}": true or "{key}": false (no quotes), or delete it for '
                    f"the default ({json.dumps(default)})",
                )
            )
            return default
        return value

    def text(self, names: tuple[str, ...], what: str, example: str) -> str:
        """A JSON string; "" when absent."""
        key, value = self._find(names)
        if key and not isinstance(value, str):
            self.problems.append(
                Problem(
                    key,
                    value,
                    f"{what} must be a string, not {_kind(value)}",
                    f'write "{key}": "{example}", or delete it',
                )
            )
            return ""
        return value or ""

    def divisor(
        self, names: tuple[str, ...], value: int, whole: int, whole_key: str, width_key: str | None
    ) -> None:
        """``value`` (under the first of ``names`` present) must divide ``whole``."""
        key = next(name for name in names if self.config.get(name) is not None)
        near = next(d for d in range(min(value, whole), 0, -1) if whole % d == 0)
        rule = f"{key} must divide {whole_key} ({whole}) evenly"
        fix = f'use the model\'s real value, a divisor of {whole} such as "{key}": {near}'
        if width_key:
            rule += f": each head is {whole_key} / {key} wide"
            fix += f', or add "{width_key}" with the width of one head'
        else:
            rule += ": every key/value head serves the same number of query heads"
        self.problems.append(Problem(key, value, rule, fix))


def _kind(value: Any) -> str:
    """What JSON calls the type of ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} (not a number JSON allows)"
    kinds = {int: "an integer", float: "a decimal number", str: "a string", list: "a list"}
    return next((name for kind, name in kinds.items() if isinstance(value, kind)), "an object")


def _number_fix(key: str, value: Any, example: int, high: int) -> str:
    """The corrected field, when the intended number is clear from the wrong value (64.0 or
    "64" for 64) and allowed."""
    meant = None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        meant, how = int(value), 'a whole number, without ".0"'
    elif isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) < 10:
        meant, how = int(value), "a number, without quotes"
    if meant is not None and 1 <= meant <= high:
        return f'write "{key}": {meant} ({how})'
    return f'set it from the model\'s published config.json, e.g. "{key}": {example}'


def _llama_like(d: _Dims) -> Layout:
    qkv_bias = d.family == "qwen2" or d.flags["attention_bias"]
    o_bias = d.flags["attention_bias"] and d.family != "qwen2"
    mlp_bias = d.flags["mlp_bias"]
    hidden, q, kv, intermediate = d.hidden, d.q, d.kv, d.intermediate
    if d.family == "phi3":
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
    norms = 4 if d.family == "gemma2" else 2
    other = norms * hidden + (2 * d.head_dim if d.family == "qwen3" else 0)  # Qwen3: q/k norms
    return linears, other, d.vocab * hidden + hidden, []


def _phi(d: _Dims) -> Layout:
    linears = [
        Linear("q_proj", d.hidden, d.q, True),
        Linear("k_proj", d.hidden, d.kv, True),
        Linear("v_proj", d.hidden, d.kv, True),
        Linear("dense", d.q, d.hidden, True),
        Linear("fc1", d.hidden, d.intermediate, True),
        Linear("fc2", d.intermediate, d.hidden, True),
    ]
    return linears, 2 * d.hidden, d.vocab * d.hidden + 2 * d.hidden, []


def _gpt2(d: _Dims) -> Layout:
    hidden = d.hidden
    attention_out = hidden + 2 * d.kv if d.family == "gpt_bigcode" else 3 * hidden
    linears = [
        Linear("c_attn", hidden, attention_out, True),
        Linear("c_proj", hidden, hidden, True),
        Linear("c_fc", hidden, d.intermediate, True),
        Linear("c_proj", d.intermediate, hidden, True),
    ]
    return linears, 4 * hidden, d.vocab * hidden + d.positions * hidden + 2 * hidden, []


def _opt(d: _Dims) -> Layout:
    hidden, bias = d.hidden, d.flags["enable_bias"]
    linears = [
        Linear("q_proj", hidden, hidden, bias),
        Linear("k_proj", hidden, hidden, bias),
        Linear("v_proj", hidden, hidden, bias),
        Linear("out_proj", hidden, hidden, bias),
        Linear("fc1", hidden, d.intermediate, bias),
        Linear("fc2", d.intermediate, hidden, bias),
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
        Linear("query_key_value", hidden, 3 * hidden, True),
        Linear("dense", hidden, hidden, True),
        Linear("dense_h_to_4h", hidden, 4 * hidden, True),
        Linear("dense_4h_to_h", 4 * hidden, hidden, True),
    ]
    return linears, 4 * hidden, d.vocab * hidden + 4 * hidden, []


_BUILDERS: dict[str, Callable[[_Dims], Layout]] = {
    "phi": _phi,
    "gpt2": _gpt2,
    "gpt_bigcode": _gpt2,
    "opt": _opt,
    "bloom": _bloom,
}


def read_config(source: str | os.PathLike[str] | Any) -> dict[str, Any]:
    """A model config mapping from a ``config.json`` path, a model folder, a transformers config
    object (or a plain mapping), or a hub name whose config is in the local Hugging Face cache.

    A file that cannot be a config (unreadable, not UTF-8, not JSON, not a JSON object) is a
    RecipeError naming the file; its fields are checked by :func:`shape_of`.
    """
    if isinstance(source, Mapping):
        return dict(source)
    if hasattr(source, "to_dict"):
        return source.to_dict()
    return _parse(_locate(source))


def load_shape(source: str | os.PathLike[str] | Any) -> ModelShape:
    """:func:`read_config` then :func:`shape_of`, naming the file in every problem (what the
    command line passes)."""
    if isinstance(source, Mapping) or hasattr(source, "to_dict"):
        return shape_of(read_config(source))
    path = _locate(source)
    return shape_of(_parse(path), f"model config '{path}'")


def _locate(source: str | os.PathLike[str]) -> Path:
    """The config.json that ``source`` names."""
    path = Path(source)
    try:
        if path.is_dir():
            found = path / "config.json"
            if not found.exists():
                raise RecipeError(
                    f"model folder '{path}' has no config.json. Fix: pass the folder of a "
                    "Hugging Face model (the one holding config.json), or the config.json itself."
                )
            return found
        if path.exists():
            return path
    except OSError as error:
        raise _unreadable(path, error) from error
    cached = _cached_config(str(source))
    if cached is not None:
        return cached
    raise RecipeError(
        f"model config '{source}': not a config.json, a model folder, or a hub name whose "
        "config is in the local cache. Fix: pass the path of the model's config.json."
    )


def _parse(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, or a RecipeError that names the file and what is wrong."""
    try:
        size = path.stat().st_size
        if size >= MAX_CONFIG_BYTES:
            raise RecipeError(
                f"model config '{path}' is {size:,} bytes; a config.json is a few KB (is it a "
                "weights file?). Fix: pass the model's config.json or its folder."
            )
    except OSError as error:
        raise _unreadable(path, error) from error
    text = read_text(path, "model config")
    if not text.strip():
        raise RecipeError(
            f"model config '{path}' is empty. Fix: download the model's config.json again, or "
            "pass the folder that holds it."
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        line = text.split("\n")[error.lineno - 1]
        around = line[max(0, error.colno - 31) : error.colno + 29].strip()  # a minified file
        raise ProblemsError(
            f"in model config '{path}'",
            [
                Problem(
                    f"{path}:{error.lineno}:{error.colno}",
                    around,
                    f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})",
                    "correct the JSON there (a missing comma or quote, a trailing comma, a "
                    "comment), or download the model's config.json again",
                )
            ],
        ) from error
    except (ValueError, RecursionError) as error:
        raise RecipeError(
            f"model config '{path}' cannot be read as JSON: {error}. Fix: download the "
            "model's config.json again."
        ) from error
    if not isinstance(config, dict):
        raise RecipeError(
            f"model config '{path}' holds {_kind(config)}, not a JSON object. Fix: pass the "
            'model\'s config.json, whose top level is an object: {"model_type": "llama", '
            '"hidden_size": 4096, ...}.'
        )
    return config


def _unreadable(path: Path, error: OSError) -> RecipeError:
    return RecipeError(
        f"model config '{path}' cannot be read: {error.strerror or error}. Fix: pass a readable "
        "config.json file or a model folder (check its permissions)."
    )


def _cached_config(name: str) -> Path | None:
    if name.count("/") != 1:
        return None
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    hub = Path(os.environ.get("HF_HUB_CACHE", home / "hub"))
    snapshots = hub / f"models--{name.replace('/', '--')}" / "snapshots"
    found = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None
