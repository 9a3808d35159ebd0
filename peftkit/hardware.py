"""Hardware-dependent choices, made in one place and visibly.

A recipe says what it wants (``precision: auto``); this module decides what the machine at hand
can do. The bare ``SFTConfig`` asks for bf16 and crashes on a CPU-only machine; peftkit resolves
``auto`` instead: bf16 where the GPU (or CPU, via AVX512-BF16/AMX) supports it, else fp16 on GPU,
else fp32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from peftkit.errors import RecipeError

ResolvedName = Literal["bf16", "fp16", "fp32"]


@dataclass(frozen=True)
class ResolvedPrecision:
    """The precision training will use, whether it runs on the CPU, and why."""

    name: ResolvedName
    use_cpu: bool
    reason: str


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 in hardware (AVX512-BF16 or AMX)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return False
    flags = cpuinfo.read_text(errors="ignore")
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str) -> ResolvedPrecision:
    """Turn ``training.precision`` into what this machine runs; explicit choices are checked."""
    import torch

    if torch.cuda.is_available():
        bf16_ok = torch.cuda.is_bf16_supported()
        if requested == "auto":
            name: ResolvedName = "bf16" if bf16_ok else "fp16"
            return ResolvedPrecision(name, False, f"auto: GPU {'has' if bf16_ok else 'lacks'} bf16")
        if requested == "bf16" and not bf16_ok:
            raise RecipeError(
                "training.precision: got 'bf16', but this GPU does not support bfloat16. "
                "Fix: set training.precision=auto, or training.precision=fp16 with "
                "model.dtype=float16 and quantization.compute_dtype=float16"
            )
        return ResolvedPrecision(requested, False, "as the recipe says")  # type: ignore[arg-type]
    if requested == "fp16":
        raise RecipeError(
            "training.precision: got 'fp16', but fp16 mixed precision needs a CUDA GPU and this "
            "machine has none. Fix: set training.precision=auto (or bf16, or fp32)"
        )
    if requested == "auto":
        native = cpu_has_native_bf16()
        name = "bf16" if native else "fp32"
        why = "CPU has native bf16" if native else "CPU lacks native bf16"
        return ResolvedPrecision(name, True, f"auto: no GPU; {why}")
    return ResolvedPrecision(requested, True, "as the recipe says; no GPU")  # type: ignore[arg-type]
