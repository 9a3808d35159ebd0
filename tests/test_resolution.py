"""Every ``auto`` of a recipe resolves for the machine and the model, in one place, and a run
uses, records and reports what it resolved to.

Machines other than this one are given as facts (:class:`peftkit.core.hardware.Machine`): a real run
cannot turn this CPU into a T4 or give it FlashAttention. The runs themselves are real."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from train_helpers import cli_env, load_recipe, short, with_data

from peftkit import PeftkitWarning, RecipeError, recipes
from peftkit.core import hardware
from peftkit.core.hardware import Machine
from peftkit.recipes import build
from peftkit.recipes.learning_rate import ANCHOR_RATE, auto_rate
from peftkit.recipes.resolution import resolve
from peftkit.testing import prompt_completion_rows, write_data

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "benchmarks" / "model_configs"
LLAMA_8B = CONFIGS / "meta-llama--Llama-3.1-8B-Instruct.json"

CPU = Machine()
BF16_CPU = Machine(cpu_bf16=True)
A100 = Machine(gpu="NVIDIA A100", gpu_bf16=True, compute_capability=(8, 0))
A100_FAST = Machine(
    gpu="NVIDIA A100", gpu_bf16=True, compute_capability=(8, 0), flash_attn=True, liger=True
)
T4 = Machine(gpu="Tesla T4", gpu_bf16=False, compute_capability=(7, 5), flash_attn=True)


@pytest.fixture(scope="module")
def bf16_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model saved in bfloat16, as most current checkpoints are."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("tiny-bf16")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_model_dir / name).exists():
            shutil.copy(tiny_model_dir / name, folder / name)
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"
    return folder


def _kwargs(recipe: recipes.Recipe, machine: Machine, model: object) -> dict:
    resolved = resolve(recipe, model, machine)
    return build.sft_config_kwargs(recipe, "out", resolved, "the model")


# --- the weights' dtype and the precision: one decision ------------------------------------------


@pytest.mark.parametrize(
    ("machine", "precision", "dtype"),
    [
        (CPU, "fp32", "float32"),  # bf16 weights would be emulated: 10x slower
        (BF16_CPU, "bf16", "bfloat16"),  # the checkpoint's, native here
        (A100, "bf16", "bfloat16"),
        (T4, "fp16", "float16"),  # and the 4-bit compute dtype with it (below)
    ],
)
def test_a_bf16_checkpoint_loads_in_what_the_machine_computes_in(
    bf16_model_dir, machine, precision, dtype
):
    recipe = recipes.load("json-output", [f"model.name={bf16_model_dir}"])
    resolved = resolve(recipe, None, machine)
    assert (resolved.precision.name, resolved.dtype.value) == (precision, dtype)
    kwargs = _kwargs(recipe, machine, None)
    assert kwargs["model_init_kwargs"]["dtype"] == dtype
    assert (kwargs["bf16"], kwargs["fp16"]) == (precision == "bf16", precision == "fp16")


@pytest.mark.parametrize("written", ["model.dtype=bfloat16", "training.precision=bf16"])
def test_a_written_bf16_on_a_cpu_without_it_is_kept_with_a_warning(tiny_model_dir, written):
    recipe = recipes.load("json-output", [f"model.name={tiny_model_dir}", written])
    with pytest.warns(PeftkitWarning, match=r"emulated, about 10x slower.*Set them to auto"):
        resolved = resolve(recipe, None, CPU)
    assert written.split("=")[1] in (resolved.dtype.value, resolved.precision.name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeftkitWarning)
        resolve(recipe, None, BF16_CPU)


def test_full_fine_tuning_in_fp16_keeps_fp32_master_weights(bf16_model_dir):
    recipe = load_recipe(
        "json-output",
        [
            f"model.name={bf16_model_dir}",
            "method=full",
            "callbacks.early_stopping.restore_best=false",
        ],
    )
    assert resolve(recipe, None, T4).dtype.value == "float32"


def test_a_written_dtype_is_kept_and_a_float32_checkpoint_stays_float32(tiny_model_dir):
    written = recipes.load("json-output", [f"model.name={tiny_model_dir}", "model.dtype=bfloat16"])
    assert resolve(written, None, CPU).dtype.value == "bfloat16"
    kept = recipes.load("json-output", [f"model.name={tiny_model_dir}"])
    assert resolve(kept, None, A100).dtype.value == "float32"


def test_qlora_on_a_t4_computes_in_float16_where_bf16_was_refused():
    """precision auto resolves to fp16 on a T4; the 4-bit compute dtype follows it, so the rule
    against fp16 training with bf16 compute is never met by a built-in recipe."""
    recipe = recipes.load(
        "qlora-budget", [f"model.name={CONFIGS}/meta-llama--Llama-3.1-8B-Instruct.json"]
    )
    resolved = resolve(recipe, LLAMA_8B, T4)
    assert resolved.compute_dtype is not None
    assert (resolved.precision.name, resolved.compute_dtype.value) == ("fp16", "float16")
    assert resolve(recipe, LLAMA_8B, A100).compute_dtype.value == "bfloat16"


def test_a_written_bf16_dtype_on_a_t4_is_refused_with_the_rule_text():
    recipe = recipes.load("qlora-budget", ["quantization.compute_dtype=bfloat16"])
    with pytest.raises(RecipeError) as raised:
        resolve(recipe, LLAMA_8B, T4)
    message = str(raised.value)
    assert "precision auto resolved to fp16" in message
    assert "the fp16 gradient scaler cannot unscale bfloat16 gradients" in message


def test_fsdp_stores_4bit_weights_in_the_compute_dtype_by_itself():
    recipe = recipes.load("qlora-budget", ["distributed.strategy=fsdp"])
    resolved = resolve(recipe, LLAMA_8B, T4)
    assert resolved.storage_dtype is not None
    assert resolved.storage_dtype.value == resolved.compute_dtype.value == "float16"
    assert resolve(recipes.load("qlora-budget"), LLAMA_8B, T4).storage_dtype.value == "uint8"


def test_a_bf16_checkpoint_on_a_cpu_without_bf16_trains_with_fp32_weights(
    bf16_model_dir, tmp_path, monkeypatch
):
    """The run the issue saw at 161.8 s/step: `peftkit train` with the default dtype on a CPU
    that lacks bf16. The machine's facts are injected; the run, its model and files are real."""
    from peftkit.run import loading
    from peftkit.run.train import train

    monkeypatch.setattr(hardware, "this_machine", lambda: CPU)
    loaded = []
    real_load = loading.load_model
    monkeypatch.setattr(
        loading, "load_model", lambda *a, **k: loaded.append(real_load(*a, **k)) or loaded[-1]
    )
    data = write_data(tmp_path / "train.jsonl", prompt_completion_rows(24))
    recipe = with_data(load_recipe("json-output", short(bf16_model_dir)), data)
    metrics = train(recipe, tmp_path / "out")
    assert {p.dtype for p in loaded[0].parameters()} == {__import__("torch").float32}
    assert metrics["precision"] == "fp32"
    assert metrics["resolved"]["model.dtype"]["value"] == "float32"
    assert "not native on this CPU without native bf16" in metrics["resolved"]["model.dtype"]["why"]
    written = (tmp_path / "out" / "recipe.yaml").read_text()
    rate = auto_rate(64, "llama").value
    assert yaml.safe_load(written)["training"]["learning_rate"] == rate
    line = next(x for x in written.splitlines() if x.strip().startswith("learning_rate:"))
    assert "# auto: 0.0008 measured at hidden size 576" in line
    assert metrics["resolved"]["training.learning_rate"]["value"] == rate
    card = (tmp_path / "out" / "adapter" / "README.md").read_text()
    assert f"`training.learning_rate`: {rate}" in card
    assert "`model.dtype`: float32" in card


