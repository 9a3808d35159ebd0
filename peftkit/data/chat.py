"""Chat templates, special tokens and system prompts, applied to your tokenizer and rows.

A base model often ships without a chat template, and chat data cannot be turned into text
without one. :func:`use_chat_template` sets one (a built-in of
:mod:`peftkit.recipes.chat_templates`, a Jinja file, or the text) and the special tokens, and
makes sure that assistant-only loss can mark the assistant's turns: a template without
``{% generation %}`` markers gets TRL's training version of it where TRL knows one
(``trl.chat_template_utils.get_training_chat_template``), and is refused with the fix where it
does not. :func:`add_system_prompt` puts a system turn first in every conversation that has none.
``peftkit train``, ``check`` and ``evaluate`` apply a recipe's ``data.chat_template``,
``data.special_tokens`` and ``data.system_prompt`` through these two functions; call them
yourself with your own tokenizer and dataset.

    from peftkit.data import add_system_prompt, use_chat_template
    tokenizer = use_chat_template(tokenizer, "chatml", assistant_only_loss=True)
    train = add_system_prompt(train, "Answer in JSON.")
    args = recipe.build_sft_config("out", eos_token=tokenizer.eos_token)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from peftkit.core.errors import RecipeError, did_you_mean
from peftkit.core.text import read_text
from peftkit.recipes.chat_templates import (
    CHAT_TEMPLATES,
    TEMPLATE_FILE_SUFFIXES,
    is_builtin_name,
    is_template_text,
)
from peftkit.recipes.data_section import SpecialTokens

TOKEN_NAMES = tuple(SpecialTokens.model_fields)
Rows = TypeVar("Rows")


def template_text(choice: str, field: str = "data.chat_template") -> str:
    """The Jinja text ``choice`` stands for: a built-in's, a file's, or ``choice`` itself."""
    if choice in CHAT_TEMPLATES:
        return CHAT_TEMPLATES[choice].text
    if is_template_text(choice):
        return choice
    builtins = ", ".join(CHAT_TEMPLATES)
    if is_builtin_name(choice):
        hint = did_you_mean(choice, CHAT_TEMPLATES)
        raise RecipeError(
            f"{field}: {choice!r} is not a built-in template ({builtins})"
            + (f"; {hint}" if hint else "")
            + ". Fix: name a built-in, or give the path of a Jinja file (./mine.jinja)."
        )
    path = Path(choice).expanduser()
    if not path.is_file():
        raise RecipeError(
            f"{field}: {choice!r} is not a file (nor a built-in template: {builtins}). Fix: "
            f"check the path, or name a built-in."
        )
    text = read_text(path, "chat template")
    if not is_template_text(text):
        raise RecipeError(
            f"{field}: {choice!r} holds no Jinja ({{% ... %}} or {{{{ ... }}}}), so it is not a "
            f"chat template. Fix: give a file of {' or '.join(TEMPLATE_FILE_SUFFIXES)} Jinja "
            "text, e.g. one saved from a tokenizer's chat_template."
        )
    return text


def use_chat_template(
    tokenizer: Any,
    template: str | None = None,
    *,
    special_tokens: Mapping[str, str] | None = None,
    assistant_only_loss: bool = False,
) -> Any:
    """Set ``tokenizer``'s chat template and special tokens, and return it.

    ``template``: a built-in name (chatml, llama3, zephyr), the path of a Jinja file, or the
    template's text; None keeps the tokenizer's own. A built-in whose turns end with a token of
    their own makes it the EOS token, so that generation stops at the end of an answer: pass
    ``eos_token=tokenizer.eos_token`` to the SFTConfig (``build_sft_config``) so that the
    trainer tells the model. ``special_tokens`` (bos_token, eos_token, pad_token, unk_token)
    are set after the template; each must be one token of the vocabulary. With
    ``assistant_only_loss`` the template must mark the assistant's turns (``{% generation %}``):
    TRL's training version of a template it knows is put in, any other is refused.
    """
    if template is not None:
        tokenizer.chat_template = template_text(template)
        end = CHAT_TEMPLATES[template].end if template in CHAT_TEMPLATES else None
        if end is not None:
            _set_token(tokenizer, "eos_token", end, f"the {template} template's end of turn")
    for name, token in (special_tokens or {}).items():
        if name not in TOKEN_NAMES:
            raise RecipeError(
                f"special_tokens: unknown name {name!r}. Fix: use one of {', '.join(TOKEN_NAMES)}."
            )
        _set_token(tokenizer, name, token, f"data.special_tokens.{name}")
    if assistant_only_loss:
        _mark_assistant_turns(tokenizer, template)
    return tokenizer


def _set_token(tokenizer: Any, name: str, token: str, field: str) -> None:
    """Make ``token`` the tokenizer's ``name`` token: only a token it already has, since a new
    one would need a new, untrained embedding row."""
    if not isinstance(token, str) or token not in tokenizer.get_vocab():
        raise RecipeError(
            f"{field}: {token!r} is not a token of this tokenizer, and peftkit adds none (a new "
            "token starts with an untrained embedding). Fix: choose a token the tokenizer has, "
            "or the zephyr template, which ends turns with the tokenizer's own EOS token."
        )
    setattr(tokenizer, name, token)


def _mark_assistant_turns(tokenizer: Any, chosen: str | None) -> None:
    """Assistant-only loss needs ``{% generation %}`` markers: TRL's training version of a
    template it knows, else a refusal with the fix."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    current = tokenizer.chat_template
    where = "data.chat_template" if chosen is not None else "the tokenizer's chat template"
    if current is None:
        raise RecipeError(
            "the data is chat data (messages), and the tokenizer has no chat template. Fix: set "
            f"data.chat_template (one of {', '.join(CHAT_TEMPLATES)}, or a Jinja file)."
        )
    if has_generation_markers(current):
        return
    try:
        tokenizer.chat_template = get_training_chat_template(tokenizer)
    except ValueError:
        raise RecipeError(
            f"{where} has no {{% generation %}} markers, so assistant-only loss "
            "(data.completion_only_loss on chat data) cannot tell the answers from the prompts, "
            "and TRL knows no training version of it. Fix: wrap the assistant's content and its "
            "end-of-turn token in {% generation %}...{% endgeneration %}, choose a built-in "
            f"template ({', '.join(CHAT_TEMPLATES)}), or set data.completion_only_loss=false."
        ) from None


