"""One training run of a configuration on a task, scored by one common evaluation: what
recipe_quality.py and short_runs.py share, so every figure they print is measured the same way.
"""

from __future__ import annotations

import argparse
import copy
import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from competitors import Baseline, Point
from report import DOC

from peftkit import recipes
from peftkit.demo.tasks import docs_task, json_task

SEEDS = (42, 43, 44)  # 42 is the recipes' own seed; every configuration gets the same ones
RECIPE = "peftkit recipe"
DOCS_CHUNK_CHARS = 700  # as in `peftkit demo`


@dataclass
class Task:
    """One task: its data, its recipe and the training budget every configuration gets."""

    name: str
    recipe: str
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    epochs: float
    eval_length: int
    schema: dict[str, Any] | None = None

    @property
    def examples(self) -> int:
        return round(self.epochs * len(self.train))


@dataclass(frozen=True)
class Contender:
    """A configuration in the comparison: the recipe, a sweep point or a published baseline."""

    name: str
    kind: str  # "recipe", "sweep" or "baseline"
    point: Point | None = None
    baseline: Baseline | None = None

    def build(self, task: Task, model: Path, **common: Any) -> tuple[Any, Any]:
        recipe = recipes.load(
            task.recipe, [f"model.name={model}", *(self.point.overrides if self.point else ())]
        )
        if self.baseline is not None:
            return self.baseline.build(recipe.training.max_length, **common)
        return recipe.build_lora_config(), recipe.build_sft_config(**common)


@dataclass
class Run:
    """What one training run cost and what it scored."""

    config: str
    budget: str
    seed: int
    steps: int
    seconds: float
    tokens: int
    scores: dict[str, float] = field(default_factory=dict)
    copied: bool = False  # a same-examples run that stands for the same wall time

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def tasks(quick: bool) -> list[Task]:
    json_train, json_eval, schema = json_task()
    docs_train, docs_eval = docs_task(chunk_chars=DOCS_CHUNK_CHARS)
    if quick:  # a smoke run of the script itself, not a measurement
        return [
            Task("json", "json-output", json_train[:8], json_eval[:4], 1.0, 128, schema),
            Task("docs", "domain-adaptation", docs_train[:4], docs_eval[:2], 1.0, 256),
        ]
    return [
        # 48 of the demo's 85 training records once; 32 held-out records of unseen MIME types
        # (one answer is 3.1 points of schema-valid rate). Small, so that ~45 trainings fit
        # `make bench`'s 45 minutes on 2 cores.
        Task("json", "json-output", json_train[:48], json_eval[:32], 1.0, 128, schema),
        # 16 chunks (~10k characters) of documentation; perplexity on 12 chunks of unseen topics.
        Task("docs", "domain-adaptation", docs_train[:16], docs_eval[:12], 1.0, 256),
    ]


def load(model_path: Path) -> tuple[Any, Any]:
    """A fresh copy of the base model in fp32 (as in the demo), and its tokenizer as `peftkit
    train` sets it up; the weights are read from disk once per process."""
    from peftkit.run.loading import load_tokenizer

    base = recipes.from_dict({"recipe": "custom", "model": {"name": str(model_path)}})
    return copy.deepcopy(_weights(model_path)), load_tokenizer(base)


@functools.cache
def _weights(model_path: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)


def dataset(rows: list[dict[str, Any]]) -> Any:
    from datasets import Dataset

    return Dataset.from_list(rows)


def common_args(output: Path, task: Task, seed: int, max_steps: int | None) -> dict[str, Any]:
    """The settings every configuration shares: the budget, the seed, no evaluation or saving."""
    return {
        "output_dir": str(output),
        "num_train_epochs": task.epochs,
        "max_steps": max_steps or -1,
        "seed": seed,
        "use_cpu": True,
        "eval_strategy": "no",
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "logging_strategy": "no",
        "include_num_input_tokens_seen": "non_padding",
    }


def train(
    task: Task,
    contender: Contender,
    model_path: Path,
    work: Path,
    seed: int = SEEDS[0],
    steps: int | None = None,
) -> Run:
    """Train one configuration and score its adapter (``steps``: the wall-time budget)."""
    from trl import SFTTrainer

    model, tokenizer = load(model_path)
    budget = "same examples" if steps is None else "same wall time"
    output = work / f"{task.name}-{contender.name}-{seed}-{steps}".replace(" ", "-")
    lora, args = contender.build(task, model_path, **common_args(output, task, seed, steps))
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset(task.train),
        processing_class=tokenizer,
        peft_config=lora,
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    run = Run(
        contender.name,
        budget,
        seed,
        trainer.state.global_step,
        seconds,
        trainer.state.num_input_tokens_seen,
    )
    run.scores = score(trainer.model, tokenizer, task, work)
    print(
        f"{task.name} | {budget} | {contender.name} | seed {seed} | {run.steps} steps, "
        f"{run.seconds:.0f} s, {run.tokens_per_second:.0f} tokens/s | "
        + ", ".join(f"{k} {v:.3f}" for k, v in run.scores.items()),
        flush=True,
    )
    return run


def score(model: Any, tokenizer: Any, task: Task, work: Path) -> dict[str, float]:
    """The common evaluation: the same held-out examples, tokenization and length for all."""
    from trl import SFTConfig, SFTTrainer

    from peftkit.evaluation import generate_answers, json_rates

    args = SFTConfig(
        output_dir=str(work / "eval"),
        use_cpu=True,
        bf16=True,
        gradient_checkpointing=False,
        per_device_eval_batch_size=8,
        max_length=task.eval_length,
        report_to="none",
        disable_tqdm=True,
    )
    held_out = dataset(task.eval)
    evaluator = SFTTrainer(  # SFTTrainer insists on a training set; it is never trained here
        model=model,
        args=args,
        train_dataset=held_out,
        eval_dataset=held_out,
        processing_class=tokenizer,
    )
    loss = evaluator.evaluate()["eval_loss"]
    scores = {"eval_loss": loss, "perplexity": math.exp(loss)}
    if task.schema is not None:
        prompts = [row["prompt"] for row in task.eval]
        answers = generate_answers(model, tokenizer, prompts, max_new_tokens=40, batch_size=64)
        scores.update(json_rates(answers.texts, task.schema))
    return scores


def options(description: str) -> argparse.Namespace:
    """The command line both scripts take (--model, --quick, --doc), with the HF libraries'
    progress bars and advice silenced and the model resolved (default: the demo's SmolLM2)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--model", type=Path, help="a model folder (default: SmolLM2 from the demo)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny budgets: check the script runs")
    parser.add_argument("--doc", type=Path, default=DOC, help="the Markdown file to write")
    parsed = parser.parse_args()
    from datasets.utils.logging import disable_progress_bar
    from transformers.utils import logging

    disable_progress_bar()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    if parsed.model is None:
        from peftkit.demo.pretrained import smollm2

        parsed.model = smollm2()
    return parsed
