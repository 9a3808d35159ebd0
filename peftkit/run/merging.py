"""Merge a LoRA adapter into its base model, for inference with no adapter overhead.

An adapter trained on a 4-bit base learned corrections to the *dequantized* NF4 weights, so the
base is loaded in 4-bit exactly as in training and dequantized before merging; merging into the
original 16-bit weights instead would add the quantization error back.

Before any weights load, the adapter's tensors are matched against the base model's modules
(built on the meta device): an adapter merged onto a base it was not trained on is refused with
the base it expects, instead of failing deep inside peft or, worse, merging into the wrong place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peftkit.core.errors import RecipeError
from peftkit.run.card import CARD, merged_card
from peftkit.run.hub import check_repo, push
from peftkit.run.outputs import OutputFolder, check_output

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def recipe_beside(adapter: Path) -> Any:
    """The recipe ``peftkit train`` wrote with the adapter (in its folder, or beside it in the
    output); None when there is none. `merge`, `evaluate` and `generate` read it."""
    from peftkit import recipes

    for candidate in (adapter / "recipe.yaml", adapter.parent / "recipe.yaml"):
        if candidate.is_file():
            return recipes.load(candidate)
    return None


def merge(
    adapter: str | Path,
    output: str | Path,
    base: str | None = None,
    overwrite: bool = False,
    push_to_hub: str | None = None,
) -> Path:
    """Write ``base`` (default: the adapter's own base) with ``adapter`` merged into ``output``,
    with a model card; ``push_to_hub`` uploads the result to that Hub repository."""
    adapter = Path(adapter)
    adapter_config = read_adapter(adapter)
    trained_on = adapter_config.get("base_model_name_or_path")
    chosen = base
    base = base or trained_on
    if not isinstance(base, str) or not base:
        raise RecipeError(f"adapter '{adapter}' does not name its base model. Fix: pass --base.")
    target = check_output(output, {"the adapter": adapter, "--base": base}, overwrite)
    if push_to_hub is not None:
        check_repo(push_to_hub)
    recipe = recipe_beside(adapter)
    quantization = recipe.build_bnb_config() if recipe is not None else None
    if quantization is not None and not quantization.load_in_4bit:
        if chosen is None:
            raise RecipeError(
                "the adapter was trained on an 8-bit base; LLM.int8 weights cannot be "
                "dequantized exactly. Fix: merge into the 16-bit base, accepting a small "
                f"mismatch, by naming it: --base {base}"
            )
        quantization = None  # the user chose the 16-bit base
    _check_fits(adapter, adapter_config, base, trained_on)
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if quantization is not None else "auto"
    model = AutoModelForCausalLM.from_pretrained(
        base, dtype=dtype, quantization_config=quantization
    )
    if quantization is not None:
        model = model.dequantize()
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    tokenizer_source = adapter if (adapter / "tokenizer_config.json").is_file() else base
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    with OutputFolder(target, "merge") as folder:
        merged.save_pretrained(folder.staging)
        tokenizer.save_pretrained(folder.staging)
        (folder.staging / CARD).write_text(merged_card(base, adapter, _peftkit_card(adapter)))
        folder.commit()
    if push_to_hub is not None:
        push(target, push_to_hub)
    return target


def _peftkit_card(adapter: Path) -> str | None:
    """The adapter's card when peftkit wrote it (PEFT's own is an empty template)."""
    from huggingface_hub import ModelCard

    path = adapter / CARD
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    return text if "peftkit" in (ModelCard(text).data.tags or []) else None


def read_adapter(adapter: Path) -> dict[str, Any]:
    """The adapter's config, after checking the folder holds a complete adapter."""
    config_file = adapter / "adapter_config.json"
    if not config_file.is_file() and (adapter / "config.json").is_file():
        raise RecipeError(
            f"adapter '{adapter}' holds a whole model (a run with method full trains every "
            "weight), not an adapter: there is nothing to merge. Fix: use that folder as the "
            "fine-tuned model itself."
        )
    if not config_file.is_file():
        raise RecipeError(
            f"adapter '{adapter}': no adapter_config.json there. Fix: pass the adapter folder "
            "that `peftkit train` wrote (OUTPUT/adapter)."
        )
    if not any((adapter / name).is_file() for name in ADAPTER_WEIGHTS):
        raise RecipeError(
            f"adapter '{adapter}': no adapter weights ({' or '.join(ADAPTER_WEIGHTS)}). Fix: "
            "pass a complete adapter folder (OUTPUT/adapter of a finished run)."
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise RecipeError(
            f"adapter '{adapter}': adapter_config.json is not valid JSON ({error}). Fix: save "
            "the adapter again with model.save_pretrained(folder)."
        ) from None
    if not isinstance(config, dict):
        raise RecipeError(
            f"adapter '{adapter}': adapter_config.json is not a JSON object. Fix: save the "
            "adapter again with model.save_pretrained(folder)."
        )
    return config


def _check_fits(adapter: Path, adapter_config: dict[str, Any], base: str, trained_on: Any) -> None:
    """The adapter must fit ``base``: every adapter tensor on a module of the matching size,
    every module its targets name covered (a base with more layers would keep layers the
    adapter never trained), and the same architecture and layer count as the model it was
    trained on (when that one's config can be read)."""
    from peftkit.run.loading import adaptable_modules, load_config

    config = load_config(base, field="--base")
    if isinstance(trained_on, str) and trained_on:
        expected, fix = f"'{trained_on}'", f"pass --base {trained_on}"
    else:
        expected, fix = "another model", "pass the base the adapter was trained on with --base"
    modules = adaptable_modules(config)
    shapes = _adapter_shapes(adapter)
    for key, shape in shapes.items():
        place, _, kind = key.removeprefix("base_model.model.").partition(".lora_")
        module = modules.get(place)
        if module is None or _features(module, kind) != _adapter_features(shape, kind):
            found = "no such layer" if module is None else f"a layer of another size ({module})"
            raise RecipeError(
                f"--base {base}: the adapter does not fit it: its tensor {key} {list(shape)} "
                f"belongs on {place}, and the base has {found}. The adapter was trained on "
                f"{expected}. Fix: {fix}."
            )
    uncovered = _uncovered(adapter_config, modules, shapes)
    if uncovered:
        raise RecipeError(
            f"--base {base}: the adapter does not fit it: the base has {len(uncovered)} "
            f"module(s) the adapter's targets name and it has no weights for (first: "
            f"{uncovered[0]}): the base has more layers than the model the adapter was trained "
            f"on, {expected}. Fix: {fix}."
        )
    if isinstance(trained_on, str) and trained_on and trained_on != base:
        _check_architecture(base, config, trained_on, fix)


ARCHITECTURE_KEYS = ("model_type", "num_hidden_layers", "hidden_size", "intermediate_size")
"""What two bases must share for an adapter of one to merge into the other (a fine-tuned
variant of the same model does; another model of the same sizes does not)."""


def _check_architecture(base: str, config: Any, trained_on: str, fix: str) -> None:
    """``base`` against the model the adapter names, when that model's config is at hand (a
    local folder, or a Hub model in the cache); nothing to compare otherwise."""
    from peftkit.run.loading import load_config

    try:
        theirs = load_config(trained_on, field="the adapter's base_model_name_or_path")
    except (RecipeError, OSError):
        return
    for key in ARCHITECTURE_KEYS:
        mine, expected = getattr(config, key, None), getattr(theirs, key, None)
        if mine != expected:
            raise RecipeError(
                f"--base {base}: the adapter was trained on '{trained_on}', whose {key} is "
                f"{expected!r}, and this base's is {mine!r}: another architecture, whatever "
                f"the shapes. Fix: {fix}."
            )


def _uncovered(
    adapter_config: dict[str, Any], modules: dict[str, Any], shapes: dict[str, Any]
) -> list[str]:
    """The modules of the base that the adapter's target names match and that it has no
    tensor for; none when the adapter chose its layers (layers_to_transform) or names its
    targets by pattern."""
    targets = adapter_config.get("target_modules")
    if not shapes or not isinstance(targets, list) or adapter_config.get("layers_to_transform"):
        return []
    adapted = {key.removeprefix("base_model.model.").partition(".lora_")[0] for key in shapes}
    return [name for name in modules if name.rsplit(".", 1)[-1] in targets and name not in adapted]


def _adapter_shapes(adapter: Path) -> dict[str, tuple[int, ...]]:
    """The LoRA A/B tensors of the adapter and their shapes, read from the file header only."""
    weights = adapter / ADAPTER_WEIGHTS[0]
    if not weights.is_file():
        return {}  # a .bin adapter: peft checks it when loading
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="pt") as handle:
            return {
                key: tuple(handle.get_slice(key).get_shape())
                for key in handle.keys()  # noqa: SIM118 (safe_open is not a mapping)
                if ".lora_A." in key or ".lora_B." in key
            }
    except (SafetensorError, OSError) as error:
        raise RecipeError(
            f"adapter '{adapter}': {weights.name} is not a readable safetensors file ({error}). "
            "Fix: save the adapter again with model.save_pretrained(folder)."
        ) from None


def _features(module: Any, kind: str) -> int | None:
    """The size a LoRA factor of ``kind`` (A... or B...) must have on ``module``."""
    weight = getattr(module, "weight", None)
    if weight is None or weight.dim() != 2:
        return None
    out_features, in_features = weight.shape
    if type(module).__name__ == "Conv1D":  # GPT-2 stores its weight transposed
        in_features, out_features = out_features, in_features
    return in_features if kind.startswith("A") else out_features


def _adapter_features(shape: tuple[int, ...], kind: str) -> int | None:
    """The module size an A factor ([r, in]) or a B factor ([out, r]) was trained for."""
    if len(shape) != 2:
        return None
    return shape[1] if kind.startswith("A") else shape[0]
