"""The planner: which settings fit a GPU budget with headroom and train fastest, and what the
run will cost.

Search (QLoRABudget only; other recipes are checked as written): activation checkpointing on or
off, and every micro-batch that divides the recipe's effective batch (gradient accumulation makes
up the rest, so the effective batch never changes). Among the settings that fit, the fastest by
the time model below wins. Only when nothing fits does the planner give up quality, in this
order: 8-bit optimizer states (no measurable loss, Dettmers et al. 2022), then halving the LoRA
rank (down to 8; with all-linear targets rank matters little, QLoRA sec. 4), then halving
``max_length`` (down to 256; this truncates examples, so it comes last). Every recipe's
``max_length`` must first be within the model's context, and every fix a message suggests is an
override or option that, applied as written, is estimated to fit.

Time model (relative, for choosing): compute per token is 4N FLOPs for an adapter on frozen
weights (forward 2N, backward through activations 2N; no weight gradients) and 6N for full
fine-tuning (Kaplan et al. 2020), plus 2N to recompute with activation checkpointing. A GPU is
assumed to reach ``MFU`` of its peak only with at least 4,096 tokens per micro-batch, scaling
with the square root below that; 4-bit dequantization is assumed to cost 30% of throughput.
These are assumptions, printed with every cost estimate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from numbers import Integral, Real
from typing import Any

from peftkit.core.errors import Problem, ProblemsError, RecipeError
from peftkit.core.limits import MAX_ACCUMULATION, MAX_GPUS, SHORTEST_SEQUENCE
from peftkit.memory.gpus import CATALOG
from peftkit.memory.optimizers import OPTIMIZERS, SMALLER_STATES
from peftkit.memory.peak import GB, Breakdown, Setup, estimate
from peftkit.memory.shapes import ModelShape

HEADROOM = 0.9
"""Plan for at most 90% of the GPU's memory: fragmentation and spikes need the rest."""
MFU = 0.35
FULL_UTILISATION_TOKENS = 4096
DEQUANT_SLOWDOWN = 0.7
MIN_RANK = 8
MIN_LENGTH = 256
COST_SETTINGS = ("usd", "gpu_hourly_usd", "dataset_tokens")
"""The budget settings that only the cost estimate uses."""
EXAMPLE_TOKENS = 10_000_000
"""The data size a fix shows for budget.dataset_tokens, where only the user knows theirs."""


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


@dataclass(frozen=True)
class Budget:
    """What a plan is for: the memory and number of GPUs, and for the cost, the GPU (its
    throughput and price), the price and the data size. ``memory_fix`` spells how the user
    sets the memory, "{}" for the value, so that a fix names the setting that was used."""

    gpu_memory_gb: float | None = None
    gpus: int = 1
    gpu: str | None = None
    usd: float | None = None
    gpu_hourly_usd: float | None = None
    dataset_tokens: int | None = None
    memory_fix: str = "--gpu-memory {}"


@dataclass(frozen=True)
class Request:
    """A run as the planner sees it: the settings to check (or, with ``search``, to start the
    search from) and what the reasons and fixes need beyond memory. Fixes are spelled as recipe
    overrides, since only a recipe has settings to override."""

    setup: Setup
    gradient_accumulation_steps: int = 1
    search: bool = False
    epochs: float = 1.0
    length_in_steps: bool = False
    """The run's length is set in steps, not epochs, so fewer epochs cannot lower the cost."""
    uncounted: tuple[str, ...] = ()
    """Modules trained in full (lora.modules_to_save) that the estimate leaves out."""
    to_shard: tuple[str, ...] = ()
    """The overrides that shard the run with FSDP (--gpus N comes first)."""


def relative_step_time(shape: ModelShape, setup: Setup, effective_batch: int) -> float:
    """Seconds per optimizer step up to a constant factor (see the module docstring)."""
    tokens = effective_batch * setup.seq_len
    return tokens * flops_per_param_token(setup) * shape.total_params / utilisation(setup)


RECOMPUTE_FLOPS = 2
"""FLOPs per parameter and token that activation checkpointing adds: one more forward pass."""


def flops_per_param_token(setup: Setup) -> int:
    """FLOPs per parameter and token: 4 with frozen weights, 6 in full, +2 to recompute."""
    recompute = RECOMPUTE_FLOPS if setup.activation_checkpointing else 0
    return _step_flops(setup.method) + recompute


