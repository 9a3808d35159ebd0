"""Precision `auto` resolves to what the machine supports; explicit choices are checked."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from peftkit import MissingExtraError, RecipeError, recipes
from peftkit.hardware import cpu_has_native_bf16, resolve_precision


def test_auto_on_this_cpu_machine_builds_a_config_that_runs_here(tmp_path: Path):
    """The bare SFTConfig asks for bf16 on GPU; the built one names the CPU and a precision."""
    args = recipes.load("json-output").build_sft_config(tmp_path)
    assert args.use_cpu is True
    assert args.bf16 is cpu_has_native_bf16()
    assert args.fp16 is False


def test_fp16_without_a_gpu_is_a_clear_error():
    with pytest.raises(RecipeError, match=r"training\.precision.*CUDA GPU"):
        resolve_precision("fp16")


@pytest.mark.parametrize(
    ("bf16_supported", "requested", "expected"),
    [(True, "auto", "bf16"), (False, "auto", "fp16"), (True, "fp32", "fp32")],
)
def test_gpu_resolution(monkeypatch, bf16_supported, requested, expected):
    """Mocked: no GPU exists here, and the GPU branch is only a choice among dtypes."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16_supported)
    resolved = resolve_precision(requested)
    assert (resolved.name, resolved.use_cpu) == (expected, False)


def test_bf16_on_a_gpu_without_it_is_a_clear_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    with pytest.raises(RecipeError, match="does not support bfloat16"):
        resolve_precision("bf16")


def test_overrides_win_over_the_recipe(tmp_path: Path):
    args = recipes.load("json-output").build_sft_config(tmp_path, bf16=False, logging_steps=3)
    assert (args.bf16, args.logging_steps) == (False, 3)


def test_missing_bitsandbytes_names_the_extra(monkeypatch):
    """Blocking the import is the only way to see a missing extra in an environment that has it."""
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(MissingExtraError, match=r"peftkit\[qlora\]"):
        recipes.load("qlora-budget").build_bnb_config()
