"""``JsonAnswers``: the JSON and schema-valid rates of a small sample at every evaluation."""

from __future__ import annotations

from typing import Any, ClassVar

from peftkit.callbacks.base import Leading, add_to_log
from peftkit.core.metrics import eval_name, is_evaluation
from peftkit.evaluation.json_answers import generate_answers, json_rates


class JsonAnswers(Leading):
    """Generate answers for a few held-out prompts at each evaluation during training and add
    ``eval_json_valid_rate`` (and ``eval_schema_valid_rate``) to that evaluation's metrics.

    The rates are added to the evaluation's log event, ahead of the Trainer's own callbacks,
    so every ``report_to`` integration has them, ``EarlyStopping(metric=
    "eval_schema_valid_rate")`` can stop on them, and ``metric_for_best_model`` can name them.
    Evaluations outside ``train()`` are left alone.
    """

    LEAD_ORDER: ClassVar[int] = 0  # a producer of metrics: ahead of the callbacks deciding on them

    def __init__(
        self,
        tokenizer: Any,
        prompts: list[Any],
        schema: dict[str, Any] | None = None,
        max_new_tokens: int = 128,
        batch_size: int = 16,
    ) -> None:
        super().__init__()
        self.tokenizer, self.prompts, self.schema = tokenizer, prompts, schema
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict | None = None, model: Any = None, **_
    ) -> None:
        if not self.training or logs is None or not is_evaluation(logs) or model is None:
            return
        answers = generate_answers(
            model, self.tokenizer, self.prompts, self.max_new_tokens, self.batch_size
        )
        rates = json_rates(answers.texts, self.schema)
        add_to_log(state, logs, {eval_name(k): v for k, v in rates.items() if k != "count"})