def _step_flops(method: str) -> int:
    return 6 if method == "full" else 4


def recompute_share(method: str) -> float:
    """What activation checkpointing adds to a step's compute, by this time model: one forward
    pass more, half again a step on frozen weights (an adapter), a third of one in full
    fine-tuning. The one figure the recipes' descriptions and the plan's reasons give."""
    return RECOMPUTE_FLOPS / _step_flops(method)


def utilisation(setup: Setup) -> float:
    per_micro_batch = setup.batch_size * setup.seq_len
    scale = min(1.0, per_micro_batch / FULL_UTILISATION_TOKENS) ** 0.5
    return MFU * scale * (DEQUANT_SLOWDOWN if setup.bits == 4 else 1.0)


def fits_in(breakdown: Breakdown, memory: float) -> bool:
    """Whether the run fits one GPU of ``memory`` GB with HEADROOM: the one test behind every
    verdict, search and suggested fix, so that they never disagree."""
    return breakdown.total <= HEADROOM * memory * GB


DEFAULT_SEQ_LEN = 1024
"""`peftkit estimate`'s sequence length, unless the model's context is shorter."""


def default_seq_len(shape: ModelShape) -> tuple[int, str | None]:
    """The sequence length to estimate when none is given: DEFAULT_SEQ_LEN, or the model's
    context when that is shorter (with the notice that says so)."""
    context = shape.context
    if context is None or context >= DEFAULT_SEQ_LEN:
        return DEFAULT_SEQ_LEN, None
    return context, (
        f"--seq-len {context}: the model's context ({shape.context_key}), shorter than the "
        f"default of {DEFAULT_SEQ_LEN}"
    )


def judge(shape: ModelShape, setup: Setup, gpu_memory_gb: float | None = None) -> Plan:
    """The memory of ``setup`` and, given a GPU's memory, whether it fits, without a recipe.

    A setup given by hand has no recipe to override, so the messages name the options of
    `peftkit estimate`, which builds its setup from them.
    """
    check_budget(gpu_memory_gb, None)
    setup, notes = as_stored(shape, setup)
    notice = check_context(shape, setup.seq_len, "--seq-len", "--seq-len {}")
    chosen = _checked(shape, setup, gpu_memory_gb, None)
    chosen.reasons.extend([*notes, *([notice] if notice else [])])
    return chosen


def as_stored(shape: ModelShape, setup: Setup) -> tuple[Setup, list[str]]:
    """``setup`` as the checkpoint is stored, with notes on what the config left to defaults:
    a bitsandbytes checkpoint is costed at its bits (it loads quantized whatever the method
    says); any other pre-quantized checkpoint (GPTQ, AWQ, ...) is refused, since peftkit
    trains on 16-bit weights that bitsandbytes quantizes as they load."""
    notes = [f"{default}: the config leaves it out" for default in shape.defaults]
    if not shape.quantized:
        return setup, notes
    bits = shape.quantized_bits
    stored = f"{shape.quantized}, {bits}-bit" if bits else shape.quantized
    if shape.quantized == "bitsandbytes" and bits in (4, 8) and setup.method != "full":
        notes.append(f"the checkpoint is stored quantized ({stored}): costed at {bits} bits")
        method = "qlora" if bits == 4 else setup.method
        return replace(setup, bits=bits, method=method), notes  # type: ignore[arg-type]
    why = (
        "full fine-tuning cannot train quantized weights"
        if setup.method == "full"
        else "peftkit trains 16-bit checkpoints, which bitsandbytes quantizes as they load "
        "(method qlora), and estimates no other quantization"
    )
    raise ProblemsError(
        "in the model config",
        [
            Problem(
                "quantization_config",
                stored,
                f"the checkpoint is stored quantized already; {why}",
                "pass the config of the 16-bit model it was quantized from (its model card "
                "names it); for a 4-bit run, use method qlora",
            )
        ],
    )


