"""The ``model`` section: which base model to fine-tune and how to load it."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from peftkit.core.section import Section
from peftkit.recipes.foreign_keys import suggestions

DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
"""Small enough to fine-tune on a laptop CPU, large enough to be useful; peftkit's demo model."""

Dtype = Literal["auto", "bfloat16", "float16", "float32"]
Attention = Literal["auto", "sdpa", "eager", "flash_attention_2"]


class ModelSection(Section):
    """The base model. A plain string in a recipe (``model: org/name``) means ``name``."""

    SUGGEST: ClassVar[dict[str, str]] = suggestions("model", model_id="name", path="name")

    name: str = Field(
        DEFAULT_MODEL,
        min_length=1,
        description="Hub model id (org/name) or path to a local model folder.",
    )
    dtype: Dtype = Field(
        "auto",
        description="dtype to load the unquantized weights in; 'auto' keeps the checkpoint's "
        "where the machine computes in it, else takes training.precision's (fp32 on a CPU "
        "without native bf16, fp16 on a GPU without bf16).",
    )
    attention: Attention = Field(
        "auto",
        description="Attention implementation (attn_implementation); 'auto' takes "
        "flash_attention_2 where flash-attn and a GPU that runs it are there, else sdpa.",
    )
    trust_remote_code: bool = Field(
        False,
        description="Run modelling code shipped with the checkpoint. Off unless you trust it.",
    )
