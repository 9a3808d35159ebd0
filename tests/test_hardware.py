"""Precision `auto` resolves to what the machine supports; explicit choices are checked.

The suite runs on CPU-only machines and on GPU machines: a test of "this machine" expects what
this machine has; the decisions for other machines take their facts as a `Machine` (a real
run cannot turn this CPU into a T4)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from peftkit import MissingExtraError, RecipeError, recipes
from peftkit.core.hardware import Machine, cpu_has_native_bf16, resolve_precision, this_machine

CPU = Machine()
BF16_CPU = Machine(cpu_bf16=True)
A100 = Machine(gpu="NVIDIA A100", gpu_bf16=True, compute_capability=(8, 0))
T4 = Machine(gpu="Tesla T4", gpu_bf16=False, compute_capability=(7, 5))


def test_auto_on_this_machine_builds_a_config_that_runs_here(tmp_path: Path, tiny_model_dir):
    """The bare SFTConfig asks for bf16 on GPU; the built one names what this machine has: the
    CPU and its native precision, or the GPU with bf16 where it supports it, else fp16."""
    import torch

    recipe = recipes.load("json-output", [f"model.name={tiny_model_dir}"])
    args = recipe.build_sft_config(tmp_path)
    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        assert (args.use_cpu, args.bf16, args.fp16) == (False, bf16, not bf16)
    else:
        assert (args.use_cpu, args.bf16, args.fp16) == (True, cpu_has_native_bf16(), False)
    assert this_machine().cpu_bf16 is cpu_has_native_bf16()


def test_fp16_without_a_gpu_is_a_clear_error():
    with pytest.raises(RecipeError, match=r"training\.precision.*CUDA GPU"):
        resolve_precision("fp16", CPU)
    assert resolve_precision("fp32", CPU).use_cpu is True


@pytest.mark.parametrize(
    ("machine", "requested", "expected"),
    [
        (A100, "auto", ("bf16", False)),
        (T4, "auto", ("fp16", False)),
        (A100, "fp32", ("fp32", False)),
        (T4, "fp16", ("fp16", False)),
        (BF16_CPU, "auto", ("bf16", True)),
        (CPU, "auto", ("fp32", True)),
        (CPU, "bf16", ("bf16", True)),
    ],
)
def test_resolution_for_each_machine(machine, requested, expected):
    resolved = resolve_precision(requested, machine)
    assert (resolved.name, resolved.use_cpu) == expected


def test_bf16_on_a_gpu_without_it_is_a_clear_error():
    with pytest.raises(RecipeError, match="does not support bfloat16"):
        resolve_precision("bf16", T4)


def test_overrides_win_over_the_recipe(tmp_path: Path, tiny_model_dir):
    recipe = recipes.load("json-output", [f"model.name={tiny_model_dir}"])
    args = recipe.build_sft_config(tmp_path, bf16=False, fp16=False, logging_steps=3)
    assert (args.bf16, args.fp16, args.logging_steps) == (False, False, 3)


def test_missing_bitsandbytes_names_the_extra(monkeypatch):
    """Blocking the import is the only way to see a missing extra in an environment that has it."""
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(MissingExtraError, match=r"peftkit\[qlora\]"):
        recipes.load("qlora-budget").build_bnb_config()
