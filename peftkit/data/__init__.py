"""Training data for the main job: every row of the files read and checked before training,
every problem reported at once, then the evaluation split.

Formats are TRL's: ``text`` (loss on every token), ``prompt``/``completion`` (loss on the
completion), ``messages`` (chat; needs the tokenizer's chat template). Prompts and completions
may be strings or chat turns (lists of ``{"role", "content"}``), as TRL accepts.
"""

from peftkit.data.splits import Splits, check_chat, prepare

__all__ = ["Splits", "check_chat", "prepare"]
