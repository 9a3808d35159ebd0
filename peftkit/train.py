"""The main job: a recipe, a model and data in; an adapter, the resolved recipe, metrics and a
plot out. ``peftkit train`` is a thin wrapper around :func:`train`.

Every input is checked and loaded before anything is written, and the results are swapped into
the output folder only at the end (:mod:`peftkit.outputs`). Only the main process writes files;
under ``torchrun`` every rank trains and evaluates. Ctrl-C stops training cleanly: the best
adapter so far is restored and saved like at a normal end, and ``metrics.json`` records the
interruption; when the output held an earlier run, that run is kept and the interrupted one
discarded.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from peftkit.errors import RecipeError
from peftkit.outputs import OutputFolder, check_other_output, check_output
from peftkit.processes import is_main_process, world_size
from peftkit.recipes.base import Recipe

log = logging.getLogger("peftkit")


def _trainer_class() -> type:
    from trl import SFTTrainer

    from peftkit.callbacks import GradientNormMixin

    class PeftkitSFTTrainer(GradientNormMixin, SFTTrainer):
        """SFTTrainer whose callbacks see the gradient norm of every step."""

    return PeftkitSFTTrainer


def _eval_prompts(dataset: Any, fmt: str, limit: int) -> tuple[list[Any], list[Any]]:
    """Held-out prompts (and the reference answers) for generation."""
    rows = dataset.select(range(min(limit, len(dataset))))
    if fmt == "prompt-completion":
        return list(rows["prompt"]), list(rows["completion"])
    prompts, answers = [], []
    for messages in rows["messages"]:
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        prompts.append(messages[:last])
        answers.append(messages[last]["content"])
    return prompts, answers


def _evaluate(trainer: Any, recipe: Recipe, splits: Any, tokenizer: Any) -> dict[str, Any]:
    """What the recipe's user cares about: loss and perplexity; for JSON, the valid rates."""
    from peftkit.evaluation import generate_answers, json_rates

    found: dict[str, Any] = {}
    if splits.eval is None:
        return found
    loss = trainer.evaluate()["eval_loss"]  # outside train(): the callbacks leave it alone
    found["eval_loss"] = loss
    found["perplexity"] = math.exp(loss) if loss < 50 else math.inf
    settings = getattr(recipe, "generation", None)
    if settings is not None and splits.format != "text":
        prompts, _ = _eval_prompts(splits.eval, splits.format, settings.samples)
        answers = generate_answers(
            trainer.model, tokenizer, prompts, settings.max_new_tokens, settings.batch_size
        )
        found.update(json_rates(answers, recipe.json_schema))  # type: ignore[attr-defined]
        found["examples"] = [
            {"prompt": p if isinstance(p, str) else p[-1]["content"], "answer": a}
            for p, a in list(zip(prompts, answers, strict=True))[:3]
        ]
    return found


