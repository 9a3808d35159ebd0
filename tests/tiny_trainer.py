"""Real ``Trainer`` runs on the tiny model, for the callback tests (a few steps, seconds each)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from conftest import text_rows

from peftkit.callbacks.base import Leading, add_to_log

SEQ_LEN = 32


def tokenized(model_dir: Path, rows: list[dict[str, str]]) -> Any:
    """Fixed-length causal-LM examples (input_ids, attention_mask, labels)."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = tokenizer(
        [r["text"] for r in rows],
        max_length=SEQ_LEN,
        truncation=True,
        padding="max_length",
    )
    encoded["labels"] = [
        [tok if mask else -100 for tok, mask in zip(ids, masks, strict=True)]
        for ids, masks in zip(encoded["input_ids"], encoded["attention_mask"], strict=True)
    ]
    return Dataset.from_dict(dict(encoded))


def peft_model(model_dir: Path, r: int = 8, seed: int = 0) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear", lora_dropout=0.0)
    return get_peft_model(model, config)


def trainer(
    model_dir: Path,
    out: Path,
    callbacks: list[Any],
    *,
    model: Any = None,
    train_rows: list[dict[str, str]] | None = None,
    eval_rows: list[dict[str, str]] | None = None,
    trainer_class: Any = None,
    **args: Any,
) -> Any:
    """A Trainer that evaluates and logs every step unless ``args`` says otherwise."""
    from transformers import Trainer, TrainingArguments

    train_rows = train_rows or text_rows(16)
    eval_rows = eval_rows or text_rows(24)[16:]
    settings = {
        "output_dir": str(out),
        "max_steps": 10,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "learning_rate": 1e-3,
        "eval_strategy": "steps",
        "eval_steps": 1,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "seed": 0,
        "disable_tqdm": True,
        **args,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        training_args = TrainingArguments(**settings)
    return (trainer_class or Trainer)(
        model=model if model is not None else peft_model(model_dir),
        args=training_args,
        train_dataset=tokenized(model_dir, train_rows),
        eval_dataset=tokenized(model_dir, eval_rows),
        callbacks=callbacks,
    )


def trainable(model: Any) -> dict[str, Any]:
    """A CPU copy of the trainable parameters, by name."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


class ScriptedMetric(Leading):
    """Overwrite ``key`` in each evaluation's metrics with the value given for that step.

    It produces metrics, so it leads ahead of the callback under test, and a real run makes an
    exact sequence. (Leading callbacks act only inside ``train()``, as this one does.)
    """

    LEAD_ORDER = 0

    def __init__(self, values: dict[int, float], key: str = "eval_loss") -> None:
        super().__init__()
        self.values, self.key = values, key

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any):
        if self.training and logs and "eval_loss" in logs and state.global_step in self.values:
            add_to_log(state, logs, {self.key: self.values[state.global_step]})


def scripted(sequence: list[float]) -> dict[int, float]:
    """Evaluation i (1-based) happens at step i when evaluations run every step."""
    return dict(enumerate(sequence, start=1))