def plan(shape: ModelShape, request: Request, budget: Budget) -> Plan:
    """Check (or, with ``request.search``, choose) the settings for ``budget``; add the cost."""
    check_budget(budget.gpu_memory_gb, budget.gpus)
    gpu = CATALOG.get(budget.gpu) if budget.gpu else None
    _check_gpu_facts(budget)
    memory = budget.gpu_memory_gb or (gpu and gpu.memory_gb)
    accumulation = request.gradient_accumulation_steps
    base, notes = as_stored(shape, request.setup)
    effective = base.batch_size * accumulation
    notice = check_context(shape, base.seq_len, "training.max_length", "training.max_length={}")
    if memory is None or not request.search:
        chosen = _checked(shape, base, memory, accumulation, _more_memory(budget))
    else:
        found = _search(shape, base, effective, memory)
        if found is None:
            stored = replace(request, setup=base)
            raise _nothing_fits(stored, shape, effective, memory, _more_memory(budget))
        chosen = found
    if gpu is not None and not gpu.bf16:
        chosen.reasons.append(
            f"{budget.gpu} has no bfloat16: precision auto trains in fp16 there, with "
            "model.dtype and quantization.compute_dtype auto following it (float16)"
        )
    chosen.reasons.extend([*notes, *([notice] if notice else [])])
    if request.uncounted:
        chosen.reasons.append(
            f"lora.modules_to_save ({', '.join(request.uncounted)}) is not counted: "
            "the estimate leaves out modules trained in full, so the peak will be higher"
        )
    cost = _cost(budget, request.epochs, shape, chosen)
    if cost is None and request.search:
        uncosted = _uncosted(budget, shape, base, effective, memory)
        if uncosted is not None:
            chosen.reasons.append(uncosted)
    elif cost is not None and cost.usd is not None and budget.usd and cost.usd > budget.usd:
        chosen.reasons.append(_over_budget(request, cost.usd, budget.usd))
    return replace(chosen, cost=cost)


def _check_gpu_facts(budget: Budget) -> None:
    """A named GPU and a memory it does not have contradict each other: a plan for either
    would be for a GPU that is not there (49 GB planned on a 16 GB T4). Less memory than the
    GPU has is a share of it, and fine."""
    gpu = CATALOG.get(budget.gpu) if budget.gpu else None
    memory = budget.gpu_memory_gb
    if gpu is None or memory is None or memory <= gpu.memory_gb:
        return
    larger = [name for name, other in CATALOG.items() if other.memory_gb >= memory]
    other = f", or budget.gpu={larger[0]} (a GPU with that memory)" if larger else ""
    raise ProblemsError(
        "in the GPU budget",
        [
            Problem(
                f"budget.gpu and {budget.memory_fix.format('').strip()}",
                f"{budget.gpu}, {memory:g} GB",
                f"a {budget.gpu} has {gpu.memory_gb:g} GB, not {memory:g}",
                f"{budget.memory_fix.format(f'{gpu.memory_gb:g}')} (or less: a share of the "
                f"{budget.gpu}){other}",
            )
        ],
    )


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
                "give the memory of one GPU in GB, e.g. --gpu-memory 24",
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
                "give the number of GPUs the run uses, e.g. --gpus 1, or leave --gpus out for "
                "the recipe's budget.gpus",
            )
        )
    if found:
        raise ProblemsError("in the GPU budget", found)


def check_context(shape: ModelShape, length: int, name: str, spelled: str) -> str | None:
    """Refuse sequences longer than the model's context: the positions past it do not exist
    (a learned position table ends; rotary positions were never trained), so such a run fails
    or trains on garbage, however well its memory fits. Within what the config's rope scaling
    stretches the context to, the length is taken, and the notice to show is returned.
    ``name`` is the setting as the caller gives it, ``spelled`` how to set it ("{}" for the
    value)."""
    context = shape.context
    if context is None or length <= context:
        return None
    scaled = shape.scaled_context
    if scaled is not None and length <= scaled:
        return (
            f"{name} {length} is beyond {shape.context_key} ({context}): positions past it "
            f"rely on the config's {shape.scaling}, which reaches {scaled} tokens"
        )
    longest = scaled or context
    fix = (
        spelled.format(longest)
        if longest >= SHORTEST_SEQUENCE
        else f"a model with a context of at least {SHORTEST_SEQUENCE} tokens, the shortest "
        f"{name} peftkit takes"
    )
    stretched = f", {scaled} with its {shape.scaling}" if scaled else ""
    raise ProblemsError(
        "with the model's context",
        [
            Problem(
                name,
                length,
                f"{name} is at most the model's context, {context} tokens ({shape.context_key} "
                f"in its config{stretched})",
                fix,
            )
        ],
    )


