"""The chat templates ``data.chat_template`` names, for a base model that has none.

Each marks the assistant's turns with ``{% generation %}`` ... ``{% endgeneration %}``, end-of-turn
token included, so that assistant-only loss (``data.completion_only_loss`` on chat data) trains
on the answers and on stopping, and on nothing else. A template whose turns end with a token of
its own (``<|im_end|>``, ``<|eot_id|>``) names it as ``end``: it becomes the tokenizer's EOS
token, so that generation stops there; zephyr ends turns with the tokenizer's own EOS token and
so fits any tokenizer. Plain strings, so that validating a recipe reads them without Jinja.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatTemplate:
    """A built-in template: its Jinja text and the token that ends a turn (None: the
    tokenizer's EOS token)."""

    text: str
    end: str | None


CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}{{- message['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
LLAMA3 = (
    "{%- if bos_token %}{{- bos_token }}{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] | trim + '<|eot_id|>' }}{%- endgeneration %}"
    "{%- else %}{{- message['content'] | trim + '<|eot_id|>' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
ZEPHYR = (
    "{%- for message in messages %}"
    "{{- '<|' + message['role'] + '|>\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] + eos_token }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}{{- message['content'] + eos_token + '\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- endif %}"
)

CHAT_TEMPLATES: dict[str, ChatTemplate] = {
    "chatml": ChatTemplate(CHATML, "<|im_end|>"),
    "llama3": ChatTemplate(LLAMA3, "<|eot_id|>"),
    "zephyr": ChatTemplate(ZEPHYR, None),
}
"""The built-in templates by name (axolotl's names where it has them)."""

TEMPLATE_FILE_SUFFIXES = (".jinja", ".j2")


def is_template_text(value: str) -> bool:
    """Whether ``value`` is a template's Jinja text rather than a name or a path."""
    return "{{" in value or "{%" in value


def is_builtin_name(value: str) -> bool:
    """Whether ``value`` can only mean a built-in template: neither Jinja text nor a path
    (a path has a folder or a file suffix: ``./mine``, ``template.jinja``)."""
    return not is_template_text(value) and "/" not in value and "." not in value


def is_template_file(value: str | None) -> bool:
    """Whether ``value`` names a template file (neither a built-in nor the text)."""
    return value is not None and not is_template_text(value) and not is_builtin_name(value)
