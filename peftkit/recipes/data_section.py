"""The ``data`` section: what the training examples look like and where the loss applies."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator

from peftkit.core.errors import did_you_mean, raise_all, rule_error
from peftkit.core.formats import DataFormat
from peftkit.core.section import Section
from peftkit.recipes.chat_templates import CHAT_TEMPLATES, is_builtin_name
from peftkit.recipes.foreign_keys import suggestions

TEXT_HAS_NO_COMPLETION = "raw text has no completion to restrict the loss to"


def restricts_text(fmt: str, completion_only_loss: bool | None) -> bool:
    """Whether the loss is to be restricted to completions of raw text, which has none: the one
    rule for a recipe (a declared or a detected format) and for ``peftkit import`` (axolotl's
    ``train_on_inputs: false`` with a completion dataset)."""
    return fmt == "text" and bool(completion_only_loss)


class SpecialTokens(Section):
    """Special tokens of the tokenizer, by their text; each must be one token of its vocabulary
    (peftkit adds none: a new token's embedding would start untrained)."""

    SUGGEST: ClassVar[dict[str, str]] = {"eos": "eos_token", "pad": "pad_token", "bos": "bos_token"}

    bos_token: str | None = Field(None, min_length=1, description="Beginning of a sequence.")
    eos_token: str | None = Field(
        None,
        min_length=1,
        description="End of a sequence or turn: what answers are trained to end with and "
        "generation stops at (TRL's eos_token).",
    )
    pad_token: str | None = Field(None, min_length=1, description="Padding.")
    unk_token: str | None = Field(None, min_length=1, description="Unknown text.")

    def given(self) -> dict[str, str]:
        """The tokens set, by name."""
        return {name: value for name, value in self.model_dump().items() if value is not None}


class DataSection(Section):
    """The dataset's format and files; the CLI's --data/--eval-data override the paths."""

    SUGGEST: ClassVar[dict[str, str]] = suggestions(
        "data", dataset="train_path", path="train_path", train_file="train_path"
    )

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
    chat_template: str | None = Field(
        None,
        min_length=1,
        description="The chat template for chat data: a built-in "
        f"({', '.join(CHAT_TEMPLATES)}), the path of a Jinja file, or the template itself; null "
        "keeps the tokenizer's own. Assistant-only loss needs {% generation %} markers, which "
        "the built-ins have and peftkit adds to the templates TRL knows.",
    )
    system_prompt: str | None = Field(
        None,
        min_length=1,
        description="A system turn put first in every conversation that has none (chat data: "
        "messages, or prompts given as turns).",
    )
    special_tokens: SpecialTokens = Field(
        default_factory=SpecialTokens, description=(SpecialTokens.__doc__ or "").strip()
    )

    @property
    def chooses_eos(self) -> bool:
        """Whether the recipe sets the EOS token (a template's end of turn, or the token)."""
        return self.chat_template is not None or self.special_tokens.eos_token is not None

    @model_validator(mode="after")
    def _check_chat(self) -> DataSection:
        errors = []
        template = self.chat_template
        if template is not None and is_builtin_name(template) and template not in CHAT_TEMPLATES:
            hint = did_you_mean(template, CHAT_TEMPLATES)
            errors.append(
                rule_error(
                    ["chat_template"],
                    template,
                    f"not a built-in template ({', '.join(CHAT_TEMPLATES)}); a file is named by "
                    "its path (./mine.jinja)" + (f"; {hint}" if hint else ""),
                    f"set data.chat_template={next(iter(CHAT_TEMPLATES))}, or give the path of "
                    "a Jinja file",
                )
            )
        if self.system_prompt is not None and self.format == "text":
            errors.append(
                rule_error(
                    ["system_prompt"],
                    self.system_prompt,
                    "a system prompt is a turn of a conversation, and text data has none",
                    "remove data.system_prompt, or give messages data (data.format=messages)",
                )
            )
        raise_all(type(self).__name__, errors)
        return self
