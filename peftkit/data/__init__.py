"""Training data for the main job: every row of the files read and checked before training,
every problem reported at once, then the evaluation split.

Formats are TRL's: ``text`` (loss on every token), ``prompt``/``completion`` (loss on the
completion), ``messages`` (chat; needs the tokenizer's chat template). Prompts and completions
may be strings or chat turns (lists of ``{"role", "content"}``), as TRL accepts. A base model
without a chat template gets one from :func:`use_chat_template`; :func:`add_system_prompt` puts
a system turn first in each conversation.
"""

from peftkit.data.chat import add_system_prompt, use_chat_template
from peftkit.data.splits import Splits, check_chat, prepare

__all__ = ["Splits", "add_system_prompt", "check_chat", "prepare", "use_chat_template"]
