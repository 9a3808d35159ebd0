"""The planner: which settings fit a GPU budget with headroom and train fastest, and what the
run will cost.

Search (QLoRABudget only; other recipes are checked as written): activation checkpointing on or
off, and every micro-batch that divides the recipe's effective batch (gradient accumulation makes
up the rest, so the effective batch never changes). Among the settings that fit, the fastest by
the time model below wins. Only when nothing fits does the planner give up quality, in this
order: 8-bit optimizer states (no measurable loss, Dettmers et al. 2022), then halving the LoRA
rank (down to 8; with all-linear targets rank matters little, QLoRA sec. 4), then halving
``max_length`` (down to 256; this truncates examples, so it comes last).

Time model (relative, for choosing): compute per token is 4N FLOPs for an adapter on frozen
weights (forward 2N, backward through activations 2N; no weight gradients) and 6N for full
fine-tuning (Kaplan et al. 2020), plus 2N to recompute with activation checkpointing. A GPU is
assumed to reach ``MFU`` of its peak only with at least 4,096 tokens per micro-batch, scaling
with the square root below that; 4-bit dequantization is assumed to cost 30% of throughput.
These are assumptions, printed with every cost estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

from peftkit.errors import Problem, ProblemsError, RecipeError
from peftkit.memory.estimate import DTYPE_BYTES, GB, Breakdown, Setup, estimate
from peftkit.memory.gpus import CATALOG
from peftkit.memory.shapes import ModelShape

if TYPE_CHECKING:
    from peftkit.recipes.base import Recipe

HEADROOM = 0.9
"""Plan for at most 90% of the GPU's memory: fragmentation and spikes need the rest."""
MFU = 0.35
FULL_UTILISATION_TOKENS = 4096
DEQUANT_SLOWDOWN = 0.7
MIN_RANK = 8
MIN_LENGTH = 256
MAX_GPUS = 1024
"""As many GPUs as a recipe's ``budget.gpus`` allows."""


class PlanError(RecipeError):
    """Nothing fits the budget; the message names the smallest memory that would work."""


@dataclass(frozen=True)
class Cost:
    tokens: int
    epochs: float
    tokens_per_second: float
    hours: float
    usd: float | None
    assumptions: list[str]


@dataclass(frozen=True)
class Plan:
    """The chosen settings, their memory, the verdict, the reasons, and (if known) the cost."""

    setup: Setup
    breakdown: Breakdown
    gpu_memory_gb: float | None
    fits: bool
    gradient_accumulation_steps: int
    reasons: list[str] = field(default_factory=list)
    cost: Cost | None = None

    def as_dict(self) -> dict[str, Any]:
        settings = {
            "bits": self.setup.bits,
            "r": self.setup.r,
            "batch_size": self.setup.batch_size,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
            "activation_checkpointing": self.setup.activation_checkpointing,
            "max_length": self.setup.seq_len,
            "optimizer": self.setup.optimizer,
        }
        return {
            **self.breakdown.as_gb(),
            "gpu_memory_gb": self.gpu_memory_gb,
            "fits": self.fits,
            "settings": settings,
            "reasons": self.reasons,
            "cost": None if self.cost is None else self.cost.__dict__,
        }

    def overrides(self) -> list[str]:
        """Dotted overrides that apply the chosen settings to the recipe."""
        s = self.setup
        return [
            f"lora.r={s.r}",
            f"training.batch_size={s.batch_size}",
            f"training.gradient_accumulation_steps={self.gradient_accumulation_steps}",
            f"training.activation_checkpointing={str(s.activation_checkpointing).lower()}",
            f"training.max_length={s.seq_len}",
            f"training.optimizer={s.optimizer}",
        ]


def setup_of(recipe: Recipe, gpus: int = 1, checkpoint_dtype: str = "bfloat16") -> Setup:
    """The memory-relevant settings a recipe stands for (precision as on a bf16 GPU);
    ``model.dtype: auto`` keeps ``checkpoint_dtype``, as loading does."""
    t, lora, q = recipe.training, recipe.lora, recipe.quantization
    dtype = recipe.model.dtype
    if dtype == "auto":
        dtype = checkpoint_dtype if checkpoint_dtype in DTYPE_BYTES else "float32"
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
    )


def relative_step_time(shape: ModelShape, setup: Setup, effective_batch: int) -> float:
    """Seconds per optimizer step up to a constant factor (see the module docstring)."""
    tokens = effective_batch * setup.seq_len
    return tokens * flops_per_param_token(setup) * shape.total_params / utilisation(setup)


def flops_per_param_token(setup: Setup) -> int:
    """FLOPs per parameter and token: 4 with frozen weights, 6 in full, +2 to recompute."""
    return (6 if setup.method == "full" else 4) + (2 if setup.activation_checkpointing else 0)


def utilisation(setup: Setup) -> float:
    per_micro_batch = setup.batch_size * setup.seq_len
    scale = min(1.0, per_micro_batch / FULL_UTILISATION_TOKENS) ** 0.5
    return MFU * scale * (DEQUANT_SLOWDOWN if setup.bits == 4 else 1.0)


