"""Load the model and tokenizer a recipe names, with errors a person can act on.

Everything that can be checked without the weights is checked first: the folder's files, its
config, the context length and the LoRA targets (against the model built on the meta device,
which costs no memory), so that a bad model fails in seconds, before anything is written.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftkit.core.errors import MISSING, Problem, ProblemsError, RecipeError
from peftkit.core.names import is_local

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from peftkit.recipes.base import Recipe

_OPTIONS = {"model.name": "--model", "--base": "--base"}
"""The command-line option that sets a field, for fixes."""
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.gguf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def check_model_folder(name: str, field: str = "model.name", tokenizer: bool = True) -> None:
    """A local model folder must exist and hold a config, weights and (if asked) a tokenizer;
    every missing piece is named at once. Hub ids pass (they are resolved when loading)."""
    if not is_local(name):
        return
    folder = Path(name).expanduser()
    if not folder.exists():
        raise RecipeError(
            f"{field}: '{name}' is not a folder here (and not an org/name hub id). "
            f"Fix: give {_OPTIONS.get(field, field)} the path of a saved model, or a hub id."
        )
    if not folder.is_dir():
        raise RecipeError(
            f"{field}: '{name}' is a file; a model is a folder (config.json, weights, "
            "tokenizer). Fix: pass the folder that holds them."
        )
    found = []
    config = folder / "config.json"
    if not config.is_file():
        found.append(_missing(name, "config.json", "the model's architecture and sizes"))
    else:
        found += _config_problems(config)
    if not any(any(folder.glob(pattern)) for pattern in WEIGHT_FILES):
        found.append(_missing(name, "weights", "model.safetensors or pytorch_model.bin"))
    if tokenizer and not any((folder / file).is_file() for file in TOKENIZER_FILES):
        found.append(_missing(name, "tokenizer", "tokenizer.json or tokenizer_config.json"))
    if found:
        raise ProblemsError(f"in the model folder '{name}'", found)


def _missing(name: str, piece: str, files: str) -> Problem:
    return Problem(
        f"{name}: {piece}",
        MISSING,
        f"a model folder needs {files}",
        "save the model with model.save_pretrained(folder) and the tokenizer with "
        "tokenizer.save_pretrained(folder), or pass the folder that holds them",
    )


def _config_problems(config: Path) -> list[Problem]:
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return [
            Problem(
                str(config),
                MISSING,
                f"not a readable JSON file ({error})",
                "save the model again with model.save_pretrained(folder)",
            )
        ]
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        return [
            Problem(
                f"{config}: model_type",
                data.get("model_type", MISSING) if isinstance(data, dict) else data,
                "a transformers config is a JSON object with a model_type such as 'llama'",
                "save the model again with model.save_pretrained(folder)",
            )
        ]
    return []


def load_tokenizer(recipe: Recipe) -> Any:
    from transformers import AutoTokenizer

    name = recipe.model.name
    check_model_folder(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            name, trust_remote_code=recipe.model.trust_remote_code
        )
    except Exception as error:  # transformers raises OSError, ValueError, KeyError, ...
        raise _not_loadable(name, "tokenizer", error) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return _with_chat_settings(tokenizer, recipe)


def _with_chat_settings(tokenizer: Any, recipe: Recipe) -> Any:
    """The recipe's chat template and special tokens on the tokenizer; on chat data with
    assistant-only loss, a template that marks the assistant's turns (:mod:`peftkit.data.chat`)."""
    from peftkit.data.chat import use_chat_template

    data = recipe.data
    return use_chat_template(
        tokenizer,
        data.chat_template,
        special_tokens=data.special_tokens.given(),
        assistant_only_loss=data.format == "messages" and bool(data.completion_only_loss),
    )


def load_config(name: str, trust_remote_code: bool = False, field: str = "model.name") -> Any:
    from transformers import AutoConfig

    check_model_folder(name, field, tokenizer=False)
    try:
        return AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except Exception as error:  # an unknown model_type is a ValueError, a bad file an OSError
        raise _not_loadable(name, "config", error, field) from None


def adaptable_modules(config: Any, trust_remote_code: bool = False) -> dict[str, Any]:
    """The modules LoRA can attach to (linear, embedding and GPT-2's Conv1D layers), by full
    name, read from the model built on the meta device: no weights, no memory."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    try:
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as error:  # a config transformers cannot build a causal LM from
        raise RecipeError(
            f"model config: cannot build a causal language model from it ({error}). Fix: pass "
            "a causal LM (a model that AutoModelForCausalLM loads)."
        ) from None
    kinds = (torch.nn.Linear, torch.nn.Embedding, Conv1D)
    return {name: m for name, m in skeleton.named_modules() if isinstance(m, kinds)}


def check_model(recipe: Recipe, max_length: int) -> Any:
    """Everything about the model that does not need its weights: the folder, the config, the
    context length, the LoRA targets. Returns the config."""
    from peftkit.core.targets import check_targets

    name = recipe.model.name
    config = load_config(name, recipe.model.trust_remote_code)
    context = getattr(config, "max_position_embeddings", None)
    if context is not None and max_length > context:
        from peftkit.memory.shapes import rope_scaled

        scaled, how = rope_scaled(config.to_dict(), context)
        if scaled is None or max_length > scaled:
            stretched = f" ({context}, {scaled} with its {how})" if scaled else ""
            raise RecipeError(
                f"training.max_length: got {max_length}, but {name} handles at most "
                f"{scaled or context} tokens{stretched}. Fix: set "
                f"training.max_length={scaled or context} (or less)."
            )
        log.warning(
            "training.max_length %d is beyond max_position_embeddings (%d) of %s: positions "
            "past it rely on the config's %s, which reaches %d tokens.",
            max_length, context, name, how, scaled,
        )  # fmt: skip
    lora = recipe.lora
    if recipe.method != "full" and (lora.target_modules != "all-linear" or lora.modules_to_save):
        modules = adaptable_modules(config, recipe.model.trust_remote_code)
        where = f"the model {name}"
        if lora.target_modules != "all-linear":
            check_targets(lora.target_modules, list(modules), where)
        if lora.modules_to_save:
            check_targets(lora.modules_to_save, list(modules), where, "lora.modules_to_save")
    return config


def load_model(recipe: Recipe, config: Any = None) -> Any:
    """The base model, after :func:`check_model` (which returns ``config``), loaded as the recipe
    resolves on this machine (:meth:`Recipe.model_kwargs`: dtype, attention, quantization)."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    name = recipe.model.name
    config = config if config is not None else check_model(recipe, recipe.training.max_length)
    try:
        return AutoModelForCausalLM.from_pretrained(name, **recipe.model_kwargs(config))
    except (OSError, ValueError, SafetensorError) as error:  # missing or corrupt weights
        raise _not_loadable(name, "model", error) from None


def _not_loadable(name: str, what: str, error: Exception, field: str = "model.name") -> RecipeError:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0].rstrip(". ")
    return RecipeError(
        f"{field}: could not load the {what} of '{name}': {first}. Fix: check the name; "
        "without network access only local folders and models in the Hugging Face cache load."
    )
