"""`peftkit estimate` and `plan` on configs that say less, or more, than the arithmetic used to
read: fields left to the architecture's defaults, checkpoints stored quantized already, GPU facts
that contradict each other, a context stretched by rope scaling, a context shorter than the
default sequence.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from corpus import Case, run_case
from test_config_cases import BASE, broken
from train_helpers import run_main

from peftkit.memory import load_shape
from peftkit.memory.shapes import ARCHITECTURE_DEFAULTS

GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 128}
AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128}
BNB_4BIT = {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}
ROPE = {"max_position_embeddings": 4096, "rope_scaling": {"type": "linear", "factor": 4.0}}


def config(**changes: Any) -> dict[str, dict[str, Any]]:
    return {"config.json": broken(**changes)}


CASES = [
    Case("estimate-a-gptq-checkpoint", ("estimate", "--model", "config.json"),
         ("quantization_config", "gptq, 4-bit", "16-bit model it was quantized from"),
         config(quantization_config=GPTQ)),
    Case("plan-an-awq-checkpoint", ("plan", "qlora-budget", "--model", "config.json"),
         ("quantization_config", "awq, 4-bit", "method qlora"), config(quantization_config=AWQ)),
    Case("estimate-full-on-a-4-bit-checkpoint",
         ("estimate", "--model", "config.json", "--method", "full"),
         ("bitsandbytes, 4-bit", "full fine-tuning cannot train quantized weights"),
         config(quantization_config=BNB_4BIT)),
    Case("plan-a-t4-with-80-gb",
         ("plan", "qlora-budget", "--model", "config.json", "budget.gpu=T4", "--gpu-memory", "80"),
         ("a T4 has 16 GB, not 80", "--gpu-memory 16", "budget.gpu=A100-80GB"), config()),
    Case("plan-a-t4-with-80-gb-in-the-recipe",
         ("plan", "qlora-budget", "--model", "config.json", "budget.gpu=T4",
          "budget.gpu_memory_gb=80"),
         ("a T4 has 16 GB, not 80", "budget.gpu_memory_gb=16"), config()),
    Case("estimate-beyond-the-rope-scaled-context",
         ("estimate", "--model", "config.json", "--seq-len", "32768"),
         ("--seq-len: got 32768", "16384 with its rope_scaling linear, factor 4",
          "--seq-len 16384"), config(**ROPE)),
    Case("plan-beyond-the-rope-scaled-context",
         ("plan", "json-output", "--model", "config.json", "training.max_length=20000"),
         ("training.max_length: got 20000", "training.max_length=16384"), config(**ROPE)),
]  # fmt: skip


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_an_estimate_that_would_mislead(case: Case, tmp_path, monkeypatch, tiny_model_dir):
    run_case(case, tmp_path, monkeypatch, tiny_model_dir)


def _estimate(tmp_path: Path, monkeypatch, configured: dict[str, Any], *args: str) -> dict:
    (tmp_path / "config.json").write_text(json.dumps(configured))
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(monkeypatch, "estimate", "--model", "config.json", *args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("family", sorted(ARCHITECTURE_DEFAULTS))
def test_the_defaults_are_those_of_transformers_config_classes(family: str) -> None:
    """Each default stands for what ``AutoConfig.for_model(family)`` sets when config.json
    leaves the field out."""
    from transformers import AutoConfig

    made = AutoConfig.for_model(family)
    for key, value in ARCHITECTURE_DEFAULTS[family].items():
        assert getattr(made, key) == value, (family, key)
    if family in ("gpt2", "gpt_bigcode"):
        assert made.n_inner is None  # transformers then makes the MLP 4 x hidden


@pytest.mark.parametrize(
    "changes",
    [
        {"intermediate_size": ...},
        {"model_type": "mistral", "num_key_value_heads": ..., "num_attention_heads": 8},
        {"model_type": "gemma", "head_dim": ..., "tie_word_embeddings": True},
    ],
    ids=["llama-intermediate", "mistral-kv-heads", "gemma-head-dim"],
)
def test_a_field_left_out_is_sized_as_transformers_builds_it(
    changes: dict[str, Any], tmp_path: Path, monkeypatch
) -> None:
    """The parameters the estimate counts equal those of the model transformers builds from
    the same config.json (on the meta device), and the summary names each default used."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    found = _estimate(tmp_path, monkeypatch, broken(**changes))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tmp_path))
    assert found["total_params"] == sum(p.numel() for p in model.parameters())
    left_out = next(key for key, value in changes.items() if value is ...)
    assert any(f"{left_out}=" in reason and "default" in reason for reason in found["reasons"])