def _peak_memory_gb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def train(
    recipe: Recipe,
    output: str | Path,
    overwrite: bool = False,
    sources: Mapping[str, str | Path] | None = None,
) -> dict[str, Any]:
    """Train ``recipe`` on its data (``data.train_path``, and ``data.eval_path`` or a held-out
    share) and write the outputs to ``output``; return the metrics.

    ``sources`` names other files the run read (the recipe file), which the output must not
    touch. ``metrics["output"]`` is the folder written, or None when an interrupted run was
    discarded to keep an earlier one.
    """
    from peftkit import data as data_module
    from peftkit.loading import check_model, load_model, load_tokenizer

    data, eval_data = recipe.data.train_path, recipe.data.eval_path
    if data is None:
        raise RecipeError("no training data. Fix: pass --data FILE (or set data.train_path).")
    inputs = {"--data": data, "--eval-data": eval_data, "--model": recipe.model.name}
    target = check_output(output, {**inputs, **(sources or {})}, overwrite)
    _check_run_settings(recipe, target, inputs)
    splits = data_module.prepare(recipe, data, eval_data)
    recipe = _resolved(recipe, splits.format)
    _check_monitored_metric(recipe)
    check_model(recipe, recipe.training.max_length)
    tokenizer = load_tokenizer(recipe)
    data_module.check_chat(splits, tokenizer)
    model = load_model(recipe)
    with OutputFolder(target, "train", is_main_process()) as folder:
        trainer = _build_trainer(recipe, model, tokenizer, splits, folder.staging)
        before = _evaluate(trainer, recipe, splits, tokenizer)
        started, interrupted = time.perf_counter(), False
        try:
            trainer.train()
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted: restoring the best adapter so far")
            _restore_best(trainer)
        train_seconds = time.perf_counter() - started
        after: dict[str, Any] = {}
        if not interrupted:
            try:
                after = _evaluate(trainer, recipe, splits, tokenizer)
            except KeyboardInterrupt:
                interrupted = True
        metrics = _metrics(recipe, trainer, splits, before, after, train_seconds, interrupted)
        if interrupted and folder.replaces:
            folder.discard()
            return {**metrics, "output": None}
        metrics["output"] = str(target)
        if is_main_process():
            _write_outputs(recipe, trainer, tokenizer, metrics, folder.staging)
        folder.commit()
    return metrics


def _check_run_settings(recipe: Recipe, target: Path, inputs: Mapping[str, Any]) -> None:
    """What the recipe asks of this run, checked before any data or model loads: a folder
    early stopping writes, and a strategy that needs several processes."""
    from peftkit.callbacks.saving import check_target

    best = recipe.callbacks.early_stopping.save_best_to
    if best is not None and recipe.callbacks.early_stopping.enabled:
        field = "callbacks.early_stopping.save_best_to"
        check_other_output(best, field, target, inputs)
        check_target(Path(best).expanduser(), field)
    if recipe.distributed.strategy == "fsdp" and world_size() == 1:
        raise RecipeError(
            "distributed.strategy: got 'fsdp', which shards the model across several "
            "processes, and this is one process. Fix: launch with torchrun or accelerate "
            "launch (docs/training.md), or set distributed.strategy=none."
        )


def _check_monitored_metric(recipe: Recipe) -> None:
    """Early stopping must watch a metric this run produces: found now, not after the model
    loaded and trained until the first evaluation."""
    stopping = recipe.callbacks.early_stopping
    if not stopping.enabled or recipe.training.eval_strategy == "no":
        return
    produced = recipe.train_metrics()
    if stopping.metric in produced or f"eval_{stopping.metric}" in produced:
        return
    raise RecipeError(
        f"callbacks.early_stopping.metric: got '{stopping.metric}', which `peftkit train` does "
        f"not produce with this recipe (it produces: {', '.join(produced)}). Fix: "
        f"{recipe.metric_fix(stopping.metric)}."
    )


def _resolved(recipe: Recipe, fmt: str) -> Recipe:
    """The recipe as it runs: the detected format, and absolute data and model paths, so that
    recipe.yaml reruns the same run from any folder (and the adapter names its base so)."""
    from peftkit.loading import is_local

    def absolute(path: str) -> str:
        return str(Path(path).expanduser().resolve())

    data = recipe.data
    section = data.model_copy(
        update={
            "format": fmt,
            "train_path": absolute(data.train_path or ""),
            "eval_path": None if data.eval_path is None else absolute(data.eval_path),
        }
    )
    name = recipe.model.name
    model = recipe.model.model_copy(update={"name": absolute(name) if is_local(name) else name})
    return recipe.model_copy(update={"data": section, "model": model})


