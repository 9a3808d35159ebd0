"""What the machine at hand computes in and which fast paths it has, and the choices that follow.

A recipe says what it wants (``precision: auto``, ``model.dtype: auto``, ``model.attention:
auto``, ``training.liger: auto``); this module decides, in one place, what that means here. The
bare ``SFTConfig`` asks for bf16 and crashes on a CPU-only machine, and loading a bf16 checkpoint
as it is on a CPU without native bf16 emulates every matmul (10x slower per step, measured in
docs/benchmarks.md), so precision and the weights' dtype are one decision: the machine's native
half precision where it has one, else fp16 on a GPU, else fp32.

The facts are read once (:func:`this_machine`); every decision takes a :class:`Machine`, so that
tests decide for machines they do not run on.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from peftkit.core.errors import RecipeError

ResolvedName = Literal["bf16", "fp16", "fp32"]
HALF_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
"""The weights' dtype each precision computes in."""
FLASH_ATTENTION_CAPABILITY = (8, 0)
"""FlashAttention-2 runs on Ampere and newer GPUs (flash-attn's README)."""


@dataclass(frozen=True)
class Machine:
    """The facts the choices depend on: the GPU (None on a CPU-only machine), whether it or the
    CPU computes bfloat16 natively, and which fast-path packages are installed."""

    gpu: str | None = None
    gpu_bf16: bool = False
    compute_capability: tuple[int, int] | None = None
    cpu_bf16: bool = False
    flash_attn: bool = False
    liger: bool = False

    @property
    def cuda(self) -> bool:
        return self.gpu is not None

    @property
    def native(self) -> tuple[str, ...]:
        """The dtypes this machine computes in without emulation."""
        if self.cuda:
            return ("bfloat16", "float16", "float32") if self.gpu_bf16 else ("float16", "float32")
        return ("bfloat16", "float32") if self.cpu_bf16 else ("float32",)

    def describe(self) -> str:
        """The machine in a few words, for the reasons of a choice."""
        if self.cuda:
            return f"GPU {self.gpu} ({'with' if self.gpu_bf16 else 'without'} bf16)"
        return f"CPU {'with' if self.cpu_bf16 else 'without'} native bf16"


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 in hardware (AVX512-BF16 or AMX)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return False
    flags = cpuinfo.read_text(errors="ignore")
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.cache
def this_machine() -> Machine:
    """The machine peftkit runs on (imports torch; read once per process)."""
    import torch

    installed = {
        name: importlib.util.find_spec(name) is not None for name in ("flash_attn", "liger_kernel")
    }
    common = {"flash_attn": installed["flash_attn"], "liger": installed["liger_kernel"]}
    if not torch.cuda.is_available():
        return Machine(cpu_bf16=cpu_has_native_bf16(), **common)
    return Machine(
        gpu=torch.cuda.get_device_name(0),
        gpu_bf16=torch.cuda.is_bf16_supported(),
        compute_capability=torch.cuda.get_device_capability(0),
        cpu_bf16=cpu_has_native_bf16(),
        **common,
    )


@dataclass(frozen=True)
class ResolvedPrecision:
    """The precision training will use, whether it runs on the CPU, and why."""

    name: ResolvedName
    use_cpu: bool
    reason: str

    @property
    def dtype(self) -> str:
        """The weights' dtype this precision computes in."""
        return HALF_DTYPE[self.name]


def resolve_precision(requested: str, machine: Machine | None = None) -> ResolvedPrecision:
    """Turn ``training.precision`` into what ``machine`` (default: this one) runs; explicit
    choices are checked."""
    machine = machine or this_machine()
    if machine.cuda:
        if requested == "auto":
            name: ResolvedName = "bf16" if machine.gpu_bf16 else "fp16"
            return ResolvedPrecision(name, False, f"auto: {machine.describe()}")
        if requested == "bf16" and not machine.gpu_bf16:
            raise RecipeError(
                "training.precision: got 'bf16', but this GPU does not support bfloat16. "
                "Fix: set training.precision=auto (it resolves the weights and 4-bit compute "
                "dtype with it), or training.precision=fp16"
            )
        return ResolvedPrecision(requested, False, "as the recipe says")  # type: ignore[arg-type]
    if requested == "fp16":
        raise RecipeError(
            "training.precision: got 'fp16', but fp16 mixed precision needs a CUDA GPU and this "
            "machine has none. Fix: set training.precision=auto (or bf16, or fp32)"
        )
    if requested == "auto":
        name = "bf16" if machine.cpu_bf16 else "fp32"
        return ResolvedPrecision(name, True, f"auto: no GPU; {machine.describe()}")
    return ResolvedPrecision(requested, True, "as the recipe says; no GPU")  # type: ignore[arg-type]


