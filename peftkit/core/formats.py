"""TRL's dataset formats and the columns each needs: one rule to tell a row's or a dataset's
format, for the recipe's builder (a dataset given to ``build_sft_config``), the reader of data
files and the evaluation of held-out rows.

``text`` (loss on every token), ``prompt``/``completion`` (loss on the completion), ``messages``
(chat turns).
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any, Literal

from peftkit.core.errors import RecipeError

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


def row_format(columns: Container[str]) -> str | None:
    """The first format whose columns ``columns`` (a row, or a set of names) all hold."""
    for name, needed in FORMAT_COLUMNS.items():
        if all(column in columns for column in needed):
            return name
    return None


def dataset_format(dataset: Any, formats: tuple[str, ...]) -> str:
    """The format of an in-memory dataset (a ``datasets`` Dataset, IterableDataset or
    DatasetDict, or a list of row dicts), by its columns as ``peftkit train`` reads a file's;
    ``formats`` (the recipe's) are named in the error."""
    if hasattr(dataset, "keys") and "train" in dataset and not isinstance(dataset, list):
        dataset = dataset["train"]  # a DatasetDict: its training split
    columns = getattr(dataset, "column_names", None)
    if columns is None:  # a list of rows, or an IterableDataset without features
        first = next(iter(dataset), None)
        columns = list(first) if isinstance(first, dict) else []
    found = row_format(set(columns))
    if found is None:
        raise RecipeError(
            f"the dataset: cannot tell the format from the columns {', '.join(columns) or 'none'}"
            f". The recipe trains on {describe_formats(formats)}. Fix: rename the columns to "
            "those of one of these formats."
        )
    return found
