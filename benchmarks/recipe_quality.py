"""Recipe quality: do the peftkit recipes train better adapters than the configurations users
usually start from, for the same compute?

On SmolLM2-135M-Instruct (offline, as in ``peftkit demo``) and the demo's two tasks, three
configurations train side by side in one process:

- the peftkit recipe: its ``LoraConfig`` and ``SFTConfig`` exactly as the recipe builds them;
- the classic PEFT/TRL example: LoRA r=8, alpha=32, dropout 0.05 on q_proj and v_proj,
  ``SFTConfig`` defaults otherwise (learning rate 2e-5) with batch 1;
- TRL's own defaults: ``SFTConfig()`` and ``LoraConfig()`` (targets from peft's mapping).

Every configuration gets the same base weights (fp32, bf16 autocast), the same training examples
in the same order and the same seed; ``use_cpu=True`` is the one setting the baselines need to
run here. Two budgets: the same number of training examples (each configuration's own schedule
over them), and the same wall time (the recipe's time; each baseline's step count comes from its
own measured step time). Every trained adapter is scored by one common evaluation: held-out loss
with the same tokenization and length for all, and the task metric (schema-valid JSON rate from
greedy answers to unseen prompts; perplexity on held-out documentation topics). No configuration
evaluates during training, so the recipe's early stopping does not run here.

``python recipe_quality.py`` rewrites the ``recipe-quality`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from report import DOC, git_revision, machine, write_section

from peftkit import recipes
from peftkit.demo_tasks import docs_task, json_task

CONFIG_NAMES = ("peftkit recipe", "classic PEFT/TRL example", "TRL defaults")


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
    metric: str = "perplexity"


@dataclass
class Run:
    """What one training run cost and what it scored."""

    config: str
    budget: str
    examples: int
    steps: int
    seconds: float
    tokens: int
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def tasks(quick: bool) -> list[Task]:
    json_train, json_eval, schema = json_task()
    docs_train, docs_eval = docs_task()
    if quick:  # a smoke run of the script itself, not a measurement
        return [
            Task("json", "json-output", json_train[:8], json_eval[:4], 1.0, 128, schema, "json"),
            Task("docs", "domain-adaptation", docs_train[:4], docs_eval[:2], 1.0, 256),
        ]
    return [
        # 1.5 epochs over the 85 training records: 128 examples, as in `peftkit demo`.
        Task("json", "json-output", json_train, json_eval, 1.5, 128, schema, "json"),
        # 48 training chunks (~50k characters), perplexity on 32 chunks of unseen topics.
        Task("docs", "domain-adaptation", docs_train[:48], docs_eval[:32], 1.0, 512),
    ]


def recipe_config(task: Task, model: Path, **common: Any) -> tuple[Any, Any]:
    recipe = recipes.load(task.recipe, [f"model.name={model}"])
    return recipe.build_lora_config(), recipe.build_sft_config(**common)


def classic_config(task: Task, model: Path, **common: Any) -> tuple[Any, Any]:
    from peft import LoraConfig
    from trl import SFTConfig

    lora = LoraConfig(
        r=8,
        lora_alpha=32,
        lora_dropout=0.05,
        target_modules=["q_proj", "v_proj"],
        bias="none",
        task_type="CAUSAL_LM",
    )
    return lora, SFTConfig(per_device_train_batch_size=1, **common)


def trl_defaults(task: Task, model: Path, **common: Any) -> tuple[Any, Any]:
    from peft import LoraConfig
    from trl import SFTConfig

    return LoraConfig(task_type="CAUSAL_LM"), SFTConfig(**common)


CONFIGS: dict[str, Callable[..., tuple[Any, Any]]] = dict(
    zip(CONFIG_NAMES, (recipe_config, classic_config, trl_defaults), strict=True)
)


def load(model_path: Path) -> tuple[Any, Any]:
    """The base model in fp32 (as in the demo) and its tokenizer as `peftkit train` sets it up."""
    import torch
    from transformers import AutoModelForCausalLM

    from peftkit.loading import load_tokenizer

    base = recipes.from_dict({"recipe": "custom", "model": {"name": str(model_path)}})
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    return model, load_tokenizer(base)


def dataset(rows: list[dict[str, Any]]) -> Any:
    from datasets import Dataset

    return Dataset.from_list(rows)


def common_args(output: Path, task: Task, max_steps: int | None) -> dict[str, Any]:
    """The settings every configuration shares: the budget, and no evaluation or saving."""
    return {
        "output_dir": str(output),
        "num_train_epochs": task.epochs,
        "max_steps": max_steps or -1,
        "use_cpu": True,
        "eval_strategy": "no",
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "logging_strategy": "no",
        "include_num_input_tokens_seen": "non_padding",
    }


def train_one(
    task: Task, config: str, model_path: Path, work: Path, budget: str, steps: int | None = None
) -> Run:
    from trl import SFTTrainer

    model, tokenizer = load(model_path)
    output = work / f"{task.name}-{config}-{budget}".replace(" ", "-").replace("/", "-")
    lora, args = CONFIGS[config](task, model_path, **common_args(output, task, steps))
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
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
    steps_done = trainer.state.global_step
    # With a step budget (unpacked baselines only) every step takes a full batch.
    examples = round(task.epochs * len(task.train)) if steps is None else steps_done * per_step
    run = Run(config, budget, examples, steps_done, seconds, trainer.state.num_input_tokens_seen)
    run.scores = score(trainer.model, tokenizer, task, work)
    print(
        f"{task.name} | {budget} | {config} | {run.examples} examples, {run.steps} steps, "
        f"{run.seconds:.0f} s, {run.tokens_per_second:.0f} tokens/s | {run.scores}",
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
        activation_checkpointing=False,
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
        answers = generate_answers(model, tokenizer, prompts, max_new_tokens=40, batch_size=32)
        scores.update(json_rates(answers.texts, task.schema))
    return scores


def base_scores(task: Task, model_path: Path, work: Path) -> dict[str, float]:
    model, tokenizer = load(model_path)
    return score(model, tokenizer, task, work)


def run_task(task: Task, model_path: Path, work: Path) -> tuple[dict[str, float], list[Run]]:
    base = base_scores(task, model_path, work)
    runs = [train_one(task, config, model_path, work, "same examples") for config in CONFIG_NAMES]
    recipe = runs[0]
    same_time = [replace(recipe, budget="same wall time")]
    for run in runs[1:]:
        per_step = run.seconds / max(run.steps, 1)
        steps = max(1, round(recipe.seconds / per_step))
        if steps == run.steps:
            same_time.append(replace(run, budget="same wall time"))
        else:
            same_time.append(train_one(task, run.config, model_path, work, "same wall time", steps))
    return base, runs + same_time


def metric_cell(task: Task, scores: dict[str, float]) -> str:
    if task.metric == "json":
        return f"{scores['schema_valid_rate']:.0%} ({scores['json_valid_rate']:.0%} JSON)"
    return f"{scores['perplexity']:.2f}"


def better(task: Task, a: dict[str, float], b: dict[str, float]) -> bool:
    if task.metric == "json":
        return a["schema_valid_rate"] > b["schema_valid_rate"]
    return a["perplexity"] < b["perplexity"]


def describe(config: str, task: Task, model_path: Path) -> str:
    """One line of what a configuration sets, read back from the built objects."""
    lora, args = CONFIGS[config](task, model_path, **common_args(Path("unused"), task, None))
    targets = lora.target_modules
    if targets is None:
        targets = "peft default (q_proj, v_proj)"
    elif not isinstance(targets, str):
        targets = ", ".join(sorted(targets))
    return (
        f"| {config} | {lora.r} / {lora.lora_alpha:g} / {lora.lora_dropout:g} | {targets} | "
        f"{args.learning_rate:g} {args.lr_scheduler_type.value}, warmup {args.warmup_steps:g} "
        f"| {args.per_device_train_batch_size} x {args.gradient_accumulation_steps} | "
        f"{args.max_length} | {'yes' if args.packing else 'no'} | "
        f"{'yes' if args.activation_checkpointing else 'no'} |"
    )


def task_section(task: Task, base: dict[str, float], runs: list[Run], model_path: Path) -> str:
    metric = "schema-valid rate" if task.metric == "json" else "perplexity"
    lines = [
        f"### {task.name}: `{task.recipe}` recipe",
        "",
        f"{len(task.train)} training examples x {task.epochs:g} "
        f"epoch{'' if task.epochs == 1 else 's'} = "
        f"{round(task.epochs * len(task.train))} examples for the same-examples budget; "
        f"{len(task.eval)} held-out examples, scored with max length {task.eval_length}. "
        f"Untrained model: held-out loss {base['eval_loss']:.3f}, {metric} "
        f"{metric_cell(task, base)}.",
        "",
        "| budget | configuration | examples | optimizer steps | wall s | tokens/s "
        f"| held-out loss | {metric} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        name = f"**{run.config}**" if run.config == CONFIG_NAMES[0] else run.config
        lines.append(
            f"| {run.budget} | {name} | {run.examples} | {run.steps} | {run.seconds:.0f} | "
            f"{run.tokens_per_second:.0f} | {run.scores['eval_loss']:.3f} | "
            f"{metric_cell(task, run.scores)} |"
        )
    lines += ["", verdict(task, runs), speed(runs), ""]
    lines += [
        "| configuration | LoRA r / alpha / dropout | targets | learning rate | batch x "
        "accumulation | max length | packing | activation checkpointing |",
        "|---|---|---|---|---|---|---|---|",
        *(describe(config, task, model_path) for config in CONFIG_NAMES),
    ]
    return "\n".join(lines)


def verdict(task: Task, runs: list[Run]) -> str:
    sentences = []
    for budget in ("same examples", "same wall time"):
        recipe, *baselines = [run for run in runs if run.budget == budget]
        beaten = [b.config for b in baselines if not better(task, recipe.scores, b.scores)]
        if beaten:
            sentences.append(
                f"At the {budget}, the recipe is **not ahead** of: {', '.join(beaten)}."
            )
        else:
            sentences.append(f"At the {budget}, the recipe is ahead of both baselines.")
    return " ".join(sentences)


def speed(runs: list[Run]) -> str:
    """Where the recipe pays per token, so a win on quality is not mistaken for one on speed."""
    recipe, *baselines = [run for run in runs if run.budget == "same examples"]
    faster = [b for b in baselines if b.tokens_per_second > recipe.tokens_per_second]
    if not faster:
        return "The recipe also trains the most tokens per second."
    named = ", ".join(f"{b.config} {b.tokens_per_second:.0f}" for b in faster)
    return (
        f"Per token the recipe is slower ({recipe.tokens_per_second:.0f} tokens/s; {named}): "
        "it trains adapters on every linear layer, where the baselines adapt q_proj and v_proj "
        "only."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, help="a model folder (default: SmolLM2 from the demo)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny budgets: check the script runs")
    parser.add_argument("--doc", type=Path, default=DOC, help="the Markdown file to write")
    options = parser.parse_args()
    from datasets.utils.logging import disable_progress_bar
    from transformers.utils import logging

    disable_progress_bar()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    if options.model is None:
        from peftkit.pretrained import smollm2

        options.model = smollm2()
    started = time.perf_counter()
    sections = []
    with tempfile.TemporaryDirectory() as work:
        for task in tasks(options.quick):
            base, runs = run_task(task, options.model, Path(work))
            sections.append(task_section(task, base, runs, options.model))
    minutes = (time.perf_counter() - started) / 60
    body = "\n\n".join(
        [
            "## Recipe quality against the usual configurations",
            f"`benchmarks/recipe_quality.py` at {git_revision()} on {machine()}; "
            f"model `{options.model.name}`, {minutes:.0f} minutes in all. Each configuration "
            "trains on the same examples in the same order from the same fp32 weights (bf16 "
            "autocast); one common evaluation scores every adapter. The wall-time budget is "
            "the recipe's training time; each baseline gets the steps its own measured step "
            "time allows. Tokens/s counts the non-padding tokens (prompt and answer) trained "
            "on per second of training. No configuration evaluates during training, so the "
            "recipe's early stopping does not act here. Wall times move between runs on a "
            "shared machine; losses and rates repeat (fixed seeds).",
            *sections,
        ]
    )
    write_section("recipe-quality", body, options.doc)
    print(body)


if __name__ == "__main__":
    main()