def test_a_null_width_is_the_architecture_s_default(tmp_path: Path, monkeypatch) -> None:
    """``intermediate_size: null`` (an unset field) is sized as a missing one, not as 4 x
    hidden."""
    missing = _estimate(tmp_path, monkeypatch, broken(intermediate_size=...))
    null = _estimate(tmp_path, monkeypatch, broken(intermediate_size=None))
    assert null["total_params"] == missing["total_params"]
    four_times = _estimate(tmp_path, monkeypatch, broken(intermediate_size=4 * BASE["hidden_size"]))
    assert null["total_params"] != four_times["total_params"]


def test_a_4_bit_checkpoint_is_costed_at_4_bits(tmp_path: Path, monkeypatch) -> None:
    """A bitsandbytes 4-bit checkpoint loads 4-bit whatever the method: its weights cost what
    QLoRA's do on the 16-bit model, not 16 bits."""
    seven_b = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
               "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 128,
               "vocab_size": 32000}  # fmt: skip
    qlora = _estimate(tmp_path, monkeypatch, broken(**seven_b), "--method", "qlora")
    stored = _estimate(tmp_path, monkeypatch, broken(**seven_b, quantization_config=BNB_4BIT))
    sixteen = _estimate(tmp_path, monkeypatch, broken(**seven_b))
    assert stored["weights_gb"] == qlora["weights_gb"] < sixteen["weights_gb"] / 3
    assert any("stored quantized (bitsandbytes, 4-bit)" in r for r in stored["reasons"])


def test_the_default_sequence_is_the_context_when_shorter(tmp_path: Path, monkeypatch) -> None:
    """On a 512-position model, `estimate` without --seq-len estimates 512 tokens (its default
    of 1024 used to be refused) and says so."""
    found = _estimate(tmp_path, monkeypatch, broken(max_position_embeddings=512))
    assert found["settings"]["max_length"] == 512
    assert "--seq-len 512: the model's context" in found["reasons"][0]
    longer = _estimate(tmp_path, monkeypatch, broken())
    assert longer["settings"]["max_length"] == 1024


@pytest.mark.parametrize(
    ("command", "length"),
    [
        (("estimate",), ("--seq-len", "8192")),
        (("plan", "json-output"), ("training.max_length=8192",)),
    ],
)
def test_a_length_within_rope_scaling_is_taken_with_a_notice(
    command: tuple[str, ...], length: tuple[str, ...], tmp_path: Path, monkeypatch
) -> None:
    """Llama-2-7B trained at 8k tokens with linear rope scaling: beyond max_position_embeddings,
    within what the scaling reaches."""
    (tmp_path / "config.json").write_text(json.dumps(broken(**ROPE)))
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(monkeypatch, *command, "--model", "config.json", *length, "--json")
    assert code == 0, err
    reasons = " ".join(json.loads(out)["reasons"])
    assert "8192 is beyond max_position_embeddings (4096)" in reasons
    assert "rope_scaling linear, factor 4, which reaches 16384" in reasons


def test_train_takes_the_lengths_rope_scaling_allows(tmp_path: Path, tiny_model_dir: Path) -> None:
    """`peftkit train` and `check` read the model's limit the same way (loading.check_model):
    the tiny model's 512 positions with linear scaling of factor 2 take 1024 tokens, not 2048."""
    from train_helpers import load_recipe

    from peftkit.core.errors import RecipeError
    from peftkit.run.loading import check_model

    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    settings = json.loads((model / "config.json").read_text())
    settings["rope_scaling"] = {"type": "linear", "factor": 2.0}
    (model / "config.json").write_text(json.dumps(settings))
    recipe = load_recipe("json-output", [f"model.name={json.dumps(str(model))}"])
    check_model(recipe, 1024)
    with pytest.raises(RecipeError, match=r"at most 1024 tokens \(512, 1024 with its rope"):
        check_model(recipe, 2048)
    assert load_shape(model).scaled_context == 1024
    assert BASE["max_position_embeddings"] == 4096
