"""Recipe -> HF config objects: pure functions of the recipe and of what its ``auto`` settings
resolve to on this machine and model (:func:`peftkit.recipes.resolution.resolve`, the one place
that decides precision, dtypes, attention, Liger and the learning rate).

Only current HF field names are passed (``activation_checkpointing``, ``eval_strategy``,
``max_length``, fractional ``warmup_steps``), so building a config emits no FutureWarning.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftkit.core.errors import RecipeError, require, with_type
from peftkit.core.formats import dataset_format
from peftkit.core.quiet import quiet_warnings
from peftkit.memory.optimizers import OPTIMIZERS
from peftkit.recipes.keywords import passed_through, with_keywords
from peftkit.recipes.resolution import Resolved, learning_rate, model_name, resolve

if TYPE_CHECKING:
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig, TrainerCallback
    from trl import SFTConfig

    from peftkit.recipes.base import Recipe

log = logging.getLogger(__name__)


def lora_config(recipe: Recipe, **overrides: Any) -> LoraConfig | None:
    """The LoraConfig; ``overrides`` (LoraConfig's names) are checked as the lora section's
    fields, or passed through (:mod:`peftkit.recipes.keywords`)."""
    recipe, rest = with_keywords(recipe, "lora", overrides)
    if recipe.method == "full":
        log.info("method 'full' trains every weight: there is no LoraConfig to build")
        return None
    from peft import LoraConfig

    lora = recipe.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules
        if lora.target_modules == "all-linear"
        else list(lora.target_modules),
        use_rslora=lora.use_rslora,
        use_dora=lora.use_dora,
        bias=lora.bias,
        modules_to_save=list(lora.modules_to_save) or None,
        task_type="CAUSAL_LM",
        **passed_through(recipe, "lora", rest),
    )


def bnb_config(recipe: Recipe, model: Any = None, **overrides: Any) -> BitsAndBytesConfig | None:
    """The BitsAndBytesConfig, None for an unquantized base; ``overrides`` as for
    :func:`lora_config`, with BitsAndBytesConfig's names."""
    recipe, rest = with_keywords(recipe, "bnb", overrides)
    q = recipe.quantization
    if q.bits is None:
        return None
    require("bitsandbytes", "qlora", f"quantization.bits={q.bits}")
    import torch
    from transformers import BitsAndBytesConfig

    extra = passed_through(recipe, "bnb", rest)
    if q.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, **extra)
    resolved = resolve(recipe, model)
    assert resolved.compute_dtype is not None and resolved.storage_dtype is not None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, str(resolved.compute_dtype.value)),
        bnb_4bit_quant_storage=getattr(torch, str(resolved.storage_dtype.value)),
        **extra,
    )


def model_kwargs(recipe: Recipe, model: Any = None) -> dict[str, Any]:
    """What ``AutoModelForCausalLM.from_pretrained`` needs to load the model as the recipe
    resolves here: the weights' dtype, the attention, the quantization and remote code."""
    import torch

    resolved = resolve(recipe, model)
    dtype = str(resolved.dtype.value)
    return {
        "dtype": "auto" if dtype == "auto" else getattr(torch, dtype),
        "attn_implementation": resolved.attention.value,
        "quantization_config": bnb_config(recipe, model),
        "trust_remote_code": recipe.model.trust_remote_code,
    }


