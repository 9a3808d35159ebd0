"""LoRA target lists: parsed from the command line, checked against a model's module names with
PEFT's matching rule, and refused with a fix that works when applied exactly as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from train_helpers import run_main

from peftkit import recipes
from peftkit.core.errors import ProblemsError, RecipeError
from peftkit.core.targets import check_targets, matches, parse_target_list
from peftkit.memory import shape_of

LLAMA = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 160,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 300,
}
PHI3 = {**LLAMA, "model_type": "phi3"}
GPT2 = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 300}
GPT2_MODULES = [
    "transformer.wte",
    "transformer.wpe",
    *(f"transformer.h.{i}.{name}" for i in range(2) for name in ("attn.c_attn", "mlp.c_fc")),
    "lm_head",
]
"""What a loaded GPT-2 offers LoRA: its Conv1D layers, its embeddings and its output head."""
PHI3_NAMES = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
FULL_NAMES = [
    f"model.layers.{i}.{block}.{name}"
    for i in range(2)
    for block, names in {"self_attn": ["q_proj", "v_proj"], "mlp": ["down_proj"]}.items()
    for name in names
]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("q_proj,v_proj", ("q_proj", "v_proj")),
        ("q_proj, v_proj", ("q_proj", "v_proj")),
        ("  q_proj ,\tv_proj  ", ("q_proj", "v_proj")),
        ("self_attn.q_proj", ("self_attn.q_proj",)),
    ],
)
def test_parse_target_list_drops_the_spaces_around_names(text, names):
    assert parse_target_list(text) == names


@pytest.mark.parametrize("text", ["q_proj,,v_proj", "q_proj,", ",q_proj", "", " , "])
def test_parse_target_list_refuses_empty_names(text):
    with pytest.raises(RecipeError, match="empty module name"):
        parse_target_list(text)


def test_all_linear_cannot_be_combined_with_names():
    with pytest.raises(RecipeError, match="--targets all-linear"):
        parse_target_list("all-linear, q_proj")


@pytest.mark.parametrize(
    ("target", "name", "expected"),
    [
        ("q_proj", "q_proj", True),
        ("q_proj", "model.layers.0.self_attn.q_proj", True),
        ("self_attn.q_proj", "model.layers.0.self_attn.q_proj", True),
        ("layers.0.self_attn.q_proj", "model.layers.0.self_attn.q_proj", True),
        ("attn.q_proj", "model.layers.0.self_attn.q_proj", False),
        ("mlp.q_proj", "model.layers.0.self_attn.q_proj", False),
        ("proj", "model.layers.0.self_attn.q_proj", False),
        ("self_attn.q_proj", "q_proj", True),
        ("self_attn.q_proj", "k_proj", False),
    ],
)
def test_matches_is_peft_rule_and_compares_last_components_of_short_names(target, name, expected):
    assert matches(target, name) is expected


@pytest.mark.parametrize(
    ("targets", "available"),
    [
        ("all-linear", []),
        (("q_proj", "v_proj"), ["q_proj", "k_proj", "v_proj"]),
        (("self_attn.q_proj",), ["q_proj", "v_proj"]),
        (("q_proj", "mlp.down_proj"), FULL_NAMES),
        (["layers.1.self_attn.v_proj"], FULL_NAMES),
    ],
)
def test_check_targets_passes_names_that_exist(targets, available):
    """Accepted as they are; and the same list with one unknown name added is refused naming
    that name alone, so the pass comes from the names matching, not from a check that looks
    at nothing."""
    assert check_targets(targets, available, "the model") is None
    if targets == "all-linear":
        return
    with pytest.raises(ProblemsError) as info:
        check_targets([*targets, "nope_proj"], available, "the model")
    [problem] = info.value.problems
    assert problem.rule.startswith("nope_proj matches no layer of the model"), problem.rule


def test_check_targets_names_the_unknown_and_lists_the_available():
    with pytest.raises(ProblemsError) as info:
        check_targets(("q_proj", "nope", "mlp.q_proj"), FULL_NAMES, "the test model")
    [problem] = info.value.problems
    assert problem.path == "lora.target_modules"
    assert problem.rule.startswith("nope, mlp.q_proj match no layer of the test model")
    assert "whose linear layers are q_proj, v_proj, down_proj" in problem.rule
    assert "--targets q_proj " in problem.fix  # what remains once the unknown are dropped


def test_the_listed_layers_are_the_linear_ones_never_the_embeddings_or_the_head():
    with pytest.raises(ProblemsError) as info:
        check_targets(("c_atn",), GPT2_MODULES, "the model /models/gpt2")
    [problem] = info.value.problems
    assert "c_atn matches no layer of the model /models/gpt2" in problem.rule
    assert "whose linear layers are c_attn, c_fc" in problem.rule
    assert "wte" not in str(info.value) and "lm_head" not in str(info.value)
    check_targets(("lm_head", "wte"), GPT2_MODULES, "the model")  # a loaded model has them


def test_modules_to_save_are_checked_against_every_module_with_their_own_fix():
    """Modules trained in full are usually the head or the embeddings, so those are offered."""
    check_targets(("lm_head", "wte"), GPT2_MODULES, "the model", "lora.modules_to_save")
    with pytest.raises(ProblemsError) as info:
        check_targets(("lm_haed",), GPT2_MODULES, "the model /m", "lora.modules_to_save")
    [problem] = info.value.problems
    assert problem.path == "lora.modules_to_save"
    assert "whose modules are wte, wpe, c_attn, c_fc, lm_head" in problem.rule
    assert problem.fix.startswith("save lm_head: lora.modules_to_save=[lm_head] ")
    assert "--targets" not in problem.fix


@pytest.mark.parametrize(
    ("config", "target", "kind"),
    [
        (GPT2, "lm_head", "the output head"),
        (GPT2, "wte", "the token embedding"),
        (LLAMA, "embed_tokens", "the token embedding"),
        (LLAMA, "model.embed_tokens", "the token embedding"),
    ],
)
def test_the_estimate_refuses_the_head_and_embeddings_saying_why(config, target, kind):
    with pytest.raises(ProblemsError) as info:
        shape_of(config).targets(("q_proj" if config is LLAMA else "c_attn", target))
    message = str(info.value)
    assert f"{target} is {kind}" in message
    assert "all-linear" in message and "lora.modules_to_save" in message
    assert "wte, " not in message.split("linear layers are")[1].split(";")[0]


def test_a_target_string_other_than_all_linear_is_refused():
    with pytest.raises(RecipeError, match=r"lora.target_modules=\[q_proj\]"):
        check_targets("q_proj", ["q_proj"], "the model")


def test_phi3_fused_projections_are_named_with_the_fix():
    with pytest.raises(ProblemsError) as info:
        check_targets(("q_proj", "v_proj", "o_proj", "up_proj"), PHI3_NAMES, "the phi3 model")
    message = str(info.value)
    assert "q_proj, v_proj, up_proj match no layer of the phi3 model" in message
    assert "fuses q_proj, k_proj and v_proj into one qkv_proj" in message
    assert "fuses gate_proj and up_proj into one gate_up_proj" in message
    assert "--targets qkv_proj,o_proj,gate_up_proj " in message
    assert "lora.target_modules=[qkv_proj,o_proj,gate_up_proj]" in message


def test_the_estimate_refuses_targets_and_counts_dotted_ones_like_short_ones():
    shape = shape_of(LLAMA)
    assert shape.targets(("self_attn.q_proj",)) == shape.targets(("q_proj",))
    assert len(shape.targets(("q_proj",))) == LLAMA["num_hidden_layers"]
    with pytest.raises(ProblemsError, match="qkv_proj"):
        shape_of(PHI3).targets(("q_proj", "v_proj"))


def _fix(message: str, pattern: str) -> str:
    found = re.search(pattern, message)
    assert found, f"{pattern!r} not in {message}"
    return found.group(0)


@pytest.mark.parametrize(
    ("config", "given"),
    [
        (PHI3, "q_proj,v_proj"),
        (PHI3, "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"),
        (LLAMA, "q_prj,v_proj"),
        (LLAMA, "nope"),
        (GPT2, "wte"),
        (LLAMA, "q_proj,embed_tokens"),
    ],
    ids=[
        "phi3-attention",
        "phi3-every-separate-name",
        "llama-typo",
        "llama-unknown",
        "gpt2-embedding",
        "llama-embedding",
    ],
)
def test_the_suggested_fix_works_as_written(
    config, given, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Each of the three spellings of the fix, pasted where it belongs, gives a run that plans."""
    (tmp_path / "config.json").write_text(json.dumps(config))
    monkeypatch.chdir(tmp_path)
    model = ("--model", "config.json")

    code, _, err = run_main(monkeypatch, "estimate", *model, "--targets", given)
    assert code == 2, err
    option = _fix(err, r"--targets \S+")
    code, _, err = run_main(monkeypatch, "estimate", *model, *option.split(" "))
    assert code == 0, err

    override = f"lora.target_modules=[{given}]"
    code, _, err = run_main(monkeypatch, "plan", "json-output", *model, override)
    assert code == 2, err
    fixed = _fix(err, r"lora\.target_modules=\S+")
    code, _, err = run_main(monkeypatch, "plan", "json-output", *model, fixed)
    assert code == 0, err

    default = recipes.load("json-output").to_yaml()
    line = "  target_modules: all-linear\n"
    assert line in default
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(default.replace(line, f"  target_modules: [{given}]\n"))
    code, _, err = run_main(monkeypatch, "plan", str(recipe), *model)
    assert code == 2, err
    yaml_fix = _fix(err, r"target_modules: (\[[^\]]*\]|all-linear)")
    recipe.write_text(default.replace(line, f"  {yaml_fix}\n"))
    code, _, err = run_main(monkeypatch, "plan", str(recipe), *model)
    assert code == 0, err
