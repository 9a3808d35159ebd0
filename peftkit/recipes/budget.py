"""The ``budget`` section of QLoRABudget: the GPU (memory, count, price) and the data size the
planner (``peftkit plan``) fits the run to."""

from __future__ import annotations

from pydantic import Field

from peftkit.core.limits import MAX_GPUS
from peftkit.core.section import Section
from peftkit.memory.gpus import GpuName


class BudgetSection(Section):
    """What the run may use; `peftkit plan` picks settings that fit it."""

    gpu: GpuName | None = Field(
        None, description="GPU model; gives its memory, throughput and a default hourly price."
    )
    gpu_memory_gb: float | None = Field(
        None, gt=0, description="Memory per GPU in GB; overrides the named GPU's."
    )
    gpus: int = Field(1, ge=1, le=MAX_GPUS, description="Number of GPUs.")
    usd: float | None = Field(None, gt=0, description="Money the run may cost, in US dollars.")
    gpu_hourly_usd: float | None = Field(
        None, gt=0, description="Price of one GPU per hour; defaults to the named GPU's."
    )
    dataset_tokens: int | None = Field(
        None, ge=1, description="Tokens in the training data (for time and cost)."
    )
