"""Keys of other fine-tuning configs and where each one lives in a peftkit recipe.

People arrive with a ``trl sft --config`` YAML (TRL's ``SFTConfig``, transformers'
``TrainingArguments``, TRL's ``ModelConfig`` and ``ScriptArguments``, all flat) or an axolotl
YAML (flat too). Pasted into a recipe, each of their keys is unknown at the top level, and a bare
"remove it" throws away ``learning_rate``, which peftkit has as ``training.learning_rate``.

This module is the one table of those keys. It serves two readers, so they cannot disagree:

- the recipe's message for such a key (:func:`unknown_key_error`): "did you mean
  'training.epochs'?" with the value converted where the meaning differs
  (``load_in_4bit: true`` is ``quantization.bits=4``), or why there is no such setting;
- ``peftkit import`` (:mod:`peftkit.recipes.importing`), which converts a whole file.

A key of this kind *inside* a section (``training: {num_train_epochs: 3}``) is the section's own
``SUGGEST``/``RENAMED``; this table is about the flat keys at the top.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from peftkit.core.metrics import eval_name
from peftkit.core.names import is_local
from peftkit.core.section import UNKNOWN_KEY, Section, _numeric
from peftkit.recipes.overrides import assignments, token
from peftkit.recipes.rules import EVALUATION_OFF

TRL = "TRL"
"""``trl sft --config``: SFTConfig/TrainingArguments, ModelConfig and ScriptArguments keys."""
AXOLOTL = "axolotl"
BOTH = "TRL and axolotl"


@dataclass(frozen=True)
class Translation:
    """What one foreign key with its value becomes in a recipe.

    ``settings`` are dotted recipe paths with their values, the first one the key's own meaning
    and any others what that meaning implies (``eval_strategy: no`` also switches off the
    callbacks that decide at evaluations); empty when nothing needs setting, and ``note`` says
    why. A note never holds ``path=value``: messages keep that form for fixes to apply.
    """

    settings: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    refused: str = ""
    """Why the value has no faithful translation (a cadence per epoch, a warmup ratio that
    peftkit would read as steps); the import then stops with ``fix``, never guesses."""
    fix: str = ""


Convert = Callable[[Any], Translation]


@dataclass(frozen=True)
class ForeignKey:
    """A key of TRL or axolotl: where its meaning lives in a recipe (``home``, None where
    peftkit has no such setting) and how a value converts."""

    name: str
    source: str
    home: str | None
    convert: Convert
    renames: bool = False
    """The key means ``home`` under another name, its value written the same or respelled
    (not a share for a count, nor the opposite switch): what a section suggests for it."""

    def translate(self, value: Any) -> Translation:
        """The recipe settings ``value`` stands for; never raises, whatever the value."""
        if value is None:
            return Translation(note="it is empty, so it sets nothing")
        return self.convert(value)


# --- converters: one per kind of meaning ---------------------------------------------------------


def _copy(home: str) -> Convert:
    """The same meaning and value under peftkit's name."""
    return lambda value: Translation({home: value})


_BOOL = TypeAdapter(bool)


def _as_bool(value: Any) -> bool | None:
    """``value`` as the boolean a boolean field reads it as (true, or the strings ``yes``,
    ``on``, ``1``); None when it is no boolean, kept for the field check to name the type."""
    if isinstance(value, bool):
        return value
    try:
        return _BOOL.validate_python(value) if isinstance(value, str) else None
    except ValidationError:
        return None


def _flag(settings: dict[str, Any], when_false: str) -> Convert:
    """A switch: true means ``settings``; false sets nothing (``when_false`` says why)."""

    def convert(value: Any) -> Translation:
        switch = _as_bool(value)
        if switch is None:
            return Translation({next(iter(settings)): value})  # the field check names the type
        return Translation(dict(settings)) if switch else Translation(note=when_false)

    return convert


def _spelled(home: str, spellings: dict[str, Any]) -> Convert:
    """A value with another spelling in peftkit (``adamw_bnb_8bit`` is ``adamw_8bit``)."""
    return lambda value: (
        Translation({home: spellings.get(value, value)})
        if isinstance(value, str)
        else Translation({home: value})
    )