def add_system_prompt(rows: Rows, prompt: str, where: str = "the rows") -> Rows:
    """``rows`` (a ``datasets.Dataset`` or a list of row dicts) with a system turn ``prompt``
    first in every conversation that has no system turn: the ``messages`` column, or prompts
    given as turns. Rows of text, or with plain-text prompts, are refused (``where`` names
    them): a system prompt is a turn of a conversation."""
    if not isinstance(prompt, str) or not prompt:
        raise RecipeError(
            f"system_prompt: got {prompt!r}. Fix: give the system prompt as non-empty text."
        )
    if isinstance(rows, list):
        return [_with_system(row, prompt, where) for row in rows]  # type: ignore[return-value]
    return rows.map(lambda row: _with_system(row, prompt, where))  # type: ignore[attr-defined]


def _with_system(row: dict[str, Any], prompt: str, where: str) -> dict[str, Any]:
    column = "messages" if "messages" in row else "prompt"
    turns = row.get(column)
    if not isinstance(turns, list):
        raise RecipeError(
            f"data.system_prompt: a system prompt is a turn of a conversation, and {where} has "
            "no turns (text, or plain-text prompts). Fix: give messages rows or prompts as turns "
            '([{"role": "user", "content": "..."}]), or remove data.system_prompt.'
        )
    if turns and isinstance(turns[0], dict) and turns[0].get("role") == "system":
        return row
    return {**row, column: [{"role": "system", "content": prompt}, *turns]}