def test_the_library_loads_the_model_as_the_recipe_resolves(bf16_model_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(hardware, "this_machine", lambda: CPU)
    recipe = recipes.load("json-output", [f"model.name={bf16_model_dir}"])
    model = AutoModelForCausalLM.from_pretrained(recipe.model.name, **recipe.model_kwargs())
    assert {p.dtype for p in model.parameters()} == {__import__("torch").float32}
    assert model.config._attn_implementation == "sdpa"


# --- the fast path on GPUs ---------------------------------------------------------------------


def test_the_cpu_path_takes_no_gpu_option(tiny_model_dir):
    recipe = recipes.load("json-output", [f"model.name={tiny_model_dir}"])
    kwargs = _kwargs(recipe, BF16_CPU, None)
    assert kwargs["model_init_kwargs"]["attn_implementation"] == "sdpa"
    assert kwargs["use_liger_kernel"] is False
    assert (kwargs["use_cpu"], kwargs["bf16"], kwargs["fp16"]) == (True, True, False)


def test_a_bf16_gpu_without_flash_attn_gets_sdpa_and_no_liger():
    recipe = recipes.load("json-output")
    kwargs = _kwargs(recipe, A100, LLAMA_8B)
    assert kwargs["model_init_kwargs"] == {
        "dtype": "bfloat16",
        "attn_implementation": "sdpa",
        "trust_remote_code": False,
    }
    assert (kwargs["use_liger_kernel"], kwargs["use_cpu"], kwargs["bf16"]) == (False, False, True)


def test_a_gpu_with_flash_attn_and_liger_takes_both_and_packs_padding_free():
    recipe = recipes.load("domain-adaptation", ["training.packing=true"])
    kwargs = _kwargs(recipe, A100_FAST, LLAMA_8B)
    assert kwargs["model_init_kwargs"]["attn_implementation"] == "flash_attention_2"
    assert kwargs["use_liger_kernel"] is True
    assert (kwargs["packing"], kwargs["packing_strategy"]) == (True, "bfd")
    lines = "\n".join(resolve(recipe, LLAMA_8B, A100_FAST).lines())
    assert "model.attention: flash_attention_2" in lines
    assert "training.liger: True" in lines


def test_flash_attention_needs_ampere_and_a_16_bit_dtype():
    recipe = recipes.load("json-output")
    assert resolve(recipe, LLAMA_8B, T4).attention.value == "sdpa"  # compute capability 7.5
    fp32 = recipes.load("json-output", ["model.dtype=float32"])
    assert resolve(fp32, LLAMA_8B, A100_FAST).attention.value == "sdpa"


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("model.attention=flash_attention_2", "model.attention"),
        ("training.liger=true", "training.liger"),
    ],
)
def test_a_fast_path_that_cannot_work_here_is_refused(override, field):
    recipe = recipes.load("json-output", [override])
    with pytest.raises(RecipeError, match=field.replace(".", r"\.")) as raised:
        resolve(recipe, LLAMA_8B, CPU)
    assert "Fix:" in str(raised.value)
    resolve(recipe, LLAMA_8B, A100_FAST)  # the same recipe where it can work


