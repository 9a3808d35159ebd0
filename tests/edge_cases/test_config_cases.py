"""Bad model configs, GPU budgets and LoRA targets for `peftkit estimate` and `peftkit plan`:
each must end as one plain error that names what is wrong (exit 2, no traceback), never as a
crash in the arithmetic or a confident estimate of nonsense.

Every config case starts from the valid Llama config ``BASE`` and breaks one thing, so that the
message can only be about that thing.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from corpus import Case, run_case
from fix_reader import applied as with_fix
from train_helpers import run_main

from peftkit import recipes
from peftkit.core.errors import MISSING, ProblemsError
from peftkit.memory import Setup, estimate, shape_of
from peftkit.memory.config_file import WEIGHT_SUFFIXES

BASE: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 160,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "vocab_size": 300,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
GPT_BIGCODE: dict[str, Any] = {
    "model_type": "gpt_bigcode",
    "n_embd": 64,
    "n_layer": 2,
    "n_head": 4,
    "vocab_size": 300,
    "n_positions": 2048,
}
GPT2 = {**GPT_BIGCODE, "model_type": "gpt2", "n_positions": 256}
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
    *(
        Case(
            f"small-weights-file{suffix}",
            ("estimate", "--model", f"model{suffix}"),
            (f"model{suffix}", "is a weights file", "config.json or its folder"),
            files={f"model{suffix}": b"\x93NUMPY\xff\xfe" + bytes(range(256))},
        )
        for suffix in WEIGHT_SUFFIXES
    ),
    Case(
        "weights-file-upper-case-suffix",
        ("plan", "json-output", "--model", "MODEL.SAFETENSORS"),
        ("MODEL.SAFETENSORS", "is a weights file"),
        files={"MODEL.SAFETENSORS": b"\xff" * 64},
    ),
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
    estimate_case(
        "method-unknown",
        BASE,
        "--method",
        "'nope' is not one of 'full', 'lora', 'qlora'",
        args=("--method", "nope"),
    ),
    estimate_case(
        "optimizer-unknown",
        BASE,
        "--optimizer",
        "'adam'",
        "'paged_adamw_8bit'",
        args=("--optimizer", "adam"),
    ),
    estimate_case(
        "seq-len-beyond-context",
        broken(max_position_embeddings=256),
        "--seq-len: got 512",
        "max_position_embeddings in its config",
        "fix:  --seq-len 256",
        args=("--seq-len", "512"),
    ),
    estimate_case(
        "seq-len-beyond-gpt2-positions",
        GPT2,
        "--seq-len: got 1024",
        "256 tokens (n_positions in its config)",
        "--seq-len 256",
        args=("--seq-len", "1024"),  # the default is the context when that is shorter
    ),
    estimate_case(
        "context-shorter-than-any-sequence",
        broken(max_position_embeddings=8),
        "--seq-len: got 16",
        "a context of at least 16 tokens",
        args=("--seq-len", "16"),
    ),
    estimate_case(
        "targets-output-head",
        GPT2,
        "lm_head is the output head",
        "lora.modules_to_save",
        "c_attn, c_proj, c_fc",
        "--targets all-linear",
        args=("--targets", "lm_head", "--seq-len", "256"),
    ),
    estimate_case(
        "targets-embedding-among-layers",
        BASE,
        "embed_tokens is the token embedding",
        "--targets q_proj,v_proj",
        args=("--targets", "q_proj,embed_tokens,v_proj"),
    ),
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
        "plan-max-length-beyond-gpt2-positions",
        ("plan", "json-output", "--model", "config.json"),
        ("training.max_length: got 512", "n_positions", "256", "training.max_length=256"),
        files={"config.json": GPT2},
    ),
    Case(
        "plan-budget-max-length-beyond-context",
        ("plan", "qlora-budget", "--model", "config.json", "--gpu-memory", "24"),
        ("training.max_length: got 1024", "max_position_embeddings", "training.max_length=512"),
        files={"config.json": broken(max_position_embeddings=512)},
    ),
    Case(
        "plan-weights-file-beside-its-config",
        ("plan", "json-output", "--model", "gpt2/model.safetensors"),
        ("is a weights file (.safetensors)", "--model gpt2"),
        files={"gpt2/model.safetensors": b"\xff" * 64, "gpt2/config.json": GPT_BIGCODE},
    ),
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
        recipes.load("json-output").plan(shape_of(BASE), memory, gpus)


LLAMA_7B = broken(
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    head_dim=128,
    vocab_size=32000,
)
LLAMA_70B = broken(
    hidden_size=8192,
    intermediate_size=28672,
    num_hidden_layers=80,
    num_attention_heads=64,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=32000,
)


def _in(folder: Path, monkeypatch: pytest.MonkeyPatch, **configs: dict[str, Any]) -> None:
    for name, config in configs.items():
        (folder / f"{name}.json").write_text(json.dumps(config))
    monkeypatch.chdir(folder)


def _found(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in {text}"
    return found.group(1)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--method", "nope"),
        ("--optimizer", "adam"),
        ("--batch-size", "0"),
        ("--seq-len", "5"),
        ("--r", "0"),
    ],
)
def test_estimate_names_its_options_never_recipe_fields(
    option: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _in(tmp_path, monkeypatch, config=BASE)
    code, _, err = run_main(monkeypatch, *ESTIMATE, option, value)
    assert code == 2 and option in err, err
    for recipe_word in ("in the recipe", "training.", "lora.r", "learning_rate"):
        assert recipe_word not in err, err


def test_estimate_full_fine_tuning_warns_about_nothing_it_has_no_option_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _in(tmp_path, monkeypatch, config=BASE)
    code, out, err = run_main(monkeypatch, *ESTIMATE, "--method", "full", "--json")
    assert code == 0, err
    assert "warning" not in err and json.loads(out)["trainable_params"] > 0


def test_estimate_loads_the_weights_in_the_checkpoint_dtype_as_training_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {**LLAMA_7B, "torch_dtype": "float32"}  # 1 GB more than bf16 embeddings
    _in(tmp_path, monkeypatch, config=config)
    args = ("--method", "qlora", "--r", "8", "--batch-size", "2", "--seq-len", "256")
    code, out, err = run_main(monkeypatch, *ESTIMATE, *args, "--optimizer", "adamw_8bit", "--json")
    assert code == 0, err
    setup = Setup(
        method="qlora",
        bits=4,
        r=8,
        batch_size=2,
        seq_len=256,
        optimizer="adamw_8bit",
        weights_dtype="float32",
    )
    assert json.loads(out)["total_gb"] == round(estimate(shape_of(config), setup).total / 1e9, 3)


def test_every_fix_for_a_run_that_does_not_fit_works_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _in(tmp_path, monkeypatch, llama=LLAMA_7B)
    model = ("--model", "llama.json")
    runs = {
        "estimate": ("estimate", *model, "--batch-size", "4", "--gpu-memory", "20"),
        "plan": ("plan", "json-output", *model, "--gpu-memory", "20"),
    }
    for name, args in runs.items():
        code, out, _ = run_main(monkeypatch, *args, "--json")
        assert code == 1, name
        fix = json.loads(out)["reasons"][-1]
        settings = _found(r"^Fix: (.+?), or a GPU", fix)
        memory = _found(r"\(--gpu-memory (\d+)\)", fix)
        for applied in (shlex.split(settings), ["--gpu-memory", memory]):
            code, out, err = run_main(monkeypatch, *with_fix(args, applied), "--json")
            assert code == 0, f"{name} {applied}: {err}"
            assert json.loads(out)["fits"] is True


@pytest.mark.parametrize(
    ("budget", "memory_fix"),
    [(("--gpu-memory", "8"), "--gpu-memory"), (("budget.gpu=T4",), "budget.gpu")],
)
def test_every_fix_when_nothing_fits_works_as_written(
    budget: tuple[str, ...], memory_fix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --gpu-memory outranks budget.gpu_memory_gb, so the fix names the one in use; with a
    GPU named, the fix names a larger GPU (more memory on a T4 would contradict it); FSDP on a
    4-bit base stores the weights in the compute dtype by itself (storage_dtype: auto)."""
    _in(tmp_path, monkeypatch, llama=LLAMA_70B)
    args = ("plan", "qlora-budget", "--model", "llama.json", *budget)
    code, _, err = run_main(monkeypatch, *args)
    assert code == 2 and "nothing fits" in err, err
    assert "gpu_memory_gb=24" not in err and "(gpu_memory_gb" not in err
    memory = _found(rf"\(({re.escape(memory_fix)}[ =][\w.-]+)\)", err)
    sharded = _found(r"\((--gpus \d+ distributed\.strategy=fsdp[^)]*)\)", err)
    assert "storage_dtype" not in sharded
    for applied in (memory, sharded):
        code, out, err = run_main(monkeypatch, *with_fix(args, shlex.split(applied)), "--json")
        assert code == 0, f"{applied}: {err}"
        assert json.loads(out)["fits"] is True