def _build_trainer(recipe: Recipe, model: Any, tokenizer: Any, splits: Any, output: Path) -> Any:
    callbacks = recipe.build_callbacks(best_adapter_dir=output / "best-adapter")
    settings = getattr(recipe, "generation", None)
    if settings is not None and settings.during_training and splits.format != "text":
        from peftkit.evaluation.callback import JsonAnswers

        prompts, _ = _eval_prompts(splits.eval, splits.format, settings.during_training)
        schema = recipe.json_schema  # type: ignore[attr-defined]
        answers = JsonAnswers(
            tokenizer, prompts, schema, settings.max_new_tokens, settings.batch_size
        )
        callbacks.insert(0, answers)  # before EarlyStopping, which may monitor its rates
    overrides: dict[str, Any] = {"include_num_input_tokens_seen": "all"}
    trainer = _trainer_class()(
        model=model,
        args=recipe.build_sft_config(output / "checkpoints", **overrides),
        train_dataset=splits.train,
        eval_dataset=splits.eval,
        processing_class=tokenizer,
        peft_config=recipe.build_lora_config(),
        callbacks=callbacks,
    )
    for name, dataset in (
        ("training", trainer.train_dataset),
        ("evaluation", trainer.eval_dataset),
    ):
        if dataset is not None and len(dataset) == 0:
            raise RecipeError(
                f"every {name} example was dropped: at training.max_length="
                f"{recipe.training.max_length} tokens no completion is left after truncation. "
                "Fix: raise training.max_length, or shorten the prompts."
            )
    return trainer


def _restore_best(trainer: Any) -> None:
    from peftkit.callbacks import EarlyStopping, find

    stopper = _maybe(find, trainer, EarlyStopping)
    if stopper is not None:
        stopper.restore(trainer.model)


def _metrics(
    recipe: Recipe,
    trainer: Any,
    splits: Any,
    before: dict[str, Any],
    after: dict[str, Any],
    train_seconds: float,
    interrupted: bool,
) -> dict[str, Any]:
    from peftkit.callbacks import EarlyStopping, OverfitDetector, find

    stopper = _maybe(find, trainer, EarlyStopping)
    detector = _maybe(find, trainer, OverfitDetector)
    stops = [h for h in trainer.state.log_history if "peftkit_stop" in h]
    last = stops[-1] if stops else {}
    tokens = trainer.state.num_input_tokens_seen
    args = trainer.args
    return {
        "recipe": recipe.recipe,
        "model": recipe.model.name,
        "data": {
            "format": splits.format,
            "train_rows": len(splits.train),
            "eval_rows": 0 if splits.eval is None else len(splits.eval),
            "eval_source": splits.eval_source,
            "notes": list(splits.notes),
        },
        "before": before,
        "after": after,
        "stop_reason": "interrupted" if interrupted else last.get("stop_reason"),
        "stop_message": last.get("stop_message"),
        "stop_step": last.get("step"),
        "stopped_by": last.get("peftkit_stop"),
        "best_step": None if stopper is None else stopper.best_step,
        "best_metric": None if stopper is None else stopper.best,
        "restored_best": None if stopper is None else stopper.restored,
        "overfit_detected_step": None if detector is None else detector.detected_step,
        "global_step": trainer.state.global_step,
        "train_time_s": round(train_seconds, 2),
        "train_tokens": tokens,
        "tokens_per_s": round(tokens / train_seconds, 1) if train_seconds > 0 else None,
        "peak_memory_gb": round(_peak_memory_gb(), 3),
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
    }


def _write_outputs(
    recipe: Recipe, trainer: Any, tokenizer: Any, metrics: dict[str, Any], output: Path
) -> None:
    from peftkit.plot import plot_training

    trainer.model.save_pretrained(output / "adapter")
    tokenizer.save_pretrained(output / "adapter")
    # The adapter carries its recipe: `peftkit merge` needs its quantization wherever it goes.
    for place in (output, output / "adapter"):
        (place / "recipe.yaml").write_text(recipe.to_yaml())
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    plot_training(
        trainer.state.log_history,
        output / "training.png",
        metrics["best_step"],
        metrics["stop_step"],
        metrics["overfit_detected_step"],
        f"{recipe.recipe} on {Path(recipe.model.name).name}",
    )


def _maybe(find: Any, trainer: Any, kind: type) -> Any:
    try:
        return find(trainer, kind)
    except LookupError:
        return None
