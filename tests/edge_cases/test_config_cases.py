"""Bad model configs, GPU budgets and LoRA targets for `peftkit estimate` and `peftkit plan`:
each must end as one plain error that names what is wrong (exit 2, no traceback), never as a
crash in the arithmetic or a confident estimate of nonsense.

Every config case starts from the valid Llama config ``BASE`` and breaks one thing, so that the
message can only be about that thing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from corpus import Case, run_case
from train_helpers import run_main

from peftkit import recipes
from peftkit.errors import MISSING, ProblemsError
from peftkit.memory import plan, shape_of

BASE: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 160,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "vocab_size": 300,
    "max_position_embeddings": 128,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
GPT_BIGCODE: dict[str, Any] = {
    "model_type": "gpt_bigcode",
    "n_embd": 64,
    "n_layer": 2,
    "n_head": 4,
    "vocab_size": 300,
    "n_positions": 128,
}
ESTIMATE = ("estimate", "--model", "config.json")

REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
OPTIONAL = ("num_key_value_heads", "intermediate_size", "head_dim")
"""Optional counts: null means "the default", as transformers writes an unset field."""
BAD_NUMBERS: dict[str, Any] = {
    "zero": 0,
    "negative": -4,
    "float": 4.5,
    "whole-float": 64.0,
    "bool": True,
    "string": "64",
    "huge": 2**40,
    "list": [64],
}


def broken(**changes: Any) -> dict[str, Any]:
    """BASE with ``changes`` applied; a value of ``...`` deletes the key."""
    config = {**BASE, **changes}
    return {key: value for key, value in config.items() if value is not ...}


def estimate_case(id: str, config: Any, *mentions: str, args: tuple[str, ...] = ()) -> Case:
    """`peftkit estimate` of ``config`` written to config.json, with extra ``args``."""
    return Case(id, (*ESTIMATE, *args), mentions, files={"config.json": config})


def number_cases() -> list[Case]:
    """Each count of the config as each kind of wrong value."""
    cases = []
    for field in REQUIRED + OPTIONAL:
        for label, value in BAD_NUMBERS.items():
            config = broken(**{field: value})
            cases.append(estimate_case(f"{field}-{label}", config, field, "config.json"))
    for field in REQUIRED:
        cases.append(estimate_case(f"{field}-null", broken(**{field: None}), field, "None"))
        cases.append(estimate_case(f"{field}-missing", broken(**{field: ...}), field, "missing"))
    return cases


NOT_JSON = '{\n  "model_type": "llama",\n  "hidden_size" 64\n}\n'

FILE_CASES = [
    estimate_case("not-json", NOT_JSON, "config.json", "line 3", "column 17"),
    estimate_case(
        "json-with-comment",
        '{\n  // a comment\n  "model_type": "llama"\n}',
        "config.json",
        "line 2",
    ),
    estimate_case("trailing-comma", json.dumps(BASE)[:-1] + ",}", "config.json", "line 1"),
    estimate_case("a-list", [BASE], "config.json", "a list, not a JSON object"),
    estimate_case("a-string", '"llama"', "config.json", "a string, not a JSON object"),
    estimate_case("a-number", "4096", "config.json", "not a JSON object"),
    estimate_case("null", "null", "config.json", "null, not a JSON object"),
    estimate_case("empty-file", "", "config.json", "is empty"),
    estimate_case("blank-file", "\n  \n", "config.json", "is empty"),
    estimate_case(
        "not-utf8",
        b'{"model_type": "ll\xffama", "hidden_size": 64}',
        "config.json",
        "not UTF-8",
        "0xff",
    ),
    estimate_case("nested-too-deep", "[" * 100_000, "config.json", "cannot be read as JSON"),
    estimate_case(
        "integer-too-long",
        json.dumps(BASE).replace('"hidden_size": 64', '"hidden_size": 1' + "0" * 5000),
        "config.json",
        "cannot be read as JSON",
    ),
    estimate_case(
        "nan-literal",
        json.dumps(BASE).replace('"hidden_size": 64', '"hidden_size": NaN'),
        "hidden_size",
        "not a number JSON allows",
    ),
    estimate_case(
        "infinity-literal",
        json.dumps(BASE).replace('"vocab_size": 300', '"vocab_size": Infinity'),
        "vocab_size",
    ),
    Case(
        "weights-passed-as-config",
        ("estimate", "--model", "model.safetensors"),
        ("model.safetensors", "weights file"),
        files={"model.safetensors": b"\0" * 2**24},
    ),
    Case(
        "folder-without-config",
        ("estimate", "--model", "checkpoint"),
        ("checkpoint", "has no config.json"),
        files={"checkpoint/model.safetensors": b"\0"},
    ),
    Case(
        "config-json-is-a-folder",
        ("estimate", "--model", "config.json"),
        ("config.json", "has no config.json"),
        files={"config.json/notes.txt": "a folder named like a file"},
    ),
    Case("missing-file", ("estimate", "--model", "nope.json"), ("nope.json", "config.json")),
]

RELATION_CASES = [
    estimate_case(
        "heads-do-not-divide-hidden",
        broken(num_attention_heads=6, num_key_value_heads=6, head_dim=...),
        "num_attention_heads",
        "must divide hidden_size (64)",
        '"head_dim"',
    ),
    estimate_case(
        "kv-heads-do-not-divide-heads",
        broken(num_key_value_heads=3),
        "num_key_value_heads",
        "must divide num_attention_heads (4)",
    ),
    estimate_case(
        "more-heads-than-hidden",
        broken(num_attention_heads=128, num_key_value_heads=...),
        "num_attention_heads",
        "hidden_size (64)",
    ),
    estimate_case(
        "every-problem-at-once",
        broken(hidden_size=0, num_hidden_layers="2", vocab_size=None, mlp_bias="no"),
        "4 problem(s)",
        "hidden_size",
        "num_hidden_layers",
        "vocab_size",
        "mlp_bias",
    ),
    estimate_case(
        "gpt-bigcode-positions-negative",
        {**GPT_BIGCODE, "n_positions": -1},
        "n_positions",
    ),
    estimate_case(
        "gpt-bigcode-multi-query-string",
        {**GPT_BIGCODE, "multi_query": "true"},
        "multi_query",
        "true or false",
    ),
]

FLAG_AND_TEXT_CASES = [
    estimate_case("tie-word-embeddings-string", broken(tie_word_embeddings="yes"), "tie_word"),
    estimate_case("attention-bias-number", broken(attention_bias=1), "attention_bias"),
    estimate_case("mlp-bias-list", broken(mlp_bias=[False]), "mlp_bias"),
    estimate_case("torch-dtype-number", broken(torch_dtype=16), "torch_dtype"),
]

FAMILY_CASES = [
    estimate_case("model-type-unsupported", broken(model_type="t5"), "'t5'", "supported"),
    estimate_case("model-type-missing", broken(model_type=...), "model_type", "(missing)"),
    estimate_case("model-type-number", broken(model_type=7), "model_type", "7"),
    estimate_case("model-type-capitalised", broken(model_type="Llama"), '"model_type": "llama"'),
    estimate_case(
        "multimodal-wrapper",
        {"model_type": "gemma3", "text_config": broken(model_type="gemma3_text")},
        "gemma3",
        "supported",
    ),
]

PHI3 = broken(model_type="phi3", num_key_value_heads=4)

OPTION_CASES = [
    estimate_case("gpu-memory-nan", BASE, "--gpu-memory", "nan", args=("--gpu-memory", "nan")),
    estimate_case("gpu-memory-inf", BASE, "--gpu-memory", "inf", args=("--gpu-memory", "inf")),
    estimate_case("gpu-memory-negative", BASE, "--gpu-memory", args=("--gpu-memory", "-1")),
    estimate_case("gpu-memory-zero", BASE, "--gpu-memory", args=("--gpu-memory", "0")),
    estimate_case("gpu-memory-text", BASE, "--gpu-memory", args=("--gpu-memory", "lots")),
    estimate_case(
        "targets-match-nothing",
        BASE,
        "nope",
        "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj",
        args=("--targets", "nope"),
    ),
    estimate_case(
        "targets-one-of-two-unknown",
        BASE,
        "v_prj",
        "--targets q_proj,v_proj",
        args=("--targets", "q_proj, v_prj"),
    ),
    estimate_case("targets-empty-item", BASE, "empty", args=("--targets", "q_proj,,v_proj")),
    estimate_case("targets-empty", BASE, "empty", args=("--targets", "")),
    estimate_case(
        "targets-all-linear-and-names",
        BASE,
        "all-linear",
        args=("--targets", "all-linear,q_proj"),
    ),
    estimate_case(
        "phi3-separate-projections",
        PHI3,
        "qkv_proj",
        "--targets qkv_proj",
        args=("--targets", "q_proj,v_proj"),
    ),
    estimate_case(
        "phi3-separate-mlp-projections",
        PHI3,
        "gate_up_proj",
        args=("--targets", "gate_proj,up_proj,down_proj"),
    ),
    estimate_case("method-unknown", BASE, "method", "nope", args=("--method", "nope")),
    estimate_case("batch-size-zero", BASE, "--batch-size", args=("--batch-size", "0")),
    estimate_case("seq-len-too-short", BASE, "--seq-len", args=("--seq-len", "5")),
    estimate_case("rank-zero", BASE, "--r", args=("--r", "0")),
]

PLAN_CONFIG_CASES = [
    Case(
        f"plan-{recipe}-{case.id}",
        ("plan", recipe, *case.args[1:]),
        case.mentions,
        files=case.files,
    )
    for recipe in ("json-output", "qlora-budget")
    for case in [
        *FILE_CASES[:3],
        *FAMILY_CASES[:2],
        *RELATION_CASES[:4],
        estimate_case("vocab-size-string", broken(vocab_size="lots"), "vocab_size"),
    ]
]
"""The config problems through `peftkit plan`, with a recipe that checks a verdict and with
the one whose planner searches settings."""

PLAN_CASES = [
    Case(
        "plan-target-matches-nothing",
        ("plan", "json-output", "--model", "config.json", "lora.target_modules=[nope]"),
        ("nope", "lora.target_modules=all-linear"),
        files={"config.json": BASE},
    ),
    Case(
        "plan-budget-phi3-separate-projections",
        ("plan", "qlora-budget", "--model", "config.json", "lora.target_modules=[q_proj,o_proj]"),
        ("qkv_proj", "lora.target_modules=[qkv_proj,o_proj]"),
        files={"config.json": PHI3},
    ),
    Case(
        "plan-gpu-memory-nan",
        ("plan", "qlora-budget", "--model", "config.json", "--gpu-memory", "nan"),
        ("--gpu-memory", "nan"),
        files={"config.json": BASE},
    ),
    Case(
        "plan-gpu-memory-inf",
        ("plan", "json-output", "--model", "config.json", "--gpu-memory", "inf"),
        ("--gpu-memory", "inf"),
        files={"config.json": BASE},
    ),
    Case(
        "plan-gpu-memory-zero",
        ("plan", "qlora-budget", "--model", "config.json", "--gpu-memory", "0"),
        ("--gpu-memory",),
        files={"config.json": BASE},
    ),
    Case(
        "plan-gpus-zero",
        ("plan", "qlora-budget", "--model", "config.json", "--gpus", "0"),
        ("--gpus", "got 0"),
        files={"config.json": BASE},
    ),
    Case(
        "plan-gpus-negative-and-memory-negative",
        ("plan", "qlora-budget", "--model", "config.json", "--gpus", "-2", "--gpu-memory", "-8"),
        ("2 problem(s)", "--gpus", "--gpu-memory"),
        files={"config.json": BASE},
    ),
    Case(
        "plan-gpus-too-many",
        ("plan", "qlora-budget", "--model", "config.json", "--gpus", "100000"),
        ("--gpus", "1024"),
        files={"config.json": BASE},
    ),
]

CASES = [
    *number_cases(),
    *FILE_CASES,
    *RELATION_CASES,
    *FLAG_AND_TEXT_CASES,
    *FAMILY_CASES,
    *OPTION_CASES,
    *PLAN_CONFIG_CASES,
    *PLAN_CASES,
]


@pytest.mark.parametrize("case", [case.param() for case in CASES])
def test_bad_config_or_option_is_a_user_error(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> None:
    run_case(case, tmp_path, monkeypatch, tiny_model_dir)


def test_the_base_config_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """So that each case fails for the one thing it breaks."""
    (tmp_path / "config.json").write_text(json.dumps(BASE))
    (tmp_path / "bigcode.json").write_text(json.dumps(GPT_BIGCODE))
    monkeypatch.chdir(tmp_path)
    for model in ("config.json", "bigcode.json"):
        code, out, err = run_main(monkeypatch, "estimate", "--model", model, "--json")
        assert code == 0, err
        assert json.loads(out)["total_params"] > 0
    code, _, err = run_main(monkeypatch, "plan", "qlora-budget", "--model", "config.json")
    assert code == 0, err


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"num_key_value_heads": None, "head_dim": None}, "null: the default, as transformers"),
        ({"intermediate_size": ...}, "absent: 4 x hidden"),
        ({"torch_dtype": ..., "dtype": "float16"}, "the newer name of torch_dtype"),
        ({"hidden_size": ..., "d_model": 64}, "another family's name for the width"),
        ({"tie_word_embeddings": None}, "null: the family's default"),
    ],
)
def test_what_transformers_accepts_is_accepted(
    changes: dict[str, Any], why: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.json").write_text(json.dumps(broken(**changes)))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(monkeypatch, *ESTIMATE)
    assert code == 0, f"{why}: {err}"


def test_python_callers_get_every_config_problem_with_its_field() -> None:
    with pytest.raises(ProblemsError) as info:
        shape_of(broken(hidden_size=64.0, num_hidden_layers=..., num_key_value_heads=3))
    found = {problem.path: problem.value for problem in info.value.problems}
    assert found == {"hidden_size": 64.0, "num_hidden_layers": MISSING, "num_key_value_heads": 3}


@pytest.mark.parametrize(
    ("memory", "gpus"),
    [(math.nan, None), (math.inf, None), (-1.0, None), (0, None), ("24", None), (True, None)]
    + [(None, 0), (None, -1), (None, 1.5), (None, True), (None, 10**6)],
)
def test_python_callers_get_the_budget_checks(memory: Any, gpus: Any) -> None:
    budget = recipes.load("qlora-budget")
    with pytest.raises(ProblemsError, match="in the GPU budget"):
        budget.plan(BASE, gpu_memory_gb=memory, gpus=gpus)
    with pytest.raises(ProblemsError, match="in the GPU budget"):
        plan(recipes.load("json-output"), shape_of(BASE), memory, gpus)


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 35
    assert len({case.id for case in CASES}) == len(CASES)