def sft_config_kwargs(
    recipe: Recipe, output_dir: str | Path, resolved: Resolved, name: str
) -> dict[str, Any]:
    """The SFTConfig keyword arguments a recipe stands for, as ``resolved`` for the model
    ``name`` on this machine."""
    t = recipe.training
    precision = resolved.precision
    if OPTIMIZERS[t.optimizer].bitsandbytes:
        require("bitsandbytes", "qlora", f"training.optimizer={t.optimizer}")
    kwargs: dict[str, Any] = {
        "output_dir": str(output_dir),
        "learning_rate": learning_rate(resolved, name),
        "num_train_epochs": t.epochs,
        "max_steps": t.max_steps or -1,
        "per_device_train_batch_size": t.batch_size,
        "per_device_eval_batch_size": t.batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "max_length": t.max_length,
        "packing": t.packing,
        "packing_strategy": "bfd",  # TRL's padding-free packing: no example attends to another
        "lr_scheduler_type": t.lr_scheduler,
        "warmup_steps": t.warmup_steps,
        "max_grad_norm": t.max_grad_norm,
        "weight_decay": t.weight_decay,
        "optim": t.optimizer,
        "activation_checkpointing": t.activation_checkpointing,
        "seed": t.seed,
        "data_seed": t.seed,
        "eval_strategy": t.eval_strategy,
        "eval_steps": t.eval_steps,
        "logging_steps": t.logging_steps,
        "bf16": precision.name == "bf16",
        "fp16": precision.name == "fp16",
        "use_cpu": precision.use_cpu,
        "use_liger_kernel": resolved.liger.value,
        "report_to": t.trackers or "none",
        "run_name": t.run_name,
        **_save_kwargs(recipe),
        # peftkit's callbacks keep their progress in checkpoints; restore it on resume.
        "restore_callback_states_from_checkpoint": True,
        "model_init_kwargs": {
            "dtype": resolved.dtype.value,
            "attn_implementation": resolved.attention.value,
            "trust_remote_code": recipe.model.trust_remote_code,
        },
    }
    if t.activation_checkpointing:
        # Non-reentrant checkpointing works with frozen inputs (adapters) without hooks.
        kwargs["activation_checkpointing_kwargs"] = {"use_reentrant": False}
    kwargs.update(_loss_kwargs(recipe))
    # Every weight that trains is used in every step (adapters, or the whole model): DDP's
    # search for unused parameters only costs a pass over the graph, under torchrun alone too.
    kwargs["ddp_find_unused_parameters"] = False
    if recipe.distributed.strategy == "fsdp":
        kwargs.update(_fsdp_kwargs(recipe))
        kwargs.pop("activation_checkpointing_kwargs", None)
    return kwargs


def _loss_kwargs(recipe: Recipe) -> dict[str, Any]:
    """Where the loss applies (TRL restricts it to the answers by one setting for prompt and
    completion data, by another for chat data), and the EOS token answers end with."""
    d = recipe.data
    kwargs: dict[str, Any] = {}
    if d.special_tokens.eos_token is not None:
        # TRL sets it on the model too, so that generation stops at the end of an answer.
        kwargs["eos_token"] = d.special_tokens.eos_token
    if d.format == "messages":
        kwargs["assistant_only_loss"] = bool(d.completion_only_loss)
    else:
        kwargs["completion_only_loss"] = d.completion_only_loss
    return kwargs


def _save_kwargs(recipe: Recipe) -> dict[str, Any]:
    """Checkpoints as the recipe's ``training.save`` says. With "best" the Trainer judges
    "best" by the early-stopping metric in its direction, so that the two never disagree."""
    t = recipe.training
    if t.save == "none":
        return {"save_strategy": "no"}
    kwargs: dict[str, Any] = {"save_total_limit": t.save_total_limit}
    if t.save == "steps":
        return {**kwargs, "save_strategy": "steps", "save_steps": t.save_every}
    from peftkit.core.metrics import eval_name, mode_from_name

    metric = recipe.callbacks.early_stopping.metric
    mode = recipe.callbacks.early_stopping.mode
    mode = mode if mode != "auto" else mode_from_name(metric)
    return {
        **kwargs,
        "save_strategy": "best",
        "metric_for_best_model": eval_name(metric),
        "greater_is_better": mode == "max",
    }


def _fsdp_kwargs(recipe: Recipe) -> dict[str, Any]:
    """FSDP checkpoints inside its own wrapper; the Trainer-level flag would add an AllGather."""
    return {
        "activation_checkpointing": False,
        "fsdp": True,
        "fsdp_config": {
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "activation_checkpointing": recipe.training.activation_checkpointing,
            "cpu_ram_efficient_loading": True,
            "use_orig_params": recipe.method == "full",
        },
    }


