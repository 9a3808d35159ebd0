"""Each builder maps the recipe's fields onto the HF object it builds, and nothing else."""

from __future__ import annotations

from pathlib import Path

import torch

from peftkit import recipes
from peftkit.core import hardware
from peftkit.core.hardware import Machine

LLAMA_8B = (
    Path(__file__).resolve().parents[1]
    / "benchmarks"
    / "model_configs"
    / "meta-llama--Llama-3.1-8B-Instruct.json"
)
"""A model config, for the learning rate ``auto`` resolves to (1.7e-4 on this 8B Llama)."""


def test_lora_config_mirrors_the_lora_section():
    recipe = recipes.load(
        "json-output",
        ["lora.r=8", "lora.alpha=16", "lora.target_modules=[q_proj,gate_proj]"]
        + ["lora.use_rslora=true", "lora.use_dora=true", "lora.modules_to_save=[lm_head]"],
    )
    config = recipe.build_lora_config()
    assert (config.r, config.lora_alpha, config.lora_dropout) == (8, 16.0, 0.05)
    assert set(config.target_modules) == {"q_proj", "gate_proj"}
    assert (config.use_rslora, config.use_dora, config.bias) == (True, True, "none")
    assert config.modules_to_save == ["lm_head"]
    assert config.task_type == "CAUSAL_LM"
    assert recipes.load("json-output").build_lora_config().target_modules == "all-linear"


def test_bnb_config_is_qlora_nf4_with_double_quant(monkeypatch):
    gpu = Machine(gpu="NVIDIA A100", gpu_bf16=True, compute_capability=(8, 0))
    monkeypatch.setattr(hardware, "this_machine", lambda: gpu)  # compute dtype auto: bf16 here
    config = recipes.load("qlora-budget").build_bnb_config()
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant is True
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    assert config.bnb_4bit_quant_storage == torch.uint8
    eight = recipes.load("json-output", ["quantization.bits=8"]).build_bnb_config()
    assert eight.load_in_8bit and not eight.load_in_4bit
    assert recipes.load("json-output").build_bnb_config() is None


def test_sft_config_mirrors_the_training_and_data_sections(tmp_path: Path):
    qlora = recipes.load("qlora-budget", ["training.max_steps=7"])
    args = qlora.build_sft_config(tmp_path, LLAMA_8B)
    assert args.output_dir == str(tmp_path)
    assert (args.learning_rate, args.max_steps, args.max_grad_norm) == (1.7e-4, 7, 0.3)
    assert args.lr_scheduler_type == "constant_with_warmup"
    assert args.optim == "paged_adamw_32bit"
    assert args.activation_checkpointing is True
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 4)
    assert args.warmup_steps == 0.03
    assert args.eval_strategy == "steps"
    assert args.report_to == [] or args.report_to == "none"
    assert args.restore_callback_states_from_checkpoint is True  # callbacks survive a resume

    json_args = recipes.load("json-output").build_sft_config(tmp_path, LLAMA_8B)
    assert (json_args.max_length, json_args.completion_only_loss) == (512, True)
    assert json_args.max_steps == -1 and json_args.num_train_epochs == 2.0
    domain_args = recipes.load("domain-adaptation").build_sft_config(tmp_path, LLAMA_8B)
    assert (domain_args.packing, domain_args.completion_only_loss) == (False, None)
    assert domain_args.gradient_accumulation_steps == 1


def test_distributed_strategies_map_to_ddp_and_fsdp_settings(tmp_path: Path):
    ddp = recipes.load("json-output", ["distributed.strategy=ddp"]).build_sft_config(
        tmp_path, LLAMA_8B
    )
    assert ddp.ddp_find_unused_parameters is False
    fsdp = recipes.load("qlora-budget", ["distributed.strategy=fsdp"]).build_sft_config(
        tmp_path, LLAMA_8B
    )
    assert fsdp.fsdp_config["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp.fsdp_config["activation_checkpointing"] is True
    assert fsdp.activation_checkpointing is False  # FSDP checkpoints inside its own wrapper


def test_builders_are_pure(tmp_path: Path):
    """The same recipe builds equal configs every time and is not changed by building."""
    recipe = recipes.load("qlora-budget")
    before = recipe.model_dump()
    first = recipe.build_sft_config(tmp_path, LLAMA_8B)
    second = recipe.build_sft_config(tmp_path, LLAMA_8B)
    assert first.to_dict() == second.to_dict()
    assert recipe.build_lora_config() == recipe.build_lora_config()
    assert recipe.model_dump() == before
