"""The ``distributed`` section: how several GPUs share the work."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from peftkit.core.section import Section


class DistributedSection(Section):
    """Multi-device strategy; accelerate/torchrun launch the processes."""

    strategy: Literal["none", "ddp", "fsdp"] = Field(
        "none",
        description="'ddp' replicates the model on each device; 'fsdp' shards it (needed when one "
        "device cannot hold the model).",
    )
