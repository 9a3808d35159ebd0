"""The main job: a recipe, a model and data in; an adapter, the resolved recipe, metrics and a
plot out. ``peftkit train`` is a thin wrapper around :func:`train`.

Every input is checked and loaded before anything is written (:mod:`peftkit.run.prepare`, which
`peftkit check` shares), and the results are swapped into the output folder only at the end
(:mod:`peftkit.run.outputs`). Only the main process writes files; under ``torchrun`` every rank
trains and evaluates. Ctrl-C stops training cleanly: the best adapter so far is restored and
saved like at a normal end, and ``metrics.json`` records the interruption; when the output held
an earlier run, that run is kept and the interrupted one discarded.

A run always loads the HF stack, so this module imports it at the top; `peftkit check` and
validating a recipe never import this module.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers.trainer_callback import ProgressCallback
from trl import SFTTrainer

from peftkit.callbacks import EarlyStopping, GradientNormMixin, OverfitDetector, find
from peftkit.callbacks.saving import check_target
from peftkit.core.errors import RecipeError
from peftkit.core.processes import is_main_process, world_size
from peftkit.core.quiet import training_progress
from peftkit.data import check_chat
from peftkit.data.audit import Audit, audit, refuse_errors
from peftkit.evaluation.callback import JsonAnswers
from peftkit.evaluation.held_out import evaluate, held_out_prompts
from peftkit.recipes.base import Recipe
from peftkit.recipes.keywords import check_extras
from peftkit.run import loading
from peftkit.run.card import CARD, adapter_card
from peftkit.run.checkpoints import BEST_ADAPTER, CHECKPOINTS, Resume, check_checkpoint, plan_resume
from peftkit.run.hub import check_repo, push
from peftkit.run.outputs import (
    ADAPTER,
    LOGS,
    METRICS,
    PLOT,
    RECIPE,
    OutputFolder,
    check_other_output,
    check_output,
    output_path,
    staging_of,
)
from peftkit.run.plot import plot_training
from peftkit.run.prepare import prepare

log = logging.getLogger(__name__)


def _trainer_class() -> type:
    class PeftkitSFTTrainer(GradientNormMixin, SFTTrainer):
        """SFTTrainer whose callbacks see the gradient norm of every step."""

    return PeftkitSFTTrainer


def _peak_memory_gb() -> float | None:
    """Peak GPU memory, or on a CPU this process's peak resident memory, in GB (3 decimals);
    None where the platform does not report it (Windows has no ``resource`` module)."""
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 1e9, 3)
    try:
        import resource  # POSIX only: imported here so that peftkit.run.train imports everywhere
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, KiB elsewhere
    return round(peak * (1 if sys.platform == "darwin" else 1024) / 1e9, 3)


def train(
    recipe: Recipe,
    output: str | Path,
    *,
    overwrite: bool = False,
    sources: Mapping[str, str | Path] | None = None,
    resume: str | Path | None = None,
    push_to_hub: str | None = None,
    check: bool = True,
    on_audit: Callable[[Audit], None] | None = None,
    fork: bool = False,
) -> dict[str, Any]:
    """Train ``recipe`` on its data (``data.train_path``, and ``data.eval_path`` or a held-out
    share) and write the outputs to ``output``; return the metrics.

    ``sources`` names other files the run read (the recipe file), which the output must not
    touch. ``resume`` continues from a checkpoint (:func:`peftkit.run.checkpoints.find_checkpoint`:
    ``"auto"`` or a path) of this output's run, and replaces the output it continues; with
    ``fork``, a checkpoint of another run starts a new run in ``output``. ``push_to_hub``
    uploads the adapter to that Hub repository at the end. ``check`` audits the data as the
    trainer will see it (:mod:`peftkit.data.audit`) before the model loads, stops on its
    errors, hands the audit to ``on_audit`` and keeps it in ``metrics["audit"]``.
    ``metrics["output"]`` is the folder written, or None when an interrupted run was discarded
    to keep an earlier one.
    """
    target, resumed = _checked_output(recipe, output, overwrite, sources, resume, fork)
    _check_run_settings(recipe, target, push_to_hub)
    prepared = prepare(recipe)
    recipe, splits, tokenizer = prepared.recipe, prepared.splits, prepared.tokenizer
    if resumed is not None:
        check_checkpoint(resumed.checkpoint, recipe)  # with the learning rate auto gave
    check_chat(splits, tokenizer)
    audited = _audit(recipe, splits, tokenizer, on_audit, prepared.config) if check else None
    model = loading.load_model(recipe, prepared.config)
    continues = resumed is not None and staging_of(target) in resumed.checkpoint.parents
    with OutputFolder(target, "train", is_main_process(), resume=continues) as folder:
        checkpoint = _continued(folder, resumed, recipe)
        trainer = _build_trainer(recipe, model, tokenizer, splits, folder.staging)
        metrics = _fit(trainer, recipe, splits, checkpoint)
        metrics["resolved"] = prepared.resolved.as_dict()
        if audited is not None:
            metrics["audit"] = audited.as_dict()
        if metrics["stop_reason"] == "interrupted" and folder.replaces:
            folder.abandon("was interrupted")
            return {**metrics, "output": None}
        metrics["output"] = str(target)
        if is_main_process():
            adapter_name = push_to_hub or str(target / ADAPTER)
            notes = prepared.resolved.notes()
            _write_outputs(recipe, trainer, tokenizer, metrics, folder.staging, adapter_name, notes)
        folder.commit()
    if push_to_hub is not None and is_main_process():
        metrics["pushed_to"] = push(target / ADAPTER, push_to_hub)
    return metrics


def _checked_output(
    recipe: Recipe,
    output: str | Path,
    overwrite: bool,
    sources: Mapping[str, str | Path] | None,
    resume: str | Path | None,
    fork: bool,
) -> tuple[Path, Resume | None]:
    """The output folder, and the checkpoint ``resume`` names (checked whole and against the
    recipe), before any data or model loads."""
    if recipe.data.train_path is None:
        raise RecipeError("no training data. Fix: pass --data FILE (or set data.train_path).")
    named = output_path(output)
    resumed = plan_resume(resume, named, staging_of(named), overwrite, fork)
    if resumed is not None:
        check_checkpoint(resumed.checkpoint, recipe)
    own = resumed is not None and resumed.own
    inputs = {**_inputs(recipe), **(sources or {})}
    return check_output(output, inputs, overwrite or own), resumed


def _inputs(recipe: Recipe) -> dict[str, Any]:
    """What the run reads, by the option that names it: the output must touch none of them."""
    data = recipe.data
    return {"--data": data.train_path, "--eval-data": data.eval_path, "--model": recipe.model.name}


def _fit(trainer: Any, recipe: Recipe, splits: Any, checkpoint: Path | None) -> dict[str, Any]:
    """Evaluate, train (from ``checkpoint`` if given) and evaluate again; the run's metrics.
    Ctrl-C stops cleanly at any point, with the best adapter so far put back."""
    before = evaluate(trainer, recipe, splits.eval)
    started, interrupted = time.perf_counter(), False
    try:
        trainer.train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint))
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: restoring the best adapter so far")
        _restore_best(trainer)
    train_seconds = time.perf_counter() - started
    after: dict[str, Any] = {}
    if not interrupted:
        try:
            after = evaluate(trainer, recipe, splits.eval, trained=True)
        except KeyboardInterrupt:
            interrupted = True
    return _metrics(recipe, trainer, splits, before, after, train_seconds, interrupted)


def _audit(
    recipe: Recipe,
    splits: Any,
    tokenizer: Any,
    on_audit: Callable[[Audit], None] | None,
    config: Any,
) -> Audit:
    found = audit(recipe, splits, tokenizer, config.to_dict(), world_size())
    if on_audit is not None and is_main_process():
        on_audit(found)
    refuse_errors(found)
    return found


def _continued(folder: OutputFolder, resumed: Resume | None, recipe: Recipe) -> Path | None:
    """The checkpoint to resume from, once the staging folder is open. The recipe goes into
    the staging folder first, so that a resume of a killed run can compare with it. A resume
    of a finished (or interrupted) output copies its checkpoints and tracker logs into the
    staging folder and continues from the copy: the earlier part of the run stays in the
    output, and the output is replaced only when the resumed run succeeds."""
    if folder.main_process:
        (folder.staging / RECIPE).write_text(recipe.to_yaml())
    if resumed is None:
        return None
    checkpoint = resumed.checkpoint
    if not resumed.own or folder.staging in checkpoint.parents:
        return checkpoint
    folder.carry_over(folder.target, CHECKPOINTS, LOGS)
    return folder.staging / CHECKPOINTS / checkpoint.name if folder.main_process else checkpoint


def _check_run_settings(recipe: Recipe, target: Path, push_to_hub: str | None) -> None:
    """What the recipe asks of this run, checked before any data or model loads: a folder
    early stopping writes, the trackers' packages, the Hub repository, and a strategy that needs
    several processes."""
    best = recipe.callbacks.early_stopping.save_best_to
    if best is not None and recipe.callbacks.early_stopping.enabled:
        field = "callbacks.early_stopping.save_best_to"
        check_other_output(best, field, target, _inputs(recipe))
        check_target(Path(best).expanduser(), field)
    recipe.training.check_trackers()
    check_extras(recipe)
    if push_to_hub is not None:
        check_repo(push_to_hub)
    if recipe.distributed.strategy == "fsdp" and world_size() == 1:
        raise RecipeError(
            "distributed.strategy: got 'fsdp', which shards the model across several "
            "processes, and this is one process. Fix: launch with torchrun or accelerate "
            "launch (docs/training.md), or set distributed.strategy=none."
        )


def _build_trainer(recipe: Recipe, model: Any, tokenizer: Any, splits: Any, output: Path) -> Any:
    saving = recipe.training.save != "none"
    # The best adapter goes to disk only with the checkpoints, where a resume looks for it.
    best = output / CHECKPOINTS / BEST_ADAPTER if saving else None
    callbacks = recipe.build_callbacks(best_adapter_dir=best)
    checks = recipe.answer_checks()
    if checks is not None and checks.during_training and splits.format != "text":
        prompts, _ = held_out_prompts(splits.eval, splits.format, checks.during_training)
        answers = JsonAnswers(
            tokenizer, prompts, checks.schema, checks.max_new_tokens, checks.batch_size
        )
        callbacks.insert(0, answers)  # before EarlyStopping, which may monitor its rates
    overrides: dict[str, Any] = {
        "include_num_input_tokens_seen": "all",
        "disable_tqdm": False,  # one bar for training, whatever transformers' log level
    }
    if recipe.data.chooses_eos:
        # The EOS the template or the recipe chose: the SFTConfig built from the recipe tells
        # the model, so that generation stops at the end of an answer.
        tokens = recipe.data.special_tokens.model_copy(update={"eos_token": tokenizer.eos_token})
        recipe = recipe.model_copy(
            update={"data": recipe.data.model_copy(update={"special_tokens": tokens})}
        )
    with _tracker_logs(recipe, output / LOGS):
        trainer = _trainer_class()(
            model=model,
            args=recipe.build_sft_config(output / CHECKPOINTS, model, **overrides),
            train_dataset=splits.train,
            eval_dataset=splits.eval,
            processing_class=tokenizer,
            peft_config=recipe.build_lora_config(),
            callbacks=callbacks,
        )
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(training_progress())
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


@contextmanager
def _tracker_logs(recipe: Recipe, logs: Path) -> Iterator[None]:
    """TensorBoard writes into OUTPUT/logs rather than under the checkpoints, unless the user
    chose a place with TENSORBOARD_LOGGING_DIR (read when the Trainer is built)."""
    chosen = "TENSORBOARD_LOGGING_DIR" in os.environ
    if chosen or "tensorboard" not in recipe.training.trackers:
        yield
        return
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(logs)
    try:
        yield
    finally:
        del os.environ["TENSORBOARD_LOGGING_DIR"]


def _restore_best(trainer: Any) -> None:
    stopper = _attached(trainer, EarlyStopping)
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
    stopper = _attached(trainer, EarlyStopping)
    detector = _attached(trainer, OverfitDetector)
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
        "peak_memory_gb": _peak_memory_gb(),
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
    }


def _write_outputs(
    recipe: Recipe,
    trainer: Any,
    tokenizer: Any,
    metrics: dict[str, Any],
    output: Path,
    adapter_name: str,
    notes: dict[str, str],
) -> None:
    checkpoints = output / CHECKPOINTS
    (checkpoints / "README.md").unlink(missing_ok=True)  # TRL's card; the adapter has peftkit's
    if checkpoints.is_dir() and not any(checkpoints.iterdir()):
        checkpoints.rmdir()  # made by the Trainer; the layout has checkpoints/ only when saving
    trainer.model.save_pretrained(output / ADAPTER)
    tokenizer.save_pretrained(output / ADAPTER)
    (output / ADAPTER / CARD).write_text(adapter_card(recipe, metrics, adapter_name, notes))
    # The adapter carries its recipe: `peftkit merge` needs its quantization wherever it goes.
    for place in (output, output / ADAPTER):
        (place / RECIPE).write_text(recipe.to_yaml(notes))
    (output / METRICS).write_text(json.dumps(metrics, indent=2, default=str))
    plot_training(
        trainer.state.log_history,
        output / PLOT,
        metrics["best_step"],
        metrics["stop_step"],
        metrics["overfit_detected_step"],
        f"{recipe.recipe} on {Path(recipe.model.name).name}",
    )


def _attached(trainer: Any, kind: type) -> Any:
    """The trainer's callback of type ``kind``; None when the recipe leaves it out."""
    try:
        return find(trainer, kind)
    except LookupError:
        return None
