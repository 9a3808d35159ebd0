"""The numeric ranges peftkit takes, one home for the recipe's fields, the planner's search and
its fixes, and the command line: a fix the planner suggests is always a value the recipe takes.
"""

from __future__ import annotations

SHORTEST_SEQUENCE = 16
"""The shortest training.max_length (and `peftkit estimate --seq-len`) peftkit takes."""
LONGEST_SEQUENCE = 1_048_576
"""The longest training.max_length; a model's context usually sets a lower one."""
MAX_BATCH = 4096
"""The most training.batch_size (examples per device per forward pass) a recipe takes."""
MAX_ACCUMULATION = 4096
"""The most training.gradient_accumulation_steps a recipe takes: a fix that moves a whole
effective batch into accumulation stays within it."""
MAX_RANK = 1024
"""The highest lora.r a recipe takes."""
MAX_GPUS = 1024
"""As many GPUs as a recipe's ``budget.gpus`` and `peftkit plan --gpus` allow."""
