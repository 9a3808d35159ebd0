"""A recipe as the memory planner sees it: its :class:`~peftkit.memory.Setup`, the request and
the budget. The conversion lives here, on the recipe side, so that :mod:`peftkit.memory` is
arithmetic on settings and never reads a recipe."""

from __future__ import annotations

from typing import TYPE_CHECKING

from peftkit.memory.peak import Setup, auto_dtype
from peftkit.memory.planner import Budget, Request, check_budget
from peftkit.recipes.resolution import fused_loss
from peftkit.recipes.rules import storage_fits_fsdp

if TYPE_CHECKING:
    from peftkit.recipes.base import Recipe


def setup_of(recipe: Recipe, gpus: int = 1, checkpoint_dtype: str = "bfloat16") -> Setup:
    """The memory-relevant settings a recipe stands for (precision as on a bf16 GPU);
    ``model.dtype: auto`` keeps ``checkpoint_dtype``, as loading does."""
    t, lora, q = recipe.training, recipe.lora, recipe.quantization
    dtype = auto_dtype(checkpoint_dtype) if recipe.model.dtype == "auto" else recipe.model.dtype
    return Setup(
        method=recipe.method,
        bits=q.bits,
        double_quant=q.double_quant,
        r=lora.r,
        targets=lora.target_modules,
        use_dora=lora.use_dora,
        lora_dropout=lora.dropout,
        batch_size=t.batch_size,
        seq_len=t.max_length,
        activation_checkpointing=t.activation_checkpointing,
        optimizer=t.optimizer,
        weights_dtype=dtype,
        activation_bytes=4 if t.precision == "fp32" else 2,
        gpus=gpus,
        sharded=recipe.distributed.strategy == "fsdp",
        fused_loss=fused_loss(recipe),
    )


def request_of(recipe: Recipe, gpus: int, checkpoint_dtype: str) -> Request:
    """What the planner checks: a recipe with a budget section has its settings chosen, any
    other has them checked as written."""
    q = recipe.quantization
    to_shard = [] if recipe.distributed.strategy == "fsdp" else ["distributed.strategy=fsdp"]
    if not storage_fits_fsdp(q):
        to_shard.append("quantization.storage_dtype=auto")
    return Request(
        setup=setup_of(recipe, gpus, checkpoint_dtype),
        gradient_accumulation_steps=recipe.training.gradient_accumulation_steps,
        search=recipe.gpu_budget() is not None,
        epochs=recipe.training.epochs,
        length_in_steps=recipe.training.max_steps is not None,
        uncounted=tuple(recipe.lora.modules_to_save) if recipe.method != "full" else (),
        to_shard=tuple(to_shard),
    )


def budget_of(recipe: Recipe, gpu_memory_gb: float | None, gpus: int | None) -> Budget:
    """The recipe's budget section (if any) with the options on top: an option given outranks
    the recipe, and the fixes then name the option. The options are checked as given, before
    a 0 could fall back to the recipe's."""
    check_budget(gpu_memory_gb, gpus)
    section = recipe.gpu_budget()
    if section is None:
        return Budget(gpu_memory_gb=gpu_memory_gb, gpus=1 if gpus is None else gpus)
    return Budget(
        gpu_memory_gb=gpu_memory_gb or section.gpu_memory_gb,
        gpus=section.gpus if gpus is None else gpus,
        gpu=section.gpu,
        usd=section.usd,
        gpu_hourly_usd=section.gpu_hourly_usd,
        dataset_tokens=section.dataset_tokens,
        memory_fix="--gpu-memory {}" if gpu_memory_gb is not None else "budget.gpu_memory_gb={}",
    )
