"""``JsonAnswers``: the JSON and schema-valid rates of a small sample at every evaluation."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from peftkit.evaluation.json_answers import generate_answers, json_rates


class JsonAnswers(TrainerCallback):
    """Generate answers for a few held-out prompts at each evaluation and add
    ``eval_json_valid_rate`` (and ``eval_schema_valid_rate``) to the metrics.

    Put it before EarlyStopping to stop on ``metric="eval_schema_valid_rate"``.
    """

    def __init__(
        self,
        tokenizer: Any,
        prompts: list[Any],
        schema: dict[str, Any] | None = None,
        max_new_tokens: int = 128,
        batch_size: int = 16,
    ) -> None:
        self.tokenizer, self.prompts, self.schema = tokenizer, prompts, schema
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict, model: Any = None, **_
    ):
        answers = generate_answers(
            model, self.tokenizer, self.prompts, self.max_new_tokens, self.batch_size
        )
        rates = json_rates(answers, self.schema)
        found = {f"eval_{k}": v for k, v in rates.items() if k != "count"}
        metrics.update(found)
        if state.log_history and "eval_loss" in state.log_history[-1]:
            state.log_history[-1].update(found)
