"""The builders' keyword arguments are the recipe's fields under the HF classes' names: checked
with the messages `peftkit validate` gives, and they win over the recipe; what the recipe does
not model passes through (``extra`` in a recipe) after a check against the HF class."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peftkit import PeftkitDeprecationWarning, RecipeError, recipes

LLAMA_8B = (
    Path(__file__).resolve().parents[1]
    / "benchmarks"
    / "model_configs"
    / "meta-llama--Llama-3.1-8B-Instruct.json"
)


def _sft(tmp_path: Path, *overrides: str, **keywords):
    return recipes.load("json-output", list(overrides)).build_sft_config(
        tmp_path, LLAMA_8B, **keywords
    )


def test_a_keyword_the_recipe_models_wins_over_the_recipe(tmp_path):
    args = _sft(tmp_path, gradient_checkpointing=False, activation_checkpointing=True)
    assert args.activation_checkpointing is True
    assert args.activation_checkpointing_kwargs == {"use_reentrant": False}  # as the recipe builds
    args = _sft(tmp_path, "training.activation_checkpointing=true", gradient_checkpointing=False)
    assert args.activation_checkpointing is False
    args = _sft(tmp_path, learning_rate=3e-4, num_train_epochs=3, max_steps=-1, seed=7)
    assert (args.learning_rate, args.num_train_epochs, args.max_steps, args.seed) == (
        3e-4,
        3.0,
        -1,
        7,
    )
    assert _sft(tmp_path, "training.max_steps=9", max_steps=-1).max_steps == -1


def test_an_old_name_maps_with_the_recipe_s_warning(tmp_path):
    with pytest.warns(
        PeftkitDeprecationWarning, match="'max_seq_length' was renamed to 'max_length'"
    ):
        assert _sft(tmp_path, max_seq_length=256).max_length == 256


@pytest.mark.parametrize(
    ("keywords", "named", "says"),
    [
        ({"learning_rate": "fast"}, "learning_rate (training.learning_rate)", "valid number"),
        ({"num_train_epochs": 0}, "num_train_epochs (training.epochs)", "greater than 0"),
        ({"warmup_ratio": 1.5}, "warmup_ratio", "warms up over the whole run"),
        ({"neftune_noise_alpha": "x"}, "neftune_noise_alpha", "SFTConfig.neftune_noise_alpha"),
        ({"nefttune_noise_alpha": 5}, "nefttune_noise_alpha", "did you mean 'neftune_noise_alpha'"),
        ({"output_dir": "x"}, "build_sft_config", "multiple values"),
    ],
)
def test_a_bad_keyword_is_refused_naming_it_before_anything_loads(tmp_path, keywords, named, says):
    with pytest.raises((RecipeError, TypeError)) as raised:
        _sft(tmp_path, **keywords)
    assert named in str(raised.value) and says in str(raised.value)


def test_what_the_cli_refuses_the_library_refuses(tmp_path, monkeypatch):
    """fp16 without a GPU; a tracker whose package is missing (blocked: the only way to see a
    missing package where it is installed)."""
    with pytest.raises(RecipeError, match=r"training\.precision: got 'fp16'.*CUDA GPU"):
        _sft(tmp_path, fp16=True)
    monkeypatch.setitem(sys.modules, "wandb", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "wandb" else 1)
    with pytest.raises(RecipeError, match=r"training\.report_to: wandb needs the wandb package"):
        _sft(tmp_path, report_to="wandb")


def test_precision_flags_mean_what_sftconfig_means_by_them(tmp_path):
    off = _sft(tmp_path, bf16=False, fp16=False)
    assert (off.bf16, off.fp16) == (False, False)


def test_fields_the_recipe_does_not_model_pass_through(tmp_path):
    args = _sft(tmp_path, neftune_noise_alpha=5, dataloader_num_workers=2)
    assert (args.neftune_noise_alpha, args.dataloader_num_workers) == (5, 2)
    from_yaml = _sft(tmp_path, "training.extra={neftune_noise_alpha: 3}")
    assert from_yaml.neftune_noise_alpha == 3
    assert (
        _sft(
            tmp_path, "training.extra={neftune_noise_alpha: 3}", neftune_noise_alpha=4
        ).neftune_noise_alpha
        == 4
    )


def test_lora_and_bnb_keywords(tmp_path):
    recipe = recipes.load("json-output", ["lora.extra={init_lora_weights: olora}"])
    config = recipe.build_lora_config(
        r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], layers_to_transform=[0]
    )
    assert (config.r, config.lora_alpha, config.layers_to_transform) == (8, 16, [0])
    assert config.init_lora_weights == "olora"
    with pytest.raises(RecipeError, match=r"r \(lora\.r\): got 'x'"):
        recipe.build_lora_config(r="x")
    with pytest.raises(RecipeError, match=r"LoraConfig has no field 'rr'.*did you mean 'r'"):
        recipe.build_lora_config(rr=8)
    qlora = recipes.load("qlora-budget")
    bnb = qlora.build_bnb_config(LLAMA_8B, bnb_4bit_use_double_quant=False, llm_int8_threshold=5.0)
    assert (bnb.bnb_4bit_use_double_quant, bnb.llm_int8_threshold) == (False, 5.0)
    with pytest.raises(RecipeError, match=r"bnb_4bit_quant_type \(quantization\.quant_type\)"):
        qlora.build_bnb_config(LLAMA_8B, bnb_4bit_quant_type="int3")
    with pytest.raises(RecipeError, match=r"(?s)load_in_4bit \(quantization\.bits\).*4-bit base"):
        qlora.build_bnb_config(LLAMA_8B, load_in_4bit=False)  # the recipe's rules still hold


def test_a_key_the_recipe_models_is_refused_in_extra():
    with pytest.raises(ValueError) as raised:
        recipes.load("json-output", ["lora.extra={lora_alpha: 3}", "training.extra={lr: 1}"])
    message = str(raised.value)
    assert "lora.extra.lora_alpha" in message and "set lora.alpha=3" in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        recipes.load("json-output", ["training.extra={lr: 1}"])  # not TRL's: checked at build


def test_an_extra_sftconfig_does_not_have_stops_a_run_before_the_model_loads(
    tiny_model_dir, tmp_path
):
    from train_helpers import load_recipe, short, with_data

    from peftkit.run.train import train
    from peftkit.testing import prompt_completion_rows, write_data

    data = write_data(tmp_path / "d.jsonl", prompt_completion_rows(12))
    recipe = load_recipe("json-output", short(tiny_model_dir, "training.extra={lr: 1}"))
    with pytest.raises(RecipeError, match=r"SFTConfig has no field 'lr'"):
        train(with_data(recipe, data), tmp_path / "out")
    assert not (tmp_path / "out").exists()


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
SFT_KEYS = [
    "learning_rate", "num_train_epochs", "gradient_checkpointing", "max_seq_length", "seed",
    "report_to", "neftune_noise_alpha", "eval_strategy", "warmup_ratio", "lr_scheduler_type",
]  # fmt: skip
LORA_KEYS = ["r", "lora_alpha", "target_modules", "init_lora_weights", "lora_dropout"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(SFT_KEYS + LORA_KEYS), value=VALUES)
def test_any_keyword_value_gives_a_config_or_an_error_naming_it(tmp_path_factory, key, value):
    """Whatever the value, a config or a ValueError (RecipeError) that names the keyword:
    never another exception from deep inside the HF classes."""
    recipe = recipes.load("json-output")
    out = tmp_path_factory.mktemp("fuzz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if key in LORA_KEYS:
                recipe.build_lora_config(**{key: value})
            else:
                recipe.build_sft_config(out, LLAMA_8B, **{key: value})
        except ValueError as error:  # RecipeError, ProblemsError, pydantic's ValidationError
            assert key in str(error) or _home_of(key) in str(error), (key, value, str(error))


def _home_of(key: str) -> str:
    from peftkit.recipes.foreign_keys import FOREIGN_KEYS

    foreign = FOREIGN_KEYS.get(key)
    return foreign.home if foreign is not None and foreign.home else key