# --- the learning rate from the model's size ---------------------------------------------------


def test_the_law_is_anchored_at_the_measured_point_and_lands_near_qlora_rates():
    assert auto_rate(576, "llama").value == ANCHOR_RATE
    qlora = {4096: 2e-4, 5120: 2e-4, 6656: 1e-4, 8192: 1e-4}  # 7B, 13B, 33B, 65B
    for hidden, published in qlora.items():
        assert 0.7 <= auto_rate(hidden, "llama").value / published <= 1.25, hidden
    assert auto_rate(4096, "llama", "full").value == pytest.approx(1.7e-5)


def test_auto_rate_of_an_8b_llama_through_every_route(tmp_path):
    recipe = recipes.load("json-output")
    assert recipe.training.learning_rate == "auto"
    assert recipe.build_sft_config(tmp_path, LLAMA_8B).learning_rate == 1.7e-4
    assert (
        recipes.load("json-output", ["training.learning_rate=3e-4"])
        .build_sft_config(tmp_path, LLAMA_8B)
        .learning_rate
        == 3e-4
    )  # a number the user writes wins
    result = subprocess.run(
        [sys.executable, "-m", "peftkit", "show", "json-output", "--model", str(LLAMA_8B)],
        env=cli_env(), capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    shown = yaml.safe_load(result.stdout)
    assert shown["training"]["learning_rate"] == 1.7e-4
    assert "llama's exponent 0.781" in result.stdout
    assert "# Resolved for" in result.stdout


def test_an_unknown_model_is_refused_where_the_number_is_needed(tmp_path):
    recipe = recipes.load("json-output", ["model.name=nobody/not-cached"])
    assert resolve(recipe, None, CPU).learning_rate.value == "auto"
    with pytest.raises(RecipeError, match=r"training\.learning_rate: auto .* Fix: load the model"):
        recipe.build_sft_config(tmp_path)


def test_a_family_without_an_exponent_says_which_one_stands_in():
    mistral = CONFIGS / "mistralai--Mistral-7B-Instruct-v0.3.json"
    choice = resolve(recipes.load("json-output"), mistral, CPU).learning_rate
    assert "no published exponent for mistral: Llama's 0.781" in choice.why


def test_the_docs_table_is_the_one_the_script_writes():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from learning_rates import section
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    page = (ROOT / "docs" / "learning-rates.md").read_text()
    assert f"<!-- begin learning-rates -->\n{section()}\n<!-- end learning-rates -->" in page
    assert (
        "| meta-llama/Llama-3.1-8B-Instruct | llama | 4096 | 8.03B | 0.781 | **1.7e-4** |" in page
    )


# --- the loss without the full logits ------------------------------------------------------------


def test_a_fused_loss_holds_one_tile_of_logits_not_all_of_them():
    from dataclasses import replace

    from peftkit.memory import Setup, estimate, load_shape

    shape = load_shape(LLAMA_8B)  # a 128,256-token vocabulary
    full = Setup(method="qlora", bits=4, batch_size=4, seq_len=2048)
    tokens = 4 * 2048
    assert estimate(shape, full).logits == tokens * shape.vocab * 12
    fused = estimate(shape, replace(full, fused_loss=True)).logits
    assert fused == (4096 * 32768 + tokens * shape.hidden) * 4
    assert fused < estimate(shape, full).logits / 15  # 0.67 GB against 12.6 GB


def test_the_planner_names_a_fused_loss_where_the_logits_dominate():
    from dataclasses import replace

    from peftkit.memory import Setup, judge, load_shape

    shape = load_shape(LLAMA_8B)
    setup = Setup(method="qlora", bits=4, batch_size=8, seq_len=4096, activation_checkpointing=True)
    unfused = judge(shape, setup, 80)
    assert unfused.breakdown.logits / unfused.breakdown.total > 0.25
    assert any("pip install liger-kernel" in reason for reason in unfused.reasons)
    fused = judge(shape, replace(setup, fused_loss=True), 80)
    assert not any("liger" in reason for reason in fused.reasons)


def test_recipes_plan_with_the_loss_of_the_installed_trl(monkeypatch):
    """TRL 1.15 and newer compute SFT's loss through a tiled LM head; older TRL holds the full
    logits unless Liger is on."""
    from importlib import metadata

    from peftkit.recipes.resolution import fused_loss

    real = metadata.version
    installed = tuple(map(int, real("trl").split(".")[:2])) >= (1, 15)
    assert recipes.load("qlora-budget").setup().fused_loss is installed
    for version, liger, expected in (("1.16.0", "auto", True), ("1.14.2", False, False)):
        monkeypatch.setattr(
            metadata, "version", lambda name, v=version: v if name == "trl" else real(name)
        )
        chosen = recipes.load("qlora-budget", [f"training.liger={str(liger).lower()}"])
        assert fused_loss(chosen) is expected
    monkeypatch.setattr(metadata, "version", lambda name: "1.14.2" if name == "trl" else real(name))
    assert fused_loss(recipes.load("qlora-budget", ["training.liger=true"])) is True