@dataclass(frozen=True)
class Choice:
    """One resolved setting and why it is what it is (shown in the run summary)."""

    value: str | bool | float
    why: str


def weights_dtype(
    requested: str,
    precision: ResolvedPrecision,
    checkpoint: str | None,
    full: bool,
    machine: Machine,
) -> Choice:
    """``model.dtype``: the dtype the unquantized weights load in.

    ``auto`` keeps the checkpoint's dtype where the machine computes in it, and otherwise takes
    the precision's: fp32 on a CPU without native bf16 (the checkpoint's bf16 would be emulated),
    fp16 on a GPU without bf16. Full fine-tuning with fp16 mixed precision keeps fp32 weights,
    which the fp16 gradient scaler needs as master copies. ``checkpoint`` None: not known.
    """
    if requested != "auto":
        return Choice(requested, "as the recipe says")
    if full and precision.name == "fp16":
        return Choice("float32", "auto: fp16 mixed precision trains fp32 master weights")
    if checkpoint is not None and checkpoint in machine.native:
        return Choice(checkpoint, f"auto: the checkpoint's, native on this {machine.describe()}")
    if checkpoint is None and precision.name == "bf16":
        return Choice("auto", f"auto: the checkpoint's; the {machine.describe()} computes bf16")
    was = "the checkpoint's dtype" if checkpoint is None else f"the checkpoint's {checkpoint}"
    return Choice(
        precision.dtype,
        f"auto: {precision.dtype}, the precision's; {was} is not native on this "
        f"{machine.describe()}",
    )


def compute_dtype(requested: str, precision: ResolvedPrecision) -> Choice:
    """``quantization.compute_dtype``: what 4-bit weights are dequantized to; ``auto`` follows
    the precision, so that fp16 training never meets bf16 compute (the fp16 gradient scaler
    cannot unscale bf16 gradients)."""
    if requested != "auto":
        return Choice(requested, "as the recipe says")
    return Choice(precision.dtype, f"auto: the precision's ({precision.name})")


def storage_dtype(requested: str, compute: str, fsdp: bool) -> Choice:
    """``quantization.storage_dtype``: the container of packed 4-bit weights; ``auto`` is uint8,
    or under FSDP the compute dtype, since FSDP shards parameters of one dtype."""
    if requested != "auto":
        return Choice(requested, "as the recipe says")
    if fsdp:
        return Choice(compute, "auto: FSDP shards parameters of one dtype, the compute dtype's")
    return Choice("uint8", "auto: packed 4-bit weights in bytes")


def attention(requested: str, dtype: str, machine: Machine) -> Choice:
    """``model.attention``: FlashAttention-2 where the GPU, the package and a 16-bit dtype allow
    it, else PyTorch's SDPA (transformers' default)."""
    flash_ok = (
        machine.cuda
        and machine.flash_attn
        and (machine.compute_capability or (0, 0)) >= FLASH_ATTENTION_CAPABILITY
    )
    if requested == "flash_attention_2" and not flash_ok:
        raise RecipeError(
            "model.attention: got 'flash_attention_2', which needs a CUDA GPU of compute "
            f"capability 8.0 or more and the flash-attn package; this is a {machine.describe()}"
            f"{'' if machine.flash_attn else ' without flash-attn'}. Fix: set "
            "model.attention=auto (or sdpa)"
        )
    if requested != "auto":
        return Choice(requested, "as the recipe says")
    if flash_ok and dtype in ("bfloat16", "float16"):
        return Choice("flash_attention_2", "auto: flash-attn is installed and this GPU runs it")
    if not machine.cuda:
        return Choice("sdpa", "auto: PyTorch's SDPA (FlashAttention-2 needs a CUDA GPU)")
    why = "flash-attn is not installed" if not machine.flash_attn else "this GPU cannot run it"
    return Choice("sdpa", f"auto: PyTorch's SDPA ({why})")


def liger(requested: bool | str, machine: Machine) -> Choice:
    """``training.liger``: Liger's Triton kernels where the package and a CUDA GPU are there."""
    if requested is True and not (machine.cuda and machine.liger):
        raise RecipeError(
            "training.liger: got true, but Liger's kernels need a CUDA GPU and the liger-kernel "
            f"package; this is a {machine.describe()}"
            f"{'' if machine.liger else ' without liger-kernel'}. Fix: set training.liger=auto"
        )
    if requested is not True and requested != "auto":
        return Choice(False, "as the recipe says")
    if requested is True:
        return Choice(True, "as the recipe says")
    if machine.cuda and machine.liger:
        return Choice(True, "auto: liger-kernel is installed and this machine has a CUDA GPU")
    why = "no CUDA GPU" if not machine.cuda else "liger-kernel is not installed"
    return Choice(False, f"auto: off ({why})")
