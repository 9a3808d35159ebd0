"""Load the model and tokenizer a recipe names, with errors a person can act on."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftkit.errors import RecipeError

if TYPE_CHECKING:
    from peftkit.recipes.base import Recipe


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).exists() or name.count("/") != 1


def load_tokenizer(recipe: Recipe) -> Any:
    from transformers import AutoTokenizer

    name = recipe.model.name
    _check_exists(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            name, trust_remote_code=recipe.model.trust_remote_code
        )
    except OSError as error:
        raise _not_loadable(name, error) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(recipe: Recipe, max_length: int | None = None) -> Any:
    """The base model, quantized if the recipe says so; checks the context length first."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    name = recipe.model.name
    _check_exists(name)
    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=recipe.model.trust_remote_code)
    except OSError as error:
        raise _not_loadable(name, error) from None
    context = getattr(config, "max_position_embeddings", None)
    length = max_length or recipe.training.max_length
    if context is not None and length > context:
        raise RecipeError(
            f"training.max_length: got {length}, but {name} handles at most {context} tokens. "
            f"Fix: set training.max_length={context} or less."
        )
    dtype = recipe.model.dtype
    return AutoModelForCausalLM.from_pretrained(
        name,
        dtype="auto" if dtype == "auto" else getattr(torch, dtype),
        quantization_config=recipe.build_bnb_config(),
        trust_remote_code=recipe.model.trust_remote_code,
    )


def _check_exists(name: str) -> None:
    if _looks_local(name) and not Path(name).expanduser().exists():
        raise RecipeError(
            f"model.name: '{name}' is not a folder here (and not an org/name hub id). "
            "Fix: pass --model with the path of a saved model, or a hub id."
        )


def _not_loadable(name: str, error: Exception) -> RecipeError:
    return RecipeError(
        f"model.name: could not load '{name}': {str(error).splitlines()[0]}. Fix: check the "
        "name; without network access only local folders and models in the Hugging Face cache "
        "load."
    )
