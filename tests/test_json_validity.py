"""Is an answer JSON, and does it satisfy the schema: the rates ``peftkit train`` reports for
the json-output recipe, and the ``evaluate`` metric module built on them.

Strict on purpose: the whole answer must be JSON, as a program downstream reads it. Text after
the JSON is a model that does not stop where it should; it must not look perfect.
"""

from __future__ import annotations

import pytest

from peftkit.evaluation import METRIC_PATH, json_rates

SCHEMA = {
    "type": "object",
    "properties": {"code": {"type": "integer"}, "phrase": {"type": "string"}},
    "required": ["code", "phrase"],
}


@pytest.mark.parametrize(
    ("answer", "is_json"),
    [
        ('{"a": 1}', True),
        ('  {"a": 1}\n\n', True),  # whitespace around it aside
        ("null", True),  # JSON's null is JSON
        ('"text"', True),
        ("-1.5e3", True),
        ("[]", True),
        ('{"a": 1} Hope this helps', False),  # text after the JSON
        ('{"a": 1}\n\nThat is the answer.', False),
        ('{"a": 1}{"a": 2}', False),  # two values
        ('{"a": 1}}', False),
        ('Sure! {"a": 1}', False),  # text before it
        ('{"a": 1', False),  # cut off
        ("", False),
        ("   ", False),
        ("NaN", False),  # Python's json accepts NaN and Infinity; JSON (RFC 8259) does not
        ("-Infinity", False),
        ('{"score": NaN}', False),
        ('{"score": Infinity}', False),
        ("{'a': 1}", False),  # a Python dict's repr
    ],
)
def test_an_answer_is_json_only_if_all_of_it_is(answer: str, is_json: bool) -> None:
    assert json_rates([answer]) == {"json_valid_rate": 1.0 if is_json else 0.0, "count": 1}


def test_rates_over_answers_with_a_schema() -> None:
    answers = [
        '{"code": 200, "phrase": "OK"}',  # JSON, schema-valid
        '  {"code": 404, "phrase": "Not Found"}\n',  # whitespace aside: the same
        '{"code": "404", "phrase": "Not Found"}',  # JSON, "404" is not an integer
        "[1, 2]",  # JSON, not an object
        '{"code": 200, "phrase": "OK"} Hope this helps',  # not JSON as a whole
        "",
    ]
    assert json_rates(answers, SCHEMA) == {
        "json_valid_rate": 4 / 6,
        "schema_valid_rate": 2 / 6,
        "count": 6,
    }
    assert json_rates(answers) == {"json_valid_rate": 4 / 6, "count": 6}
    assert json_rates([], SCHEMA) == {"json_valid_rate": 0.0, "schema_valid_rate": 0.0, "count": 0}


def test_the_evaluate_metric_module_gives_the_same_rates() -> None:
    """``evaluate.load(METRIC_PATH)``: no metric hub needed, same rates as json_rates."""
    import evaluate

    metric = evaluate.load(METRIC_PATH)
    answers = ['{"code": 200, "phrase": "OK"}', '{"code": 1} and more', "NaN", '{"code": "1"}']
    found = metric.compute(predictions=answers, schema=SCHEMA)
    assert found == {"json_valid_rate": 0.5, "schema_valid_rate": 0.25, "count": 4}
    assert metric.compute(predictions=answers) == {"json_valid_rate": 0.5, "count": 4}


def test_the_metric_class_describes_its_inputs_and_outputs() -> None:
    """What evaluate.load builds, made directly: one string feature, the predictions; its
    description and argument notes for the metric's card; the same rates."""
    import datasets

    from peftkit.evaluation.json_validity.json_validity import JsonValidity

    metric = JsonValidity()
    assert metric.features == datasets.Features({"predictions": datasets.Value("string")})
    assert metric.description.startswith("Share of predictions that parse as JSON and")
    assert "schema: optional JSON Schema" in metric.inputs_description
    assert metric.citation == ""
    answers = ['{"code": 200, "phrase": "OK"}', '{"code": 1} more', '{"code": "1", "phrase": ""}']
    found = metric.compute(predictions=answers, schema=SCHEMA)
    assert found == {"json_valid_rate": 2 / 3, "schema_valid_rate": 1 / 3, "count": 3}
    assert metric.compute(predictions=answers) == {"json_valid_rate": 2 / 3, "count": 3}
