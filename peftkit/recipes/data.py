"""The ``data`` section: what the training examples look like and where the loss applies."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from peftkit.section import Section

DataFormat = Literal["auto", "text", "prompt-completion", "messages"]

FORMAT_COLUMNS: dict[str, tuple[str, ...]] = {
    "messages": ("messages",),
    "prompt-completion": ("prompt", "completion"),
    "text": ("text",),
}
"""The columns each data format needs (TRL's dataset formats), in the order detection tries
them."""


def describe_formats(formats: tuple[str, ...] | None = None) -> str:
    """``formats`` (default: all) with their columns, for messages."""
    chosen = formats or tuple(FORMAT_COLUMNS)
    return " or ".join(
        f"{name} (column{'s' if len(FORMAT_COLUMNS[name]) > 1 else ''} "
        f"{', '.join(FORMAT_COLUMNS[name])})"
        for name in chosen
    )


class DataSection(Section):
    """The dataset's format and files; the CLI's --data/--eval-data override the paths."""

    SUGGEST: ClassVar[dict[str, str]] = {
        "dataset": "train_path",
        "path": "train_path",
        "train_file": "train_path",
    }

    format: DataFormat = Field(
        "auto",
        description="'text' (raw text), 'prompt-completion', 'messages' (chat), or 'auto' to "
        "detect it from the columns.",
    )
    completion_only_loss: bool | None = Field(
        None,
        description="Train only on completions/assistant turns; null keeps TRL's default "
        "(on for prompt-completion data).",
    )
    train_path: str | None = Field(None, description="Training data file or dataset folder.")
    eval_path: str | None = Field(
        None, description="Evaluation data; when absent, training.eval_fraction is held out."
    )