def _max_steps(value: Any) -> Translation:
    if isinstance(value, int) and not isinstance(value, bool) and value <= 0:
        return Translation(note=f"{value} means 'not set' in TRL; training.epochs decides")
    return Translation({"training.max_steps": value})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _warmup_ratio(value: Any) -> Translation:
    """A share of the run's steps: training.warmup_steps below 1 is one, but 1 or more is a
    number of steps there, so such a ratio has no faithful translation."""
    if _is_number(value) and value >= 1:
        return Translation(
            refused=f"a warmup ratio of {value:g} warms up over the whole run, and "
            "training.warmup_steps reads 1 or more as a number of steps (it takes a ratio "
            "below 1)",
            fix="set the warmup as an override, a ratio below 1 or a number of steps, e.g. "
            "training.warmup_steps=0.1",
        )
    return Translation({"training.warmup_steps": value})


def _per_epoch(home: str, noun: str, verb: str) -> Convert:
    """axolotl's ``evals_per_epoch`` / ``saves_per_epoch``: peftkit counts steps, and the
    steps of an epoch depend on the data, so the import asks rather than guesses."""

    def convert(value: Any) -> Translation:
        steps = "rows / (micro_batch_size x gradient_accumulation_steps x GPUs)"
        every = max(1, 200 // value) if _is_number(value) and value >= 1 else 50
        return Translation(
            refused=f"{_short_value(value)} {noun} per epoch; peftkit {verb} every {home} "
            f"optimizer steps, and the steps of an epoch depend on your data ({steps})",
            fix=f"set {home} as an override: the steps of an epoch divided by "
            f"{_short_value(value)}, e.g. {home}={every} for an epoch of 200 steps "
            "(`peftkit check` prints the optimizer steps of a run)",
        )

    return convert


def _short_value(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _targets(value: Any) -> Translation:
    """A list, ``all-linear``, or a comma-separated string of module names."""
    if isinstance(value, str) and value != "all-linear":
        value = [name.strip() for name in value.split(",") if name.strip()]
    return Translation({"lora.target_modules": value})


NO_EVALUATION = (
    "without evaluations, early stopping and overfit detection are off too; keep "
    "training.eval_fraction above 0 to have them"
)


def _eval_strategy(value: Any) -> Translation:
    if value == "no" or value is False:  # a YAML 1.1 reader turns `no` into false
        return Translation(dict(EVALUATION_OFF), NO_EVALUATION)
    return Translation({"training.eval_strategy": value})


def _val_set_size(value: Any) -> Translation:
    """axolotl's held-out share; 0 means no evaluation, 1 or more a number of rows."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Translation({"training.eval_fraction": value})
    if value == 0:
        return Translation({"training.eval_fraction": 0, **EVALUATION_OFF}, NO_EVALUATION)
    if value >= 1:
        return Translation(
            note=f"{value:g} is a number of rows; peftkit holds out a share of them "
            "(training.eval_fraction), or reads evaluation data from --eval-data"
        )
    return Translation({"training.eval_fraction": value})


def _precision(name: str) -> Convert:
    """``bf16``/``fp16``: true picks that precision; axolotl's ``auto`` is peftkit's."""

    def convert(value: Any) -> Translation:
        switch = _as_bool(value)
        if switch is False:
            return Translation(
                note=f"false only rules out {name}; training.precision auto picks bf16 where the "
                "GPU has it, else fp16"
            )
        return Translation({"training.precision": name if switch else value})

    return convert


def _use_peft(value: Any) -> Translation:
    switch = _as_bool(value)
    if switch is None:
        return Translation({"method": value})
    if switch:
        return Translation(note="peftkit trains a LoRA adapter unless method is full")
    return Translation({"method": "full"})


def _adapter(value: Any) -> Translation:
    """axolotl's ``adapter``: lora, or qlora (LoRA on a 4-bit base)."""
    if value == "qlora":
        return Translation({"method": "qlora", "quantization.bits": 4})
    if value == "lora":
        return Translation({"method": "lora"})
    return Translation(note=f"peftkit trains LoRA adapters only, not {value!r}")


def _train_on_inputs(value: Any) -> Translation:
    switch = _as_bool(value)
    return Translation({"data.completion_only_loss": value if switch is None else not switch})


def _best_metric(value: Any) -> Translation:
    """TRL names evaluation metrics without their ``eval_`` prefix (``loss``)."""
    if isinstance(value, str) and value:
        value = eval_name(value)
    return Translation({"callbacks.early_stopping.metric": value})


def _greater_is_better(value: Any) -> Translation:
    switch = _as_bool(value)
    mode = value if switch is None else "max" if switch else "min"
    return Translation({"callbacks.early_stopping.mode": mode})


def _trackers(value: Any) -> Translation:
    """``report_to``: TRL takes one name or a list; ``all`` has no peftkit spelling."""
    return Translation({"training.report_to": [value] if isinstance(value, str) else value})


def _wandb_project(value: Any) -> Translation:
    return Translation(
        {"training.report_to": ["wandb"]},
        f"the project name goes in the WANDB_PROJECT environment variable: {value}",
    )


def _save_strategy(value: Any) -> Translation:
    return Translation({"training.save": "none" if value == "no" else value})


def _save_limit(value: Any) -> Translation:
    """A limit on checkpoints means there are checkpoints (TRL saves every 500 steps)."""
    return Translation({"training.save_total_limit": value, "training.save": "steps"})


def _fsdp(value: Any) -> Translation:
    """TRL's ``fsdp: "full_shard auto_wrap"`` or axolotl's list of the same words."""
    if value in ("", [], False):
        return Translation(note="an empty value switches FSDP off, as peftkit's default does")
    return Translation({"distributed.strategy": "fsdp"})


DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
"""Files ``peftkit train --data`` reads; a folder saved with ``save_to_disk`` works too."""
DATASET_TYPES = {"completion": "text", "pretrain": "text", "chat_template": "messages"}
"""axolotl dataset types whose rows peftkit reads as they are, with the data format."""


def is_local_data(path: str) -> bool:
    """Whether ``path`` names local data (a file or folder) rather than a Hub dataset id: a
    data file by its suffix, else by the rule for every name (:mod:`peftkit.core.names`)."""
    return path.lower().endswith(DATA_SUFFIXES) or is_local(path)


def _data_path(path: Any, text: bool = False) -> Translation:
    """A dataset named by TRL's ``dataset_name``, axolotl's ``datasets[].path`` or
    ``pretraining_dataset``: a local one is ``data.train_path``."""
    settings: dict[str, Any] = {"data.format": "text"} if text else {}
    if not isinstance(path, str) or not path:
        return Translation(settings, "no dataset path in it; give the data with --data")
    if is_local_data(path):
        return Translation({"data.train_path": path, **settings})
    return Translation(
        settings,
        f"'{path}' is a Hub dataset, and peftkit train reads local data: save it (as JSONL, or "
        "with save_to_disk) and give it with --data",
    )


def _datasets(value: Any) -> Translation:
    """axolotl's (and TRL's) ``datasets: [{path, type}]``; peftkit trains on one dataset."""
    entries = value if isinstance(value, list) else [value]
    if len(entries) != 1:
        paths = [e.get("path") if isinstance(e, dict) else e for e in entries]
        named = ", ".join(str(path) for path in paths) or "none"
        return Translation(
            note=f"{len(entries)} datasets ({named}): peftkit trains on one dataset, so this "
            "recipe names none; join them into one file and give it with --data"
        )
    entry = entries[0] if isinstance(entries[0], dict) else {"path": entries[0]}
    kind = entry.get("type")
    fmt = DATASET_TYPES.get(kind) if isinstance(kind, str) else None
    found = _data_path(entry.get("path"))
    settings = {**found.settings, **({"data.format": fmt} if fmt else {})}
    notes = [found.note] if found.note else []
    if kind is not None and fmt is None:
        notes.append(
            f"type {kind}: peftkit reads prompt/completion, messages or text columns, so "
            f"convert the {kind} rows to one of them"
        )
    return Translation(settings, "; ".join(notes))


def _chat_template(value: Any) -> Translation:
    """axolotl's ``chat_template``: a name; ``tokenizer_default`` is peftkit's default, ``jinja``
    says the text is in ``chat_template_jinja``."""
    from peftkit.recipes.chat_templates import CHAT_TEMPLATES

    if not isinstance(value, str) or value in CHAT_TEMPLATES:
        return Translation({"data.chat_template": value})
    if value == "tokenizer_default" or value.startswith("tokenizer_default_fallback_"):
        return Translation(note="peftkit uses the tokenizer's own chat template unless told")
    if value == "jinja":
        return Translation(note="the template's text is chat_template_jinja")
    return Translation(
        note=f"peftkit's built-in templates are {', '.join(CHAT_TEMPLATES)}, not {value}: save "
        "that template as a Jinja file and give its path as data.chat_template"
    )


def _special_tokens(value: Any) -> Translation:
    """axolotl's ``special_tokens`` mapping, token by token; ``tokens`` and other names it
    adds to the vocabulary have no peftkit setting (peftkit adds no token)."""
    from peftkit.recipes.data_section import SpecialTokens

    names = tuple(SpecialTokens.model_fields)
    if not isinstance(value, dict) or not value:
        return Translation({"data.special_tokens": value})
    settings = {f"data.special_tokens.{k}": v for k, v in value.items() if k in names}
    others = [str(key) for key in value if key not in names]
    note = f"peftkit sets only {', '.join(names)}, not {', '.join(others)}" if others else ""
    return Translation(settings, note)


def _template_path(value: Any) -> Translation:
    """TRL's ``chat_template_path``: a Jinja file, or a tokenizer to clone the template from
    (which adds that tokenizer's tokens; peftkit adds none)."""
    from peftkit.recipes.chat_templates import TEMPLATE_FILE_SUFFIXES

    if not isinstance(value, str) or value.endswith(TEMPLATE_FILE_SUFFIXES):
        return Translation({"data.chat_template": value})
    return Translation(
        note=f"{value} is a tokenizer to clone the template from, which adds its tokens: save "
        "its chat template as a Jinja file and give that path as data.chat_template"
    )


def _none(reason: str) -> Convert:
    """No peftkit setting: ``reason`` says where the meaning went instead."""
    return lambda value: Translation(note=reason)


# --- the table ---------------------------------------------------------------------------------

OUTPUT = "the output folder is the --output option of peftkit train"
HUB = "the Hub repository is the --push-to-hub option of peftkit train"
ATTENTION = (
    "peftkit's model.attention (auto: FlashAttention-2 where the GPU and flash-attn allow, else "
    "sdpa) picks the attention implementation"
)
LOADING = "peftkit loads every model with AutoModelForCausalLM and its AutoTokenizer"
TOKENS = "peftkit adds no token to the vocabulary (a new token starts untrained)"
PADDING = "TRL pads each batch to its longest row"
RESUME = "resuming is a choice of the run: peftkit train --resume (auto, or a checkpoint)"
PREPARED = "peftkit tokenizes the data itself on every run"
LAUNCH = "peftkit runs DDP or FSDP (distributed.strategy) under torchrun"
AXOLOTL_ONLY = "an axolotl setting that peftkit has no use for"
NO_SETTING = "peftkit has no such setting"

_COPIED: list[tuple[str, str, str]] = [
    ("learning_rate", BOTH, "training.learning_rate"),
    ("num_train_epochs", TRL, "training.epochs"),
    ("num_epochs", AXOLOTL, "training.epochs"),
    ("per_device_train_batch_size", TRL, "training.batch_size"),
    ("micro_batch_size", AXOLOTL, "training.batch_size"),
    ("gradient_accumulation_steps", BOTH, "training.gradient_accumulation_steps"),
    ("max_length", TRL, "training.max_length"),
    ("max_seq_length", TRL, "training.max_length"),
    ("sequence_len", AXOLOTL, "training.max_length"),
    ("packing", TRL, "training.packing"),
    ("sample_packing", AXOLOTL, "training.packing"),
    ("lr_scheduler_type", TRL, "training.lr_scheduler"),
    ("lr_scheduler", AXOLOTL, "training.lr_scheduler"),
    ("warmup_steps", BOTH, "training.warmup_steps"),
    ("max_grad_norm", BOTH, "training.max_grad_norm"),
    ("weight_decay", BOTH, "training.weight_decay"),
    ("gradient_checkpointing", BOTH, "training.activation_checkpointing"),
    ("seed", BOTH, "training.seed"),
    ("logging_steps", BOTH, "training.logging_steps"),
    ("eval_steps", BOTH, "training.eval_steps"),
    ("save_steps", BOTH, "training.save_steps"),
    ("run_name", TRL, "training.run_name"),
    ("wandb_name", AXOLOTL, "training.run_name"),
    ("model_name_or_path", TRL, "model.name"),
    ("base_model", AXOLOTL, "model.name"),
    ("dtype", TRL, "model.dtype"),
    ("torch_dtype", BOTH, "model.dtype"),
    ("trust_remote_code", BOTH, "model.trust_remote_code"),
    ("attn_implementation", TRL, "model.attention"),
    ("lora_r", BOTH, "lora.r"),
    ("lora_alpha", BOTH, "lora.alpha"),
    ("lora_dropout", BOTH, "lora.dropout"),
    ("lora_modules_to_save", BOTH, "lora.modules_to_save"),
    ("use_rslora", TRL, "lora.use_rslora"),
    ("peft_use_rslora", AXOLOTL, "lora.use_rslora"),
    ("use_dora", TRL, "lora.use_dora"),
    ("peft_use_dora", AXOLOTL, "lora.use_dora"),
    ("bnb_4bit_quant_type", TRL, "quantization.quant_type"),
    ("use_bnb_nested_quant", TRL, "quantization.double_quant"),
    ("bnb_4bit_quant_storage", TRL, "quantization.storage_dtype"),
    ("completion_only_loss", TRL, "data.completion_only_loss"),
    ("early_stopping_patience", AXOLOTL, "callbacks.early_stopping.patience"),
    ("load_best_model_at_end", TRL, "callbacks.early_stopping.restore_best"),
    ("chat_template_jinja", AXOLOTL, "data.chat_template"),
    ("default_system_message", AXOLOTL, "data.system_prompt"),
    ("eos_token", TRL, "data.special_tokens.eos_token"),
    ("pad_token", TRL, "data.special_tokens.pad_token"),
]
"""Keys whose meaning and value peftkit has under another name."""

_OPTIMIZERS = {"adamw_bnb_8bit": "adamw_8bit", "adamw_hf": "adamw_torch"}

_CONVERTED: list[tuple[str, str, str, Convert]] = [
    ("optim", TRL, "training.optimizer", _spelled("training.optimizer", _OPTIMIZERS)),
    ("optimizer", AXOLOTL, "training.optimizer", _spelled("training.optimizer", _OPTIMIZERS)),
    ("max_steps", BOTH, "training.max_steps", _max_steps),
    ("warmup_ratio", TRL, "training.warmup_steps", _warmup_ratio),
    (
        "evals_per_epoch",
        AXOLOTL,
        "training.eval_steps",
        _per_epoch("training.eval_steps", "evaluations", "evaluates"),
    ),
    (
        "saves_per_epoch",
        AXOLOTL,
        "training.save_steps",
        _per_epoch("training.save_steps", "checkpoints", "saves"),
    ),
    ("bf16", BOTH, "training.precision", _precision("bf16")),
    ("fp16", BOTH, "training.precision", _precision("fp16")),
    ("eval_strategy", TRL, "training.eval_strategy", _eval_strategy),
    ("evaluation_strategy", TRL, "training.eval_strategy", _eval_strategy),
    ("val_set_size", AXOLOTL, "training.eval_fraction", _val_set_size),
    ("report_to", TRL, "training.report_to", _trackers),
    ("wandb_project", AXOLOTL, "training.report_to", _wandb_project),
    ("save_strategy", TRL, "training.save", _save_strategy),
    ("save_total_limit", BOTH, "training.save_total_limit", _save_limit),
    ("use_peft", TRL, "method", _use_peft),
    ("adapter", AXOLOTL, "method", _adapter),
    ("lora_target_modules", BOTH, "lora.target_modules", _targets),
    (
        "lora_target_linear",
        AXOLOTL,
        "lora.target_modules",
        _flag({"lora.target_modules": "all-linear"}, "false leaves lora_target_modules to decide"),
    ),
    (
        "load_in_4bit",
        BOTH,
        "quantization.bits",
        _flag({"quantization.bits": 4, "method": "qlora"}, "false is peftkit's default too"),
    ),
    (
        "load_in_8bit",
        BOTH,
        "quantization.bits",
        _flag({"quantization.bits": 8}, "false is peftkit's default too"),
    ),
    ("train_on_inputs", AXOLOTL, "data.completion_only_loss", _train_on_inputs),
    (
        "assistant_only_loss",
        TRL,
        "data.completion_only_loss",
        _flag({"data.completion_only_loss": True}, "false is TRL's default for chat data too"),
    ),
    ("metric_for_best_model", TRL, "callbacks.early_stopping.metric", _best_metric),
    ("greater_is_better", TRL, "callbacks.early_stopping.mode", _greater_is_better),
    ("fsdp", BOTH, "distributed.strategy", _fsdp),
    ("dataset_name", TRL, "data.train_path", _data_path),
    ("datasets", BOTH, "data.train_path", _datasets),
    ("pretraining_dataset", AXOLOTL, "data.train_path", lambda v: _data_path(v, text=True)),
    ("chat_template", AXOLOTL, "data.chat_template", _chat_template),
    ("special_tokens", AXOLOTL, "data.special_tokens", _special_tokens),
    ("chat_template_path", TRL, "data.chat_template", _template_path),
]
"""Keys whose value means something else in peftkit, or implies more settings."""

_UNMAPPED: list[tuple[str, str, str]] = [
    ("output_dir", BOTH, OUTPUT),
    ("overwrite_output_dir", TRL, "peftkit train replaces an earlier run only with --overwrite"),
    ("logging_dir", TRL, "TensorBoard logs go to OUTPUT/logs"),
    ("push_to_hub", TRL, HUB),
    ("hub_model_id", BOTH, HUB),
    ("resume_from_checkpoint", BOTH, RESUME),
    ("auto_resume_from_checkpoints", AXOLOTL, RESUME),
    ("per_device_eval_batch_size", TRL, "evaluation uses training.batch_size"),
    ("eval_batch_size", AXOLOTL, "evaluation uses training.batch_size"),
    ("do_train", TRL, "peftkit train always trains"),
    ("do_eval", TRL, "training.eval_strategy decides whether to evaluate"),
    ("tf32", BOTH, "peftkit leaves TF32 matmuls to PyTorch's default"),
    ("deepspeed", BOTH, LAUNCH),
    ("fsdp_config", BOTH, LAUNCH),
    ("local_rank", BOTH, LAUNCH),
    ("ddp_find_unused_parameters", TRL, "peftkit sets it for the method"),
    ("dataloader_num_workers", TRL, NO_SETTING),
    ("dataset_num_proc", TRL, NO_SETTING),
    ("dataset_text_field", TRL, "peftkit reads the text column of text data"),
    ("dataset_config", TRL, "peftkit train reads local data given with --data"),
    ("dataset_train_split", TRL, "a saved DatasetDict gives its train split to --data"),
    ("dataset_test_split", TRL, "a saved DatasetDict gives its validation or test split"),
    ("gradient_checkpointing_kwargs", TRL, "peftkit uses non-reentrant checkpointing"),
    ("flash_attention", AXOLOTL, ATTENTION),
    ("xformers_attention", AXOLOTL, ATTENTION),
    ("sdp_attention", AXOLOTL, ATTENTION),
    ("model_revision", TRL, "model.name takes a local folder of the revision you want"),
    ("model_type", AXOLOTL, LOADING),
    ("tokenizer_type", AXOLOTL, LOADING),
    ("tokenizer_config", AXOLOTL, LOADING),
    ("base_model_config", AXOLOTL, LOADING),
    ("lora_task_type", TRL, "peftkit trains causal language models (CAUSAL_LM)"),
    ("lora_model_dir", AXOLOTL, "peftkit starts a new adapter"),
    ("lora_fan_in_fan_out", AXOLOTL, "peft sets it for the model's layers"),
    ("tokens", AXOLOTL, TOKENS),
    ("pad_to_sequence_len", AXOLOTL, PADDING),
    ("group_by_length", BOTH, PADDING),
    ("eval_sample_packing", AXOLOTL, "evaluation packs as training.packing says"),
    ("eval_table_size", AXOLOTL, AXOLOTL_ONLY),
    ("strict", AXOLOTL, AXOLOTL_ONLY),
    ("debug", AXOLOTL, AXOLOTL_ONLY),
    ("dataset_prepared_path", AXOLOTL, PREPARED),
    ("wandb_entity", AXOLOTL, "the entity goes in the WANDB_ENTITY environment variable"),
    ("wandb_watch", AXOLOTL, "the WANDB_WATCH environment variable sets it"),
    ("wandb_log_model", AXOLOTL, "the WANDB_LOG_MODEL environment variable sets it"),
    ("cosine_min_lr_ratio", AXOLOTL, "peftkit's cosine schedule decays to zero"),
    ("loss_watchdog_threshold", AXOLOTL, "peftkit's gradient checks stop a run that diverges"),
    ("loss_watchdog_patience", AXOLOTL, "peftkit's gradient checks stop a run that diverges"),
    ("batch_size", AXOLOTL, "axolotl's total batch: set training.batch_size and "
     "training.gradient_accumulation_steps instead"),
]  # fmt: skip
"""Keys peftkit has no setting for, with where their meaning went."""


_RESPELLED = ("optim", "bf16", "fp16")
"""Converted keys whose meaning is still their home's, the value respelled."""


def _table() -> dict[str, ForeignKey]:
    keys = [ForeignKey(name, source, home, _copy(home), True) for name, source, home in _COPIED]
    keys += [ForeignKey(*entry, entry[0] in _RESPELLED) for entry in _CONVERTED]
    keys += [ForeignKey(name, source, None, _none(why)) for name, source, why in _UNMAPPED]
    return {key.name: key for key in keys}


FOREIGN_KEYS: dict[str, ForeignKey] = _table()
"""Every TRL and axolotl key peftkit knows, by name."""

OLD_NAMES = ("max_seq_length", "warmup_ratio", "evaluation_strategy", "gradient_checkpointing")
"""Keys that current TRL/transformers renamed (to what the table maps them to): a section
still takes them under the old name, maps them and warns (its ``RENAMED``)."""


def renamed(section: str) -> dict[str, str]:
    """A section's ``RENAMED`` (old name -> its field), from the table: ``section`` is the
    section's dotted path in a recipe (``training``)."""
    return {
        name: home.rpartition(".")[2]
        for name in OLD_NAMES
        if (home := FOREIGN_KEYS[name].home) is not None and home.rpartition(".")[0] == section
    }


def suggestions(section: str, **own: str) -> dict[str, str]:
    """A section's ``SUGGEST`` ("did you mean" for a foreign name -> its field): the table's keys
    that mean one of the section's fields under another name, and ``own`` names no tool uses
    (``lr``)."""
    found = {
        key.name: key.home.rpartition(".")[2]
        for key in FOREIGN_KEYS.values()
        if key.renames
        and key.name not in OLD_NAMES
        and key.home is not None
        and key.home.rpartition(".")[0] == section
        and key.home.rpartition(".")[2] != key.name
    }
    return {**found, **own}


# --- where a path lives in a recipe, and whether a value fits there ----------------------------


def field_at(recipe: type[Section], path: str) -> tuple[type[Section], str] | None:
    """The section class and field name at dotted ``path`` of ``recipe``; None if no field."""
    *sections, name = path.split(".")
    kind, depth = recipe.walk(sections)
    return (kind, name) if depth == len(sections) and name in kind.model_fields else None


def default_at(recipe: type[Section], path: str) -> Any:
    """The recipe's default at ``path`` (its own, e.g. qlora-budget's ``quantization.bits``)."""
    found = field_at(recipe, path)
    return None if found is None else found[0].model_fields[found[1]].default


@functools.lru_cache(maxsize=256)
def _checker(kind: type[Section], name: str) -> TypeAdapter[Any]:
    info = kind.model_fields[name]
    if isinstance(info.annotation, type) and issubclass(info.annotation, Section):
        return TypeAdapter(info.annotation)  # a section (data.special_tokens) has its config
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(annotation, config=ConfigDict(allow_inf_nan=False))


def misfit(recipe: type[Section], path: str, value: Any) -> str | None:
    """Why ``value`` cannot be the field at ``path`` on its own; None when it can.

    Only the field's type and range: rules between fields are the recipe's, checked when the
    whole recipe is validated.
    """
    found = field_at(recipe, path)
    if found is None:
        return f"this peftkit has no {path}"
    kind, name = found
    if isinstance(value, bool) and _numeric(kind, name):
        return "a number is needed, not true/false"
    try:
        _checker(kind, name).validate_python(value)
    except ValidationError as error:
        return str(error.errors(include_url=False)[0]["msg"])
    return None


# --- the message for a foreign key in a recipe ---------------------------------------------------


def needed(recipe: type[Section], settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` without the implied ones the recipe already has by default (qlora-budget is
    4-bit QLoRA already); the first, the key's own meaning, always stays."""
    items = list(settings.items())
    return dict(items[:1] + [(p, v) for p, v in items[1:] if default_at(recipe, p) != v])


def advice(recipe: type[Section], foreign: ForeignKey, value: Any) -> tuple[str, str]:
    """The rule and the fix for ``foreign`` with ``value`` at the top of ``recipe``."""
    start = f"unknown key '{foreign.name}' (a {foreign.source} setting)"
    translation = foreign.translate(value)
    if translation.refused:
        return f"{start}; did you mean '{foreign.home}'? {translation.refused}", translation.fix
    if foreign.home is None or field_at(recipe, foreign.home) is None:
        return f"{start}; {translation.note or NO_SETTING}", "remove it"
    rule = f"{start}; did you mean '{foreign.home}'?"
    settings = needed(recipe, translation.settings)
    for path, converted in settings.items():
        why = misfit(recipe, path, converted)
        if why is not None:
            default = token(default_at(recipe, path))
            return (
                f"{rule} It does not take {converted!r}: {why}",
                f"remove it; {path} is {default} by default",
            )
    if not settings:
        return rule, f"remove it: {translation.note}"
    note = f" ({translation.note})" if translation.note else ""
    return rule, f"set {assignments(settings)} instead of {foreign.name}{note}"


def unknown_key_error(recipe: type[Section], key: str, value: Any) -> InitErrorDetails | None:
    """The error for a TRL or axolotl key at the top of a recipe; None for other keys."""
    foreign = FOREIGN_KEYS.get(key)
    if foreign is None:
        return None
    rule, fix = advice(recipe, foreign, value)
    return InitErrorDetails(
        type=PydanticCustomError(UNKNOWN_KEY, "{rule}", {"rule": rule, "fix": fix}),
        loc=(key,),
        input=value,
    )


def superseded(data: dict[Any, Any], path: str) -> list[str]:
    """The foreign keys at the top of ``data`` whose meaning an override of ``path`` sets: the
    override wins over them, as it wins over a section's old spelling of a key."""
    found = []
    for key, value in data.items():
        foreign = FOREIGN_KEYS.get(key) if isinstance(key, str) else None
        if foreign is None:
            continue
        primary = next(iter(foreign.translate(value).settings), None)
        if path in (foreign.home, primary):
            found.append(key)
    return found


def looks_foreign(data: dict[Any, Any]) -> bool:
    """Whether ``data`` has TRL or axolotl keys (a file to convert with ``peftkit import``)."""
    return any(isinstance(key, str) and key in FOREIGN_KEYS for key in data)
