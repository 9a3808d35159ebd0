"""Model cards: the README.md of an adapter (and of a merged model) that says what was trained.

PEFT writes an empty template card; peftkit replaces it with one that answers what a reader of
the Hub asks: which base, which recipe (the whole resolved YAML), which data, how it scored
before and after, why it stopped, and how to load and merge it. The metadata is the Hub's
(``base_model``, ``library_name: peft``, tags), written through ``huggingface_hub.ModelCard``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peftkit.core.names import is_hub_id

CARD = "README.md"
TAGS = ["peftkit", "sft", "text-generation"]
ADAPTER_TAGS = [*TAGS, "peft", "lora"]


def hub_id(model: str) -> str | None:
    """The Hub repository a base model came from: the name itself when it is one, or for a
    local folder the ``_name_or_path`` its config.json records, when that is a Hub id. None
    when neither is known (the card then names the folder in its text only)."""
    if is_hub_id(model):
        return model
    config = Path(model) / "config.json"
    try:
        recorded = json.loads(config.read_text(encoding="utf-8")).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(recorded, str) and is_hub_id(recorded):
        return recorded
    return None


def adapter_card(
    recipe: Any,
    metrics: dict[str, Any],
    adapter_name: str = "adapter",
    notes: dict[str, str] | None = None,
) -> str:
    """The card of the adapter ``peftkit train`` wrote, from its recipe and metrics."""
    base = recipe.model.name
    data = metrics["data"]
    sources = [Path(p).name for p in (recipe.data.train_path, recipe.data.eval_path) if p]
    adapter = recipe.method != "full"
    what = "LoRA adapter" if adapter else "fine-tuned model"
    lines = [
        f"# {recipe.recipe} {what} for {Path(base).name}",
        "",
        f"Trained with [peftkit](https://pypi.org/project/peftkit/) `{recipe.recipe}` "
        f"({recipe.method}) on `{base}`.",
        "",
        "## Data",
        "",
        f"- format: {data['format']}; {data['train_rows']} training rows from "
        f"{', '.join(f'`{name}`' for name in sources) or 'the recipe'}",
        f"- evaluation: {data['eval_rows']} rows ({data.get('eval_source') or 'none'})",
        "",
        "## Results",
        "",
        *_results(metrics),
        "",
        f"Stop: {metrics.get('stop_reason') or 'finished the planned steps'} after "
        f"{metrics['global_step']} steps; best step: {metrics.get('best_step')}.",
        "",
        "## Use",
        "",
        *_use(adapter_name, adapter),
        "",
        "## Recipe",
        "",
        *_resolved(metrics),
        "```yaml",
        recipe.to_yaml(notes).rstrip(),
        "```",
    ]
    if adapter:
        return _with_metadata("\n".join(lines), base, "peft", ADAPTER_TAGS)
    return _with_metadata("\n".join(lines), base, "transformers", TAGS)


def _resolved(metrics: dict[str, Any]) -> list[str]:
    """What the recipe's ``auto`` settings became for this run, and why."""
    found = metrics.get("resolved") or {}
    if not found:
        return []
    lines = ["Resolved for the machine and model it trained on:", ""]
    lines += [f"- `{key}`: {item['value']} ({item['why']})" for key, item in found.items()]
    return [*lines, ""]


def _use(name: str, adapter: bool) -> list[str]:
    loader = "AutoPeftModelForCausalLM" if adapter else "AutoModelForCausalLM"
    package = "peft" if adapter else "transformers"
    lines = [
        "```python",
        f"from {package} import {loader}",
        "",
        f'model = {loader}.from_pretrained("{name}")',
        "```",
    ]
    if adapter:
        lines += ["", f"Merge into the base: `peftkit merge {name} --output merged`."]
    return lines


def merged_card(base: str, adapter: Path, adapter_text: str | None) -> str:
    """The card of a merged model: the base, the adapter merged in, and the adapter's card."""
    lines = [
        f"# {Path(base).name} with a merged LoRA adapter",
        "",
        f"`{base}` with the adapter `{adapter}` merged into its weights by "
        "[peftkit](https://pypi.org/project/peftkit/) `merge`: it loads with "
        "`AutoModelForCausalLM.from_pretrained`, no peft needed.",
    ]
    if adapter_text:
        from huggingface_hub import ModelCard

        lines += ["", "## The adapter", "", ModelCard(adapter_text).text.strip()]
    return _with_metadata("\n".join(lines), base, "transformers", [*TAGS, "merge"])


def _results(metrics: dict[str, Any]) -> list[str]:
    from peftkit.run.report import RESULT_ROWS, formatted

    before, after = metrics.get("before") or {}, metrics.get("after") or {}
    rows = ["| held-out | before | after |", "| --- | --- | --- |"]
    for key, name in RESULT_ROWS.items():
        if key in before or key in after:
            rate = key.endswith("_rate")
            was, now = formatted(before.get(key), rate), formatted(after.get(key), rate)
            rows.append(f"| {name} | {was} | {now} |")
    if len(rows) == 2:
        return ["No evaluation data: no scores."]
    return rows + [f"\nNote: {note}." for note in after.get("notes", [])]


def _with_metadata(text: str, base: str, library: str, tags: list[str]) -> str:
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        base_model=hub_id(base),
        library_name=library,
        pipeline_tag="text-generation",
        tags=tags,
    )
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text}\n"))