def sft_config(
    recipe: Recipe,
    output_dir: str | Path,
    model: Any = None,
    dataset: Any = None,
    **overrides: Any,
) -> SFTConfig:
    """The SFTConfig as the recipe resolves on this machine for ``model`` (default: the recipe's
    model, read from a local folder or the Hugging Face cache) and ``dataset`` (its format
    decides where the loss applies). ``overrides`` (SFTConfig's names) are checked as the
    recipe's fields, or passed through (:mod:`peftkit.recipes.keywords`). A loaded model gets no
    ``model_init_kwargs``: SFTTrainer would only warn that it ignores them."""
    from trl import SFTConfig

    recipe, rest = with_keywords(recipe, "sft", overrides)
    recipe = with_data_format(recipe, dataset)
    recipe.training.check_trackers()
    resolved = resolve(recipe, model)
    for line in resolved.lines():
        log.info("%s", line)
    kwargs = sft_config_kwargs(recipe, output_dir, resolved, model_name(recipe, model))
    if hasattr(model, "config") and hasattr(model, "forward"):
        kwargs["model_init_kwargs"] = None
    quiet_warnings()  # what TRL and peft trigger inside transformers while this config trains
    return SFTConfig(**{**kwargs, **passed_through(recipe, "sft", rest)})


def with_data_format(recipe: Recipe, dataset: Any) -> Recipe:
    """The recipe with the format of ``dataset``, which decides whether TRL restricts the loss
    through ``completion_only_loss`` or, for chat data, ``assistant_only_loss`` (TRL ignores the
    first on messages data, and every token trains). Without a dataset, ``format: auto`` and
    loss on the answers cannot be built right, so it is refused with the fix."""
    data = recipe.data
    if dataset is None:
        if data.format == "auto" and data.completion_only_loss:
            raise RecipeError(
                "data.format: 'auto' with data.completion_only_loss=true, and no dataset to tell "
                "the format: SFTConfig restricts the loss to the answers by one setting for "
                "prompt/completion data and by another for chat (messages) data, where the first "
                "trains every token. Fix: pass the training dataset (build_sft_config(out, "
                "model, dataset=train)), or set data.format=prompt-completion (or messages)."
            )
        return recipe
    found = dataset_format(dataset, recipe.DATA_FORMATS)
    if data.format not in ("auto", found):
        raise RecipeError(
            f"data.format: got '{data.format}', and the dataset is {found} data. Fix: set "
            f"data.format={found} (or auto), or pass {data.format} data."
        )
    recipe.check_data_format(found, "the dataset")
    return recipe.model_copy(update={"data": data.model_copy(update={"format": found})})


def callbacks(recipe: Recipe, best_adapter_dir: str | Path | None = None) -> list[TrainerCallback]:
    from peftkit.callbacks import EarlyStopping, GradientCheck, OverfitDetector

    if best_adapter_dir is not None and not isinstance(best_adapter_dir, str | os.PathLike):
        raise RecipeError(
            f"build_callbacks(best_adapter_dir=...): got {with_type(best_adapter_dir)}; it is "
            "the folder where early stopping saves the best adapter. Fix: pass a path, e.g. "
            "build_callbacks('out/best-adapter'), or nothing."
        )

    settings = recipe.callbacks
    built: list[TrainerCallback] = []
    if settings.early_stopping.enabled:
        stopping = settings.early_stopping.model_dump(exclude={"enabled"})
        stopping["save_best_to"] = stopping["save_best_to"] or best_adapter_dir
        built.append(EarlyStopping(**stopping))
    if settings.overfit.enabled:
        built.append(OverfitDetector(**settings.overfit.model_dump(exclude={"enabled"})))
    if settings.gradient_checks.enabled:
        built.append(GradientCheck(**settings.gradient_checks.model_dump(exclude={"enabled"})))
    return built