def _more_memory(budget: Budget) -> Callable[[int], str]:
    """How a fix asks for a GPU of at least so many GB: the memory, spelled as the user set
    it, or with a GPU named (budget.gpu), the smallest such GPU of the catalog: more memory
    on the same GPU would contradict it."""
    if budget.gpu is None:
        return lambda size: budget.memory_fix.format(size)

    def named(size: int) -> str:
        larger = sorted((g.memory_gb, n) for n, g in CATALOG.items() if g.memory_gb >= size)
        return f"budget.gpu={larger[0][1]}" if larger else "none in the catalog"

    return named


def _checked(
    shape: ModelShape,
    setup: Setup,
    memory: float | None,
    accumulation: int | None,
    more_memory: Callable[[int], str] = "--gpu-memory {}".format,
) -> Plan:
    """``setup`` as given, with the verdict for ``memory``. ``accumulation`` None spells the
    fixes as `peftkit estimate`'s options (it has no gradient accumulation); a number, as recipe
    overrides that keep the effective batch."""
    breakdown = estimate(shape, setup)
    steps = accumulation or 1
    if memory is None:
        return Plan(setup, breakdown, None, True, steps, _unfused_logits(breakdown, setup))
    fits = fits_in(breakdown, memory)
    reasons = [_verdict(breakdown, memory, fits), *_unfused_logits(breakdown, setup)]
    if not fits:
        reasons.append(_fit_fix(shape, setup, breakdown, memory, accumulation, more_memory))
    return Plan(setup, breakdown, memory, fits, steps, reasons)


def _fit_fix(
    shape: ModelShape,
    setup: Setup,
    breakdown: Breakdown,
    memory: float,
    accumulation: int | None,
    more_memory: Callable[[int], str],
) -> str:
    """The settings that make ``setup`` fit, each checked against the estimate: activation
    checkpointing, then also micro-batch 1, and the GPU memory it needs unchanged."""
    options = accumulation is None
    fixes = []
    effective = setup.batch_size * (accumulation or 1)
    checkpointed = replace(setup, activation_checkpointing=True)
    smallest = replace(checkpointed, batch_size=1)
    checkpointing = []
    if not setup.activation_checkpointing:
        checkpointing.append(
            "--activation-checkpointing" if options else "training.activation_checkpointing=true"
        )
    if checkpointing and fits_in(estimate(shape, checkpointed), memory):
        fixes.append(" ".join(checkpointing))
    elif (
        setup.batch_size > 1
        and effective <= MAX_ACCUMULATION
        and fits_in(estimate(shape, smallest), memory)
    ):
        batch = (
            ["--batch-size 1"]
            if options
            else ["training.batch_size=1", f"training.gradient_accumulation_steps={effective}"]
        )
        fixes.append(" ".join([*checkpointing, *batch]))
    size = math.ceil(breakdown.total / HEADROOM / GB)
    fixes.append(f"a GPU with at least {size} GB ({more_memory(size)})")
    return f"Fix: {', or '.join(fixes)}"


def _candidates(base: Setup, effective: int) -> list[list[Setup]]:
    """Tiers of settings, from no sacrifice to the most; within a tier any may be chosen."""
    tiers = []
    facts = OPTIMIZERS.get(base.optimizer)
    smaller = [] if facts is not None and facts.eight_bit else [SMALLER_STATES]
    optimizers = [base.optimizer, *smaller]
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


