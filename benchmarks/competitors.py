"""What the recipes are measured against: three published configurations a careful practitioner
would start from, and a sweep one axis at a time around the recipe.

Each baseline takes learning rate, rank, alpha, dropout, targets, batch, schedule, warmup and
optimizer exactly as its source publishes them; what could not stay as published (a step count
or a length written for a dataset thousands of times larger) is scaled to the task, and
``scaled`` says how. Settings a source leaves unset keep the library defaults (TRL's
``SFTConfig``: gradient checkpointing on, max length 1024, linear schedule, no warmup).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass(frozen=True)
class Baseline:
    """One published configuration: its source, its values and what had to be scaled."""

    name: str
    source: str
    lora: dict[str, Any]
    sft: dict[str, Any] = field(default_factory=dict)
    scaled: str = "nothing"
    # The task's max length -> SFTConfig settings that depend on it (None: keep as published).
    length: Callable[[int], dict[str, Any]] | None = None

    def build(self, max_length: int, **common: Any) -> tuple[Any, Any]:
        from peft import LoraConfig
        from trl import SFTConfig

        sft = {**self.sft, **(self.length(max_length) if self.length else {})}
        lora = LoraConfig(task_type="CAUSAL_LM", bias="none", **self.lora)
        return lora, SFTConfig(**sft, **common)


UNSLOTH_WARMUP = 5 / 60  # warmup_steps = 5 of max_steps = 60

BASELINES = (
    Baseline(
        name="TRL docs LoRA example",
        source=(
            'huggingface/trl docs/source/peft_integration.md, SFT "With LoRA" (TRL 1.9, '
            "35def3e): `--learning_rate 2.0e-4 --num_train_epochs 1 "
            "--per_device_train_batch_size 2 --gradient_accumulation_steps 8 --use_peft "
            "--lora_r 32 --lora_alpha 16`, its Python form `LoraConfig(r=32, lora_alpha=16, "
            'lora_dropout=0.05, target_modules=["q_proj", "v_proj"])`'
        ),
        lora={
            "r": 32,
            "lora_alpha": 16,
            "lora_dropout": 0.05,
            "target_modules": ["q_proj", "v_proj"],
        },
        sft={
            "learning_rate": 2e-4,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 8,
        },
        scaled="1 epoch -> the task's budget",
    ),
    Baseline(
        name="Unsloth notebook",
        source=(
            "unslothai/notebooks nb/Llama3.2_(1B_and_3B)-Conversational.ipynb (8081c7e): "
            "r=16, lora_alpha=16, lora_dropout=0, 7 projections, gradient checkpointing, "
            "batch 2 x 4, warmup_steps=5, max_steps=60, learning_rate=2e-4, adamw_8bit, "
            "weight_decay=0.001, linear, train_on_responses_only"
        ),
        lora={"r": 16, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ALL_LINEAR},
        sft={
            "learning_rate": 2e-4,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 4,
            "warmup_steps": UNSLOTH_WARMUP,
            "optim": "adamw_8bit",
            "weight_decay": 0.001,
            "lr_scheduler_type": "linear",
            "max_length": 2048,
            "completion_only_loss": True,
        },
        scaled="max_steps 60 -> the task's budget; warmup 5 steps -> the same share, 5/60",
    ),
    Baseline(
        name="axolotl lora-1b example",
        source=(
            "axolotl-ai-cloud/axolotl examples/llama-3/lora-1b.yml (e4032fc): lora_r 16, "
            "lora_alpha 32, lora_dropout 0.05, 7 projections, sequence_len 2048, "
            "sample_packing, micro_batch_size 2, gradient_accumulation_steps 2, num_epochs 1, "
            "adamw_8bit, cosine, learning_rate 0.0002, warmup_ratio 0.1, gradient_checkpointing"
        ),
        lora={"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ALL_LINEAR},
        sft={
            "learning_rate": 2e-4,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 2,
            "warmup_steps": 0.1,
            "optim": "adamw_8bit",
            "lr_scheduler_type": "cosine",
            "weight_decay": 0.0,
            "packing": True,
        },
        scaled=(
            "1 epoch -> the task's budget; sequence_len 2048 -> the recipe's max length (packed "
            "2048-token rows would put the whole budget in one or two optimizer steps)"
        ),
        length=lambda max_length: {"max_length": max_length},
    ),
)


@dataclass(frozen=True)
class Point:
    """One sweep point: the recipe with some fields overridden (the recipe's own syntax)."""

    axis: str
    label: str
    overrides: tuple[str, ...]


def sweep(learning_rate: float, rank: int, alpha: float) -> list[Point]:
    """One axis at a time around the recipe: learning rate x1/4, x1/2, x2, x4; rank x1/2 and
    x2 at the recipe's alpha/r ratio (so the update's scale stays the same); attention-only
    targets against the recipe's all-linear."""
    ratio = alpha / rank
    points = [
        Point(
            "learning rate",
            f"lr {learning_rate * f:g}",
            (f"training.learning_rate={learning_rate * f:g}",),
        )
        for f in (0.25, 0.5, 2, 4)
    ]
    points += [
        Point(
            "rank",
            f"r {int(rank * f)}",
            (f"lora.r={int(rank * f)}", f"lora.alpha={rank * f * ratio:g}"),
        )
        for f in (0.5, 2)
    ]
    points.append(
        Point("targets", "attention only", (f"lora.target_modules=[{','.join(ATTENTION)}]",))
    )
    return points
