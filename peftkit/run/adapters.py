"""Score or try an adapter without training: ``peftkit evaluate`` and ``peftkit generate``.

An adapter folder that ``peftkit train`` wrote holds the adapter, the tokenizer it trained with
(chat template and EOS token included) and the recipe (``recipe.yaml``), which names the base
model and how it was loaded (4-bit for QLoRA). :func:`evaluate_adapter` reads all three and
reports the same before/after scores as training (:func:`peftkit.evaluation.evaluate`): the
base model without the adapter, then with it, on the given data. :func:`generate` answers one
prompt. Every input is checked before a weight loads; nothing is written.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from peftkit.core.errors import RecipeError
from peftkit.recipes.base import Recipe
from peftkit.run.loading import TOKENIZER_FILES
from peftkit.run.merging import read_adapter, recipe_beside

RECIPE_FILE = "recipe.yaml"


def adapter_recipe(adapter: Path, recipe: str | Path | None = None, needed: bool = True) -> Any:
    """The recipe the adapter trained with: ``recipe`` (a name or file) when given, else the
    ``recipe.yaml`` that ``peftkit train`` writes into the adapter folder and beside it; None
    when there is none and it is not ``needed``."""
    from peftkit import recipes

    if (adapter / "config.json").is_file() and not (adapter / "adapter_config.json").is_file():
        raise RecipeError(
            f"adapter '{adapter}' holds a whole model (a run with method full trains every "
            "weight), not an adapter. Fix: pass the adapter folder of a LoRA or QLoRA run "
            "(OUTPUT/adapter)."
        )
    read_adapter(adapter)
    found = recipes.load(recipe) if recipe is not None else recipe_beside(adapter)
    if found is None and needed:
        raise RecipeError(
            f"adapter '{adapter}': no {RECIPE_FILE} in it or beside it, so its base model, "
            "quantization and data format are unknown. Fix: pass the recipe it trained with: "
            "--recipe FILE (or a built-in name, with model.name set)."
        )
    return found


def evaluate_adapter(
    adapter: str | Path, data: str | Path, recipe: str | Path | None = None
) -> dict[str, Any]:
    """The before/after report of ``adapter`` on ``data``: the scores of its base model (the
    adapter switched off), then with the adapter, as ``peftkit train`` reports them."""
    from peft import PeftModel

    from peftkit.data import prepare
    from peftkit.evaluation import evaluate
    from peftkit.run.loading import load_model

    folder = Path(adapter)
    trained = adapter_recipe(folder, recipe)
    # Every row is scored, nothing held out, and no tracker hears of it.
    no_split = trained.training.model_copy(update={"eval_fraction": 0, "report_to": ["none"]})
    trained = trained.model_copy(update={"training": no_split})
    splits = prepare(trained, data, None)  # every row checked, nothing held out
    found = trained.data.model_copy(update={"format": splits.format})
    trained = trained.model_copy(update={"data": found})
    tokenizer = adapter_tokenizer(folder, trained)
    rows = splits.train
    model = PeftModel.from_pretrained(load_model(trained), str(folder))
    stop_at_eos(model, tokenizer)
    with tempfile.TemporaryDirectory(prefix="peftkit-evaluate-") as scratch:
        trainer = _scoring_trainer(trained, model, tokenizer, rows, scratch)
        with model.disable_adapter():
            before = evaluate(trainer, trained, rows)
        after = evaluate(trainer, trained, rows, trained=True)
    return {
        "adapter": str(folder),
        "recipe": trained.recipe,
        "model": trained.model.name,
        "data": {"path": str(data), "format": splits.format, "rows": len(rows)},
        "before": before,
        "after": after,
    }


def _scoring_trainer(recipe: Recipe, model: Any, tokenizer: Any, rows: Any, scratch: str) -> Any:
    """An SFTTrainer that only evaluates ``rows``, tokenized and masked as training did; what
    it may write goes to ``scratch``."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import SFTTrainer

    overrides = {"disable_tqdm": True}
    trainer = SFTTrainer(
        model=model,
        args=recipe.build_sft_config(scratch, model, **overrides),
        train_dataset=rows,
        eval_dataset=rows,
        processing_class=tokenizer,
    )
    for printer in (PrinterCallback, ProgressCallback):  # the report is the output
        trainer.pop_callback(printer)
    return trainer


def adapter_tokenizer(adapter: Path, recipe: Recipe) -> Any:
    """The tokenizer saved with the adapter (the chat template and EOS it trained with), else
    the base model's with the recipe's chat settings."""
    from transformers import AutoTokenizer

    from peftkit.run.loading import load_tokenizer

    if not any((adapter / name).is_file() for name in TOKENIZER_FILES):
        return load_tokenizer(recipe)
    try:
        tokenizer = AutoTokenizer.from_pretrained(adapter)
    except Exception as error:  # transformers raises OSError, ValueError, KeyError, ...
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise RecipeError(
            f"adapter '{adapter}': its tokenizer does not load ({first}). Fix: save it again "
            "with tokenizer.save_pretrained(folder), or remove its files to use the base's."
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def stop_at_eos(model: Any, tokenizer: Any) -> None:
    """Generation stops at the tokenizer's EOS token too (a template's end of turn), as the
    trainer set it up in training (TRL's ``eos_token``)."""
    config = model.generation_config
    ids = config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        config.eos_token_id = [tokenizer.eos_token_id, *ids]


def generate(
    adapter: str | Path,
    prompt: str,
    max_new_tokens: int = 256,
    recipe: str | Path | None = None,
) -> str:
    """The adapter's greedy answer to ``prompt``: as a user turn through the chat template (with
    the recipe's system prompt) when it trained on chat data, or when there is no recipe and
    the tokenizer has a template; as plain text otherwise."""
    from peft import PeftModel

    from peftkit import recipes
    from peftkit.evaluation import generate_answers
    from peftkit.run.loading import load_model

    if not isinstance(prompt, str) or not prompt.strip():
        raise RecipeError("PROMPT: empty. Fix: give the text to answer, in quotes.")
    whole = isinstance(max_new_tokens, int) and not isinstance(max_new_tokens, bool)
    if not whole or max_new_tokens < 1:
        raise RecipeError(
            f"max_new_tokens: got {max_new_tokens!r}; it is a number of tokens. Fix: pass a "
            "whole number of at least 1, e.g. --max-new-tokens 256."
        )
    folder = Path(adapter)
    trained = adapter_recipe(folder, recipe, needed=False)
    if trained is None:  # an adapter from elsewhere: its base, loaded as it is
        base = read_adapter(folder).get("base_model_name_or_path")
        if not isinstance(base, str) or not base:
            raise RecipeError(
                f"adapter '{folder}' names no base model and has no {RECIPE_FILE}. Fix: pass "
                "--recipe FILE with model.name set."
            )
        trained = recipes.from_dict({"recipe": "custom", "model": {"name": base}})
    tokenizer = adapter_tokenizer(folder, trained)
    model = PeftModel.from_pretrained(load_model(trained), str(folder))
    stop_at_eos(model, tokenizer)
    asked = _as_asked(prompt, trained, tokenizer)
    return generate_answers(model, tokenizer, [asked], max_new_tokens, 1).texts[0]


def _as_asked(prompt: str, recipe: Recipe, tokenizer: Any) -> Any:
    chat = recipe.data.format == "messages" or (
        recipe.data.format == "auto" and tokenizer.chat_template is not None
    )
    if not chat:
        return prompt
    system = recipe.data.system_prompt
    turns = [{"role": "system", "content": system}] if system else []
    return [*turns, {"role": "user", "content": prompt}]
