"""``DomainAdaptation``: continued training on raw domain text (legal, medical, code)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from peftkit.core.section import with_defaults
from peftkit.recipes.base import Recipe, section
from peftkit.recipes.data_section import DataSection
from peftkit.recipes.lora import LoraSection
from peftkit.recipes.training import TrainingSection

_Lora = with_defaults(
    LoraSection, "DomainAdaptationLora", LoraSection.__doc__ or "", r=64, alpha=128.0
)
_Training = with_defaults(
    TrainingSection,
    "DomainAdaptationTraining",
    TrainingSection.__doc__ or "",
    learning_rate="auto",
    epochs=1.0,
    gradient_accumulation_steps=1,
    eval_fraction=0.05,
)
_Data = with_defaults(DataSection, "DomainAdaptationData", DataSection.__doc__ or "", format="text")


class DomainAdaptation(Recipe):
    """Continued training on raw domain text, so the model learns its vocabulary and style.

    Use it when the model should read and write a domain's language (contracts, clinical notes,
    a codebase) rather than follow a new instruction format. The data is plain text; the loss
    covers every token.

    Why the defaults:

    - ``lora.r=64, alpha=128``: new knowledge needs more adapter capacity than a format change;
      Biderman et al. 2024 ("LoRA Learns Less and Forgets Less") find continued pretraining gains
      grow with rank, and alpha = 2r is the usual scaling (Raschka 2023, "Practical Tips for
      Finetuning LLMs Using LoRA").
    - ``target_modules: all-linear``: adapters on every linear layer are needed to approach full
      fine-tuning (Dettmers et al. 2023, QLoRA, sec. 4; Biderman et al. 2024).
    - ``learning_rate=auto`` with a cosine schedule and 3% warmup: measured on the default
      model and scaled to others by their hidden size (:mod:`peftkit.recipes.learning_rate`;
      1.7e-4 on a 7-8B Llama, within the 1e-4..5e-4 Biderman et al. 2024 found for continued
      pretraining with LoRA). On SmolLM2-135M-Instruct (docs/benchmarks.md, "Recipe quality" and
      "Longer runs"; Python's documentation) the QLoRA paper's 2e-4, which this recipe used,
      left held-out perplexity at 22.71 after 16 chunks where 8e-4 reached 18.82; twice 8e-4
      leads after those 4 optimizer steps (18.35) but trails after 48 chunks (17.49 against
      17.07).
    - ``epochs=1``: domain corpora are large, and one pass avoids memorising them.
    - ``batch_size=4`` without gradient accumulation, and no packing: LoRA tolerates large
      batches less well than full fine-tuning (Schulman et al. 2025, "LoRA Without Regret",
      Thinking Machines), and a small corpus needs optimizer steps, not bigger ones. In an
      earlier ``benchmarks/recipe_quality.py`` (48 chunks of Python's docs on SmolLM2-135M), the
      former defaults (4 x 4 packed rows of 1024 tokens) took a single step and left held-out
      perplexity at 17.37; 4 x 1 packed took 3 steps to 16.10; 4 x 1 unpacked took 12 steps to
      14.30, 1.5x faster per token. TRL's packing flattens a batch into one sequence, which is
      only cheap with flash attention: turn ``packing`` on where you have it and a large corpus.
    - ``eval_fraction=0.05``: perplexity on held-out text is a stable signal with few samples.
    """

    recipe: Literal["domain-adaptation"] = Field(  # type: ignore[assignment]
        "domain-adaptation", description="Which recipe this is."
    )
    lora: _Lora = section(_Lora)  # type: ignore[valid-type]
    training: _Training = section(_Training)  # type: ignore[valid-type]
    data: _Data = section(_Data)  # type: ignore[valid-type]

    DATA_FORMATS = ("text",)
    DATA_FORMATS_WHY = (
        "domain adaptation learns a domain's language from raw text (for instruction data, use "
        "the json-output recipe)"
    )