def test_the_budget_checks_name_working_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _in(tmp_path, monkeypatch, config=BASE)
    code, _, err = run_main(
        monkeypatch, "plan", "qlora-budget", "--model", "config.json", "--gpu-memory", "0"
    )
    assert code == 2 and "--gpu-memory 24" in err and "gpu_memory_gb=" not in err, err
    code, _, err = run_main(
        monkeypatch, "plan", "qlora-budget", "--model", "config.json", "--gpus", "0"
    )
    assert code == 2 and "--gpus 1" in err and "(gpus=" not in err, err


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        (("budget.usd=5", "budget.dataset_tokens=10000000"), ("budget.gpu",)),
        (("budget.usd=5", "budget.gpu_memory_gb=24"), ("budget.gpu", "budget.dataset_tokens")),
        (("budget.gpu=L4", "budget.gpu_hourly_usd=0.5"), ("budget.dataset_tokens",)),
    ],
    ids=["no-gpu", "no-gpu-no-tokens", "no-tokens"],
)
def test_cost_settings_without_what_the_cost_needs_say_so_with_a_working_fix(
    given: tuple[str, ...],
    missing: tuple[str, ...],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _in(tmp_path, monkeypatch, llama=LLAMA_7B)
    args = ("plan", "qlora-budget", "--model", "llama.json", *given, "--json")
    code, out, err = run_main(monkeypatch, *args)
    assert code == 0, err
    [reason] = [r for r in json.loads(out)["reasons"] if "cost not estimated" in r]
    assert all(f"{name} (" in reason for name in missing), reason
    if "budget.usd=5" in given:
        assert "budget.usd $5.00 cannot be checked" in reason
    fix = _found(r"Fix: (.+?), with your", reason)
    code, out, err = run_main(monkeypatch, *args, *shlex.split(fix))
    assert code == 0, err
    numbers = json.loads(out)
    assert numbers["cost"] is not None and numbers["fits"] is True
    assert not any("cost not estimated" in r for r in numbers["reasons"])


def test_no_cost_settings_no_cost_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _in(tmp_path, monkeypatch, llama=LLAMA_7B)
    code, out, err = run_main(
        monkeypatch, "plan", "qlora-budget", "--model", "llama.json", "budget.gpu=L4", "--json"
    )
    assert code == 0, err
    assert not any("cost not estimated" in reason for reason in json.loads(out)["reasons"])


def test_the_epochs_a_budget_pays_for_are_within_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _in(tmp_path, monkeypatch, llama=LLAMA_7B)
    budget = ("budget.gpu=L4", "budget.dataset_tokens=10000000", "budget.usd=0.5")
    args = ("plan", "qlora-budget", "--model", "llama.json", *budget, "--json")
    code, out, err = run_main(monkeypatch, *args)
    assert code == 0, err
    [reason] = [r for r in json.loads(out)["reasons"] if r.startswith("over budget")]
    for fix in (_found(r"(training\.epochs=\S+)", reason), _found(r"(budget\.usd=\d+)", reason)):
        code, out, err = run_main(monkeypatch, *with_fix(args, [fix]))
        assert code == 0, err
        assert not any(r.startswith("over budget") for r in json.loads(out)["reasons"]), fix


def test_modules_trained_in_full_are_said_to_be_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _in(tmp_path, monkeypatch, config=BASE)
    code, out, err = run_main(
        monkeypatch, "plan", "json-output", "--model", "config.json",
        "lora.modules_to_save=[lm_head]", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert any(
        "lora.modules_to_save (lm_head) is not counted" in r for r in json.loads(out)["reasons"]
    )


@pytest.mark.parametrize(
    ("command", "fix"),
    [
        (("plan", "json-output", "--model", "gpt2.json"), r"fix:  (training\.max_length=\d+)"),
        (("estimate", "--model", "gpt2.json", "--seq-len", "512"), r"fix:  (--seq-len \d+)"),
        (
            ("estimate", "--model", "gpt2/model.bin"),
            r"Fix: pass the model's folder, (--model \S+),",
        ),
    ],
    ids=["plan-context", "estimate-context", "weights-file"],
)
def test_the_context_and_weights_file_fixes_work_as_written(
    command: tuple[str, ...], fix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _in(tmp_path, monkeypatch, gpt2=GPT2)
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps(broken()))
    (tmp_path / "gpt2" / "model.bin").write_bytes(b"\x80\x02" + bytes(300))
    code, _, err = run_main(monkeypatch, *command)
    assert code == 2 and "UTF-8" not in err, err
    applied = shlex.split(_found(fix, err))
    code, _, err = run_main(monkeypatch, *with_fix(command, applied))
    assert code == 0, err
