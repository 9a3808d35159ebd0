"""Merge a LoRA adapter into its base model, for inference with no adapter overhead.

An adapter trained on a 4-bit base learned corrections to the *dequantized* NF4 weights, so the
base is loaded in 4-bit exactly as in training and dequantized before merging; merging into the
original 16-bit weights instead would add the quantization error back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from peftkit.errors import RecipeError


def _recipe_beside(adapter: Path) -> Any:
    from peftkit import recipes

    for candidate in (adapter / "recipe.yaml", adapter.parent / "recipe.yaml"):
        if candidate.is_file():
            return recipes.load(candidate)
    return None


def merge(
    adapter: str | Path, output: str | Path, base: str | None = None, overwrite: bool = False
) -> Path:
    """Write ``base`` (default: the adapter's own base) with ``adapter`` merged into ``output``."""
    adapter, output = Path(adapter), Path(output)
    config_file = adapter / "adapter_config.json"
    if not config_file.is_file():
        raise RecipeError(
            f"adapter '{adapter}': no adapter_config.json there. Fix: pass the adapter folder "
            "that `peftkit train` wrote (OUTPUT/adapter)."
        )
    if output.exists() and any(output.iterdir()):
        if not overwrite:
            raise RecipeError(
                f"--output {output}: the folder is not empty. Fix: choose a new folder, or pass "
                "--overwrite."
            )
        shutil.rmtree(output)
    base = base or json.loads(config_file.read_text()).get("base_model_name_or_path")
    if not base:
        raise RecipeError(f"adapter '{adapter}' does not name its base model. Fix: pass --base.")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recipe = _recipe_beside(adapter)
    quantization = recipe.build_bnb_config() if recipe is not None else None
    if quantization is not None and not quantization.load_in_4bit:
        raise RecipeError(
            "the adapter was trained on an 8-bit base; LLM.int8 weights cannot be dequantized "
            "exactly. Fix: merge into the 16-bit base with --base and accept a small mismatch."
        )
    dtype = torch.bfloat16 if quantization is not None else "auto"
    model = AutoModelForCausalLM.from_pretrained(
        base, dtype=dtype, quantization_config=quantization
    )
    if quantization is not None:
        model = model.dequantize()
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    merged.save_pretrained(output)
    tokenizer_source = adapter if (adapter / "tokenizer_config.json").is_file() else base
    AutoTokenizer.from_pretrained(tokenizer_source).save_pretrained(output)
    return output
