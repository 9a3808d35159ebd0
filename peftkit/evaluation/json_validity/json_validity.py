"""An ``evaluate``-compatible metric: the share of predictions that are JSON, and that satisfy
a JSON Schema. The metric hub is not needed: ``evaluate.load(peftkit.evaluation.METRIC_PATH)``.
"""

import datasets
import evaluate

from peftkit.evaluation.json_answers import json_rates

_DESCRIPTION = "Share of predictions that parse as JSON and (given a schema) satisfy it."
_KWARGS = """
Args:
    predictions: generated answers (strings).
    schema: optional JSON Schema (a dict) the parsed answers must satisfy.
Returns:
    json_valid_rate, schema_valid_rate (with a schema), count.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class JsonValidity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, schema=None):
        return json_rates(list(predictions), schema)
