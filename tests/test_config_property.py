"""Whatever a model config holds, `peftkit estimate` answers or refuses it as a user error: it
never crashes. Random configs start from a valid Llama config and replace or delete keys with
random JSON values (null, booleans, integers of any size, NaN and infinity, text, lists,
objects), or swap the family so that every family's builder meets broken values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from train_helpers import run_main

from peftkit.memory.shapes import _FAMILIES

LLAMA = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 160,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 300,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
KEYS = sorted(
    {
        *LLAMA,
        "head_dim",
        "attention_bias",
        "mlp_bias",
        "n_embd",
        "n_layer",
        "n_head",
        "n_inner",
        "n_positions",
        "multi_query",
        "ffn_dim",
        "word_embed_proj_dim",
        "enable_bias",
        "do_layer_norm_before",
        "layer_norm_elementwise_affine",
        "dtype",
    }
)
"""Every key the estimate reads for some family."""
DELETE = object()

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 1, 2, 3, 64, 2**20, 2**20 + 1, 2**31, 2**63, 10**30]),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(_FAMILIES),
)
json_values = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)
edits = st.dictionaries(st.sampled_from(KEYS), st.one_of(st.just(DELETE), json_values), max_size=5)


def edited(changes: dict[str, Any]) -> dict[str, Any]:
    config = {**LLAMA, **changes}
    return {key: value for key, value in config.items() if value is not DELETE}


configs = st.integers(0, 9).flatmap(lambda n: json_values if n == 0 else edits.map(edited))
"""Mostly edited configs; one in ten a JSON value of any kind in place of the object."""
targets = st.sampled_from(
    ["all-linear", "all-linear", "q_proj,v_proj", "qkv_proj, o_proj", "c_attn"]
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(config=configs, target_list=targets)
def test_estimate_answers_or_refuses_any_config(
    config: Any, target_list: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    code, out, err = run_main(
        monkeypatch, "estimate", "--model", str(path), "--targets", target_list, "--json"
    )
    assert "Traceback" not in err
    if code == 0:
        assert json.loads(out)["total_params"] > 0
    else:
        assert code == 2 and "error:" in err, (code, err)