def _search(shape: ModelShape, base: Setup, effective: int, memory: float) -> Plan | None:
    """The fastest settings of the first tier with any that fit; None when none fits."""
    for tier in _candidates(base, effective):
        fitting = []
        for setup in tier:
            breakdown = estimate(shape, setup)
            if fits_in(breakdown, memory):
                fitting.append((relative_step_time(shape, setup, effective), setup, breakdown))
        if fitting:
            _, setup, breakdown = min(fitting, key=lambda item: item[0])
            reasons = _reasons(shape, base, setup, breakdown, effective, memory)
            return Plan(setup, breakdown, memory, True, effective // setup.batch_size, reasons)
    return None


def _nothing_fits(
    request: Request,
    shape: ModelShape,
    effective: int,
    memory: float,
    more_memory: Callable[[int], str],
) -> PlanError:
    """The error for a budget no setting fits, with the GPU memory and the number of GPUs
    (sharded with FSDP) that would fit the smallest setting, the memory spelled as the user set
    it."""
    base = request.setup
    candidates = [setup for tier in _candidates(base, effective) for setup in tier]
    total, s = min(((estimate(shape, c).total, c) for c in candidates), key=lambda item: item[0])
    need = total / HEADROOM / GB
    size = math.ceil(need)
    fixes = [f"a GPU with at least {size} GB ({more_memory(size)})"]
    count = _sharded_count(shape, s, memory)
    if count is not None:
        sharding = " ".join([f"--gpus {count}", *request.to_shard])
        fixes.append(f"{count} GPUs sharing the model with FSDP ({sharding})")
    return PlanError(
        f"nothing fits {memory:g} GB: the smallest setting (micro-batch {s.batch_size}, "
        f"activation checkpointing, r={s.r}, max_length={s.seq_len}, {s.optimizer}) needs "
        f"{need:.1f} GB with {1 - HEADROOM:.0%} headroom. Fix: {', '.join(fixes)}, or a "
        "smaller model."
    )


def _sharded_count(shape: ModelShape, setup: Setup, memory: float) -> int | None:
    """The fewest GPUs (up to MAX_GPUS) on which ``setup`` fits with FSDP; None if none do.
    Sharding divides every term but the activations, logits and CUDA context, so the memory
    per GPU falls with the count and a bisection finds it."""

    def fits_on(count: int) -> bool:
        return fits_in(estimate(shape, replace(setup, gpus=count, sharded=True)), memory)

    if not fits_on(MAX_GPUS):
        return None
    low, high = 1, MAX_GPUS
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if fits_on(middle) else (middle + 1, high)
    return low


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
    reasons.append(_checkpointing_reason(shape, chosen, memory))
    if chosen.optimizer != base.optimizer:
        reasons.append(f"optimizer {chosen.optimizer}: 8-bit states were needed to fit")
    if chosen.r != base.r:
        reasons.append(f"LoRA rank lowered from {base.r} to {chosen.r} to fit")
    if chosen.seq_len != base.seq_len:
        reasons.append(
            f"max_length lowered from {base.seq_len} to {chosen.seq_len} to fit: longer examples "
            "will be truncated"
        )
    reasons += _unfused_logits(breakdown, chosen)
    if chosen.bits == 4:
        lora = replace(
            chosen, method="lora", bits=None, activation_checkpointing=True, batch_size=1
        )
        lora_breakdown = estimate(shape, lora)
        lora_gb = lora_breakdown.total / GB
        if fits_in(lora_breakdown, memory):
            reasons.append(
                f"16-bit LoRA would also fit ({lora_gb:.1f} GB) and skips 4-bit "
                "dequantization; use the json-output or domain-adaptation recipe for it"
            )
        else:
            reasons.append(
                f"4-bit base kept: 16-bit LoRA would need {lora_gb:.1f} GB at micro-batch 1"
            )
    return reasons


def _checkpointing_reason(shape: ModelShape, chosen: Setup, memory: float) -> str:
    """Why the chosen settings recompute activations or not, with what it costs."""
    cost = f"{recompute_share(chosen.method):.0%} more compute"
    if not chosen.activation_checkpointing:
        return f"activation checkpointing off: it fits without, and recomputing costs {cost}"
    smallest = replace(chosen, activation_checkpointing=False, batch_size=1)
    without = estimate(shape, smallest)
    if not fits_in(without, memory):
        return (
            "activation checkpointing on: without it even micro-batch 1 needs "
            f"{without.total / GB:.1f} GB"
        )
    return (
        f"activation checkpointing on: it costs {cost}, but lets a larger micro-batch fit, "
        "which is estimated faster overall"
    )


LOGITS_SHARE = 0.25
"""A loss that holds the full logits is worth naming once they are this share of the peak."""


def _unfused_logits(breakdown: Breakdown, setup: Setup) -> list[str]:
    """Where the full logits dominate the peak, what computes the loss without them."""
    share = breakdown.logits / breakdown.total
    if setup.fused_loss or share < LOGITS_SHARE:
        return []
    return [
        f"the loss's logits take {breakdown.logits / GB:.1f} GB ({share:.0%} of the peak): TRL "
        "1.15 or newer (pip install -U trl) computes the loss without the full logits tensor, "
        "as does Liger's fused cross-entropy (pip install liger-kernel; training.liger=auto)"
    ]


def _verdict(breakdown: Breakdown, memory: float | None, fits: bool) -> str:
    if memory is None:
        return f"estimated peak {breakdown.total / GB:.1f} GB per GPU"
    share = breakdown.total / (memory * GB)
    word = "fits" if fits else "does NOT fit"
    return (
        f"{word}: estimated peak {breakdown.total / GB:.1f} GB of {memory:g} GB "
        f"({share:.0%}; the planner keeps {1 - HEADROOM:.0%} headroom)"
    )


def _cost(budget: Budget, epochs: float, shape: ModelShape, chosen: Plan) -> Cost | None:
    if budget.dataset_tokens is None or budget.gpu is None:
        return None
    gpu = CATALOG[budget.gpu]
    gpus = budget.gpus
    setup = chosen.setup
    flops_per_token = flops_per_param_token(setup)
    per_second = (
        gpus * gpu.tflops * 1e12 * utilisation(setup) / (flops_per_token * shape.total_params)
    )
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


def _uncosted(
    budget: Budget, shape: ModelShape, base: Setup, effective: int, memory: float | None
) -> str | None:
    """Why cost settings were given and no cost came out, with the settings that complete
    them; None when no cost was asked for. The throughput comes from the named GPU and the
    time from the data size, so both are needed."""
    given = [f"budget.{key}" for key in COST_SETTINGS if getattr(budget, key) is not None]
    if not given:
        return None
    needed, fixes, yours = [], [], []
    if budget.gpu is None:
        needed.append("budget.gpu (the GPU, for its throughput and price)")
        fixes.append(f"budget.gpu={_gpu_for(shape, base, effective, memory)}")
        yours.append(f"your GPU (one of {', '.join(CATALOG)})")
    if budget.dataset_tokens is None:
        needed.append("budget.dataset_tokens (the tokens in the training data)")
        fixes.append(f"budget.dataset_tokens={EXAMPLE_TOKENS}")
        yours.append("your data's token count")
    unchecked = ""
    if budget.usd:
        unchecked = f"; budget.usd ${budget.usd:,.2f} cannot be checked without " + (
            "it" if len(needed) == 1 else "them"
        )
    return (
        f"time and cost not estimated: {', '.join(given)} given, but the cost also needs "
        f"{' and '.join(needed)}{unchecked}. Fix: {' '.join(fixes)}, with {' and '.join(yours)}"
    )


def _gpu_for(shape: ModelShape, base: Setup, effective: int, memory: float | None) -> str:
    """A GPU to name for the cost: the smallest with bfloat16 and at least the memory given
    (which still decides the fit), or with none given, the smallest on which the planner finds
    settings, since naming the GPU then sets the memory too."""
    by_size = sorted(
        (name for name, gpu in CATALOG.items() if gpu.bf16), key=lambda n: CATALOG[n].memory_gb
    )
    if memory is not None:
        suitable = (name for name in by_size if CATALOG[name].memory_gb >= memory)
    else:
        suitable = (
            name
            for name in by_size
            if _search(shape, base, effective, CATALOG[name].memory_gb) is not None
        )
    return next(suitable, by_size[-1])


def _over_budget(request: Request, spent: float, usd: float) -> str:
    """The over-budget reason, with the epochs the budget pays for (the cost is proportional
    to them) unless max_steps, not epochs, sets the length of the run."""
    fixes = []
    affordable = _round_down(request.epochs * usd / spent)
    if not request.length_in_steps and affordable is not None:
        fixes.append(f"training.epochs={affordable} (what budget.usd pays for)")
    fixes.append(f"budget.usd={math.ceil(spent)} (this cost)")
    fixes.append("a faster or cheaper GPU (budget.gpu, budget.gpu_hourly_usd)")
    return f"over budget: ${spent:,.2f} against budget.usd ${usd:,.2f}. Fix: {', or '.join(fixes)}"


def _round_down(value: float) -> str | None:
    """``value`` cut to two significant digits, never up (a fix must stay within the budget),
    written as a recipe value; None when nothing is left."""
    digits = max(0, 1 - math.floor(math.log10(value)))
    cut = math.floor(value * 10**digits * (1 - 1e-9)) / 10**digits
    return f"{cut:.{digits}f}" if cut > 0 else None
