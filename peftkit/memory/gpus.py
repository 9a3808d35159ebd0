"""GPUs the planner knows: memory, dense bf16/fp16 tensor throughput, an hourly price.

Throughput is the vendor's dense (no sparsity) 16-bit tensor-core peak from the data sheets;
prices are typical on-demand cloud prices per GPU in late 2026 and only a default: pass
``gpu_hourly_usd`` for yours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class GPU:
    memory_gb: float
    tflops: float
    hourly_usd: float
    bf16: bool = True


CATALOG: dict[str, GPU] = {
    "T4": GPU(16, 65, 0.35, bf16=False),
    "L4": GPU(24, 121, 0.70),
    "A10G": GPU(24, 125, 1.00),
    "RTX3090": GPU(24, 71, 0.40),
    "RTX4090": GPU(24, 165, 0.60),
    "L40S": GPU(48, 362, 1.50),
    "A100-40GB": GPU(40, 312, 1.30),
    "A100-80GB": GPU(80, 312, 1.80),
    "H100": GPU(80, 989, 2.50),
    "H200": GPU(141, 989, 3.50),
}

GpuName = Literal[tuple(CATALOG)]  # type: ignore[valid-type]
"""The catalog's names, as the type a recipe's ``budget.gpu`` is validated against."""