def plan(
    recipe: Recipe,
    shape: ModelShape,
    gpu_memory_gb: float | None = None,
    gpus: int | None = None,
) -> Plan:
    """Check (or, for QLoRABudget, choose) the settings for a GPU budget; add the cost."""
    budget = getattr(recipe, "budget", None)
    check_budget(gpu_memory_gb, gpus)
    gpu = CATALOG.get(budget.gpu) if budget is not None and budget.gpu else None
    memory = gpu_memory_gb or (budget and budget.gpu_memory_gb) or (gpu and gpu.memory_gb)
    count = gpus or (budget.gpus if budget is not None else 1)
    effective = recipe.training.batch_size * recipe.training.gradient_accumulation_steps
    base = setup_of(recipe, count, shape.checkpoint_dtype)
    if memory is None or budget is None:
        breakdown = estimate(shape, base)
        fits = memory is None or breakdown.total <= HEADROOM * memory * GB
        reasons = [_verdict(breakdown, memory, fits)] if memory else []
        if not fits:
            reasons.append(
                "Fix: turn on training.activation_checkpointing, lower training.batch_size or "
                "training.max_length, or use the qlora-budget recipe, whose planner picks "
                "settings that fit"
            )
        accumulation = recipe.training.gradient_accumulation_steps
        chosen = Plan(base, breakdown, memory, fits, accumulation, reasons)
    else:
        chosen = _search(shape, base, effective, memory)
    if gpu is not None and not gpu.bf16:
        chosen.reasons.append(
            f"{budget.gpu} has no bfloat16: set quantization.compute_dtype: float16, "
            "model.dtype: float16 and training.precision: fp16"
        )
    cost = _cost(recipe, shape, chosen, count)
    if cost is not None and cost.usd is not None and budget.usd and cost.usd > budget.usd:
        chosen.reasons.append(
            f"over budget: ${cost.usd:,.2f} against budget.usd ${budget.usd:,.2f}. Fix: fewer "
            "epochs or tokens, or a faster or cheaper GPU"
        )
    return replace(chosen, cost=cost)


def check_budget(gpu_memory_gb: float | None, gpus: int | None) -> None:
    """Refuse GPU memory that is not a finite number above 0, and a GPU count outside 1 to
    MAX_GPUS: NaN compares false with everything (nothing would fit, and the message would say
    so), infinity fits everything, and 0 would silently mean "the recipe's budget"."""
    found = []
    if gpu_memory_gb is not None and (
        isinstance(gpu_memory_gb, bool)
        or not isinstance(gpu_memory_gb, Real)
        or not 0 < gpu_memory_gb < math.inf
    ):
        found.append(
            Problem(
                "gpu_memory_gb (--gpu-memory)",
                gpu_memory_gb,
                "GPU memory is a finite number of GB above 0",
                "give the memory of one GPU in GB, e.g. --gpu-memory 24 (gpu_memory_gb=24)",
            )
        )
    if gpus is not None and (
        isinstance(gpus, bool) or not isinstance(gpus, Integral) or not 1 <= gpus <= MAX_GPUS
    ):
        found.append(
            Problem(
                "gpus (--gpus)",
                gpus,
                f"the number of GPUs is a whole number from 1 to {MAX_GPUS}",
                "give the number of GPUs the run uses, e.g. --gpus 1 (gpus=1), or leave it "
                "out for the recipe's budget.gpus",
            )
        )
    if found:
        raise ProblemsError("in the GPU budget", found)


