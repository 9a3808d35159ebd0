"""Precision `auto` resolves to what the machine supports; explicit choices are checked.

The suite runs on CPU-only machines and on GPU machines: a test of "this machine" expects what
this machine has (or is skipped where it cannot happen), and the other branch is mocked."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from peftkit import MissingExtraError, RecipeError, recipes
from peftkit.hardware import cpu_has_native_bf16, resolve_precision


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def test_auto_on_this_machine_builds_a_config_that_runs_here(tmp_path: Path):
    """The bare SFTConfig asks for bf16 on GPU; the built one names what this machine has: the
    CPU and its native precision, or the GPU with bf16 where it supports it, else fp16."""
    import torch

    args = recipes.load("json-output").build_sft_config(tmp_path)
    if _has_gpu():
        bf16 = torch.cuda.is_bf16_supported()
        assert (args.use_cpu, args.bf16, args.fp16) == (False, bf16, not bf16)
    else:
        assert (args.use_cpu, args.bf16, args.fp16) == (True, cpu_has_native_bf16(), False)


@pytest.mark.skipif(_has_gpu(), reason="this machine has a CUDA GPU: fp16 is allowed here")
def test_fp16_without_a_gpu_is_a_clear_error():
    with pytest.raises(RecipeError, match=r"training\.precision.*CUDA GPU"):
        resolve_precision("fp16")


@pytest.mark.skipif(not _has_gpu(), reason="runs for real here, in the test above")
def test_fp16_without_a_gpu_is_a_clear_error_on_a_gpu_machine_too(monkeypatch):
    """Mocked: the check above, where a GPU exists, as the same machine without it would see."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RecipeError, match=r"training\.precision.*CUDA GPU"):
        resolve_precision("fp16")
    assert resolve_precision("fp32").use_cpu is True


@pytest.mark.skipif(not _has_gpu(), reason="needs a CUDA GPU")
def test_fp16_on_this_gpu_runs_on_the_gpu():
    resolved = resolve_precision("fp16")
    assert (resolved.name, resolved.use_cpu) == ("fp16", False)


@pytest.mark.parametrize(
    ("bf16_supported", "requested", "expected"),
    [(True, "auto", "bf16"), (False, "auto", "fp16"), (True, "fp32", "fp32")],
)
def test_gpu_resolution(monkeypatch, bf16_supported, requested, expected):
    """Mocked: either GPU (with bf16 or without) exists on no one machine, and the GPU branch
    is only a choice among dtypes."""
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
    args = recipes.load("json-output").build_sft_config(
        tmp_path, bf16=False, fp16=False, logging_steps=3
    )
    assert (args.bf16, args.fp16, args.logging_steps) == (False, False, 3)


def test_missing_bitsandbytes_names_the_extra(monkeypatch):
    """Blocking the import is the only way to see a missing extra in an environment that has it."""
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(MissingExtraError, match=r"peftkit\[qlora\]"):
        recipes.load("qlora-budget").build_bnb_config()
