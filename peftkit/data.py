"""Training data for the main job: load a file or folder, detect its format, hold out an
evaluation split.

Formats are TRL's: ``text`` (loss on every token), ``prompt``/``completion`` (loss on the
completion), ``messages`` (chat; needs the tokenizer's chat template). Prompts and completions
may be strings or chat turns (lists of ``{"role", "content"}``), as TRL accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftkit.errors import RecipeError

if TYPE_CHECKING:
    from datasets import Dataset

    from peftkit.recipes.base import Recipe

FORMAT_COLUMNS = {
    "messages": ("messages",),
    "prompt-completion": ("prompt", "completion"),
    "text": ("text",),
}
"""Columns each format needs, in the order detection tries them."""
SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class Splits:
    """The training and evaluation data, and where the evaluation data came from."""

    train: Dataset
    eval: Dataset | None
    format: str
    eval_source: str


def load_file(path: str | Path) -> Dataset:
    """A Dataset from a JSONL/JSON/CSV/Parquet file or a folder saved with ``save_to_disk``."""
    import datasets

    path = Path(path)
    if not path.exists():
        raise RecipeError(f"data '{path}': no such file or folder. Fix: check the path.")
    if path.is_dir():
        try:
            loaded = datasets.load_from_disk(str(path))
        except FileNotFoundError:
            raise RecipeError(
                f"data '{path}': a folder, but not one saved with Dataset.save_to_disk. "
                "Fix: pass a .jsonl, .json, .csv or .parquet file, or such a folder."
            ) from None
        if isinstance(loaded, datasets.DatasetDict):
            loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
    else:
        builder = SUFFIXES.get(path.suffix.lower())
        if builder is None:
            raise RecipeError(
                f"data '{path}': unknown file type '{path.suffix}'. Fix: use one of "
                f"{', '.join(SUFFIXES)} or a folder saved with Dataset.save_to_disk."
            )
        if path.stat().st_size == 0:
            raise RecipeError(f"data '{path}': the file is empty.")
        try:
            loaded = datasets.load_dataset(builder, data_files=str(path), split="train")
        except Exception as error:  # the loaders raise many types for malformed files
            raise RecipeError(f"data '{path}': could not be read as {builder}: {error}") from None
    if len(loaded) == 0:
        raise RecipeError(f"data '{path}': no rows.")
    return loaded


def detect_format(dataset: Dataset, wanted: str, where: str) -> str:
    """The dataset's format: ``wanted`` checked against the columns, or detected for 'auto'."""
    columns = set(dataset.column_names)
    accepted = "; ".join(f"{name}: {', '.join(cols)}" for name, cols in FORMAT_COLUMNS.items())
    if wanted != "auto":
        missing = [c for c in FORMAT_COLUMNS[wanted] if c not in columns]
        if missing:
            raise RecipeError(
                f"data '{where}': data.format is '{wanted}' but the column(s) "
                f"{', '.join(missing)} are missing; found: {', '.join(sorted(columns))}. "
                f"Fix: rename the columns or set data.format (formats and their columns: "
                f"{accepted})."
            )
        return wanted
    for name, needed in FORMAT_COLUMNS.items():
        if set(needed) <= columns:
            return name
    raise RecipeError(
        f"data '{where}': cannot tell the format from the columns {', '.join(sorted(columns))}. "
        f"peftkit accepts {accepted}. Fix: rename the columns."
    )


def check_chat(splits: Splits, tokenizer: Any) -> None:
    """Chat data needs a chat template to turn turns into text."""
    if splits.format == "messages" and tokenizer.chat_template is None:
        raise RecipeError(
            "the data is chat data (messages), but the model's tokenizer has no chat template. "
            "Fix: use a chat model, set a chat template on the tokenizer, or convert the data "
            "to prompt/completion."
        )


def prepare(recipe: Recipe, data: str | Path, eval_data: str | Path | None) -> Splits:
    """Load, check and split the data as the recipe says."""
    train = load_file(data)
    fmt = detect_format(train, recipe.data.format, str(data))
    if recipe.method != "full" and recipe.recipe == "json-output" and fmt == "text":
        raise RecipeError(
            f"data '{data}': the json-output recipe needs prompts to answer, and this is raw "
            "text. Fix: give prompt/completion or messages data."
        )
    columns = list(FORMAT_COLUMNS[fmt])
    train = train.select_columns(columns)
    if eval_data is not None:
        held_out = load_file(eval_data)
        detect_format(held_out, fmt, str(eval_data))
        return Splits(train, held_out.select_columns(columns), fmt, str(eval_data))
    fraction = recipe.training.eval_fraction
    if fraction == 0:
        return Splits(train, None, fmt, "none")
    if len(train) < 2:
        raise RecipeError(
            f"data '{data}': {len(train)} row(s) cannot be split into training and evaluation. "
            "Fix: add rows, pass --eval-data, or set training.eval_fraction=0 with "
            "training.eval_strategy=no."
        )
    size = max(1, round(len(train) * fraction))
    split = train.train_test_split(test_size=size, seed=recipe.training.seed)
    return Splits(
        split["train"], split["test"], fmt, f"{fraction:.0%} held out (seed {recipe.training.seed})"
    )