def _candidates(base: Setup, effective: int) -> list[list[Setup]]:
    """Tiers of settings, from no sacrifice to the most; within a tier any may be chosen."""
    tiers = []
    optimizers = [base.optimizer] + (["paged_adamw_8bit"] if "8bit" not in base.optimizer else [])
    ranks = [base.r]
    while ranks[-1] // 2 >= MIN_RANK:
        ranks.append(ranks[-1] // 2)
    lengths = [base.seq_len]
    while lengths[-1] // 2 >= MIN_LENGTH:
        lengths.append(lengths[-1] // 2)
    batches = [b for b in range(effective, 0, -1) if effective % b == 0]
    for length in lengths:
        for r in ranks:
            for optimizer in optimizers:
                tiers.append(
                    [
                        replace(
                            base,
                            seq_len=length,
                            r=r,
                            optimizer=optimizer,
                            batch_size=b,
                            activation_checkpointing=ckpt,
                        )
                        for ckpt in (False, True)
                        for b in batches
                    ]
                )
    return tiers


def _search(shape: ModelShape, base: Setup, effective: int, memory: float) -> Plan:
    limit = HEADROOM * memory * GB
    smallest: tuple[float, Setup] | None = None
    for tier in _candidates(base, effective):
        fitting = []
        for setup in tier:
            breakdown = estimate(shape, setup)
            if smallest is None or breakdown.total < smallest[0]:
                smallest = (breakdown.total, setup)
            if breakdown.total <= limit:
                fitting.append((relative_step_time(shape, setup, effective), setup, breakdown))
        if fitting:
            _, setup, breakdown = min(fitting, key=lambda item: item[0])
            reasons = _reasons(shape, base, setup, breakdown, effective, memory)
            return Plan(setup, breakdown, memory, True, effective // setup.batch_size, reasons)
    assert smallest is not None
    need = smallest[0] / HEADROOM / GB
    s = smallest[1]
    sharded = (
        f"or {int(need // memory) + 1} GPUs with distributed.strategy: fsdp, "
        if need / memory < MAX_GPUS
        else ""
    )
    raise PlanError(
        f"nothing fits {memory:g} GB: the smallest setting (micro-batch {s.batch_size}, "
        f"activation checkpointing, r={s.r}, max_length={s.seq_len}, {s.optimizer}) needs "
        f"{need:.1f} GB with {1 - HEADROOM:.0%} headroom. Fix: a GPU with at least "
        f"{math.ceil(need)} GB, {sharded}or a smaller model."
    )


def _reasons(
    shape: ModelShape,
    base: Setup,
    chosen: Setup,
    breakdown: Breakdown,
    effective: int,
    memory: float,
) -> list[str]:
    reasons = [_verdict(breakdown, memory, True)]
    accumulation = effective // chosen.batch_size
    reasons.append(
        f"micro-batch {chosen.batch_size} x gradient accumulation {accumulation} keeps the "
        f"recipe's effective batch of {effective}"
    )
    if chosen.activation_checkpointing:
        without = [
            estimate(shape, replace(chosen, activation_checkpointing=False, batch_size=b)).total
            for b in (chosen.batch_size, 1)
        ]
        if without[1] > HEADROOM * memory * GB:
            reasons.append(
                "activation checkpointing on: without it even micro-batch 1 needs "
                f"{without[1] / GB:.1f} GB"
            )
        else:
            reasons.append(
                "activation checkpointing on: it costs ~33% more compute, but lets a larger "
                "micro-batch fit, which is estimated faster overall"
            )
    else:
        reasons.append("activation checkpointing off: it fits without, and recomputing costs ~33%")
    if chosen.optimizer != base.optimizer:
        reasons.append(f"optimizer {chosen.optimizer}: 8-bit states were needed to fit")
    if chosen.r != base.r:
        reasons.append(f"LoRA rank lowered from {base.r} to {chosen.r} to fit")
    if chosen.seq_len != base.seq_len:
        reasons.append(
            f"max_length lowered from {base.seq_len} to {chosen.seq_len} to fit: longer examples "
            "will be truncated"
        )
    if chosen.bits == 4:
        lora = replace(
            chosen, method="lora", bits=None, activation_checkpointing=True, batch_size=1
        )
        lora_total = estimate(shape, lora).total
        if lora_total <= HEADROOM * memory * GB:
            reasons.append(
                f"16-bit LoRA would also fit ({lora_total / GB:.1f} GB) and skips 4-bit "
                "dequantization; use the json-output or domain-adaptation recipe for it"
            )
        else:
            reasons.append(
                f"4-bit base kept: 16-bit LoRA would need {lora_total / GB:.1f} GB at micro-batch 1"
            )
    return reasons


def _verdict(breakdown: Breakdown, memory: float | None, fits: bool) -> str:
    if memory is None:
        return f"estimated peak {breakdown.total / GB:.1f} GB per GPU"
    share = breakdown.total / (memory * GB)
    word = "fits" if fits else "does NOT fit"
    return (
        f"{word}: estimated peak {breakdown.total / GB:.1f} GB of {memory:g} GB "
        f"({share:.0%}; the planner keeps {1 - HEADROOM:.0%} headroom)"
    )


def _cost(recipe: Recipe, shape: ModelShape, chosen: Plan, gpus: int) -> Cost | None:
    budget = getattr(recipe, "budget", None)
    if budget is None or budget.dataset_tokens is None:
        return None
    gpu = CATALOG[budget.gpu] if budget.gpu else None
    if gpu is None:
        return None
    setup = chosen.setup
    flops_per_token = flops_per_param_token(setup)
    per_second = (
        gpus * gpu.tflops * 1e12 * utilisation(setup) / (flops_per_token * shape.total_params)
    )
    epochs = recipe.training.epochs
    hours = budget.dataset_tokens * epochs / per_second / 3600
    hourly = budget.gpu_hourly_usd if budget.gpu_hourly_usd is not None else gpu.hourly_usd
    assumptions = [
        f"{budget.gpu}: {gpu.tflops:g} TFLOPS dense 16-bit peak, ${hourly:g}/h per GPU",
        f"model FLOPs utilisation {utilisation(setup):.0%} (MFU {MFU:.0%} at >= "
        f"{FULL_UTILISATION_TOKENS} tokens per micro-batch"
        + (f", x{DEQUANT_SLOWDOWN} for 4-bit dequantization)" if setup.bits == 4 else ")"),
        f"{flops_per_token}N FLOPs per token with N = {shape.total_params / 1e9:.2f}B parameters",
    ]
    return Cost(
        tokens=budget.dataset_tokens,
        epochs=epochs,
        tokens_per_second=per_second,
        hours=hours,
        usd=hours * gpus * hourly,
        assumptions=assumptions,
    )
