"""The data audit's checks on rows whose numbers are chosen: every figure, level, row and fix.

``test_data_audit.py`` runs the whole audit on tokenized files, where lengths come from a
tokenizer. Here each check gets rows of given lengths, so that a share exactly at a threshold,
a row exactly at ``max_length`` and every number in a message can be pinned, and a check that
counts one row too many, warns one row too early or names the wrong row fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from train_helpers import load_recipe

from peftkit.data.audit import Audit, Finding
from peftkit.data.audit_checks import (
    Row,
    check_duplicates,
    check_json,
    check_labels,
    check_lengths,
    check_lora_fit,
    check_run_length,
    check_template,
    longest_length,
    rows_of,
)
from peftkit.data.measure import normalized
from peftkit.data.splits import Splits

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[1] / "peftkit" / "data" / "audit.schema.json").read_text()
)
SMOLLM2 = {
    "model_type": "llama",
    "hidden_size": 576,
    "num_hidden_layers": 30,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
}
"""SmolLM2-135M's config (benchmarks/model_configs holds it too)."""


def _recipe(*overrides: str, name: str = "json-output") -> Any:
    return load_recipe(name, list(overrides))


def _row(n: int, total: int, trained: int = 10, kept: int | None = None, eos: bool = True) -> Row:
    """The ``n``-th row (line ``n + 1``), its own text (key ``n``)."""
    kept = min(trained, total) if kept is None else kept
    return Row(f"line {n + 1}", total, trained, kept, eos, key=n)


def _rows(*groups: tuple[int, dict[str, Any]]) -> list[Row]:
    """Rows in groups of (count, lengths), numbered through."""
    specs = [lengths for count, lengths in groups for _ in range(count)]
    return [_row(n, **lengths) for n, lengths in enumerate(specs)]


def _audited(check: Any, *args: Any, **kwargs: Any) -> Audit:
    found = Audit()
    check(found, *args, **kwargs)
    from jsonschema import validate

    validate(found.as_dict(), SCHEMA)  # the stable form: every stat under its documented key
    return found


def _only(found: Audit, code: str) -> Finding:
    (finding,) = [f for f in found.findings if f.code == code]
    return finding


def _splits(rows: list[dict[str, Any]], fmt: str, places: tuple[str, ...], **kw: Any) -> Splits:
    from datasets import Dataset

    return Splits(Dataset.from_list(rows), kw.pop("eval", None), fmt, "test", (), places, **kw)


# --- lengths -------------------------------------------------------------------------------------


def test_token_counts_of_the_rows_and_their_parts():
    recipe = _recipe()
    found = _audited(check_lengths, recipe, [_row(0, 10, 4), _row(1, 20, 5), _row(2, 30, 6)], None)
    assert found.stats["tokens"] == {
        "total": {"min": 10, "median": 20, "p95": 30, "max": 30},
        "prompt": {"min": 6, "median": 15, "p95": 24, "max": 24},
        "completion": {"min": 4, "median": 5, "p95": 6, "max": 6},
        "max_length": 512,
    }
    one = _audited(check_lengths, recipe, [_row(0, 7, 3)], None)  # the 95% rank of one row
    assert one.stats["tokens"]["total"] == {"min": 7, "median": 7, "p95": 7, "max": 7}
    nothing = _audited(check_lengths, recipe, [], None)
    assert nothing.stats["tokens"]["total"] == {} and "truncated_share" not in nothing.stats


def test_packed_rows_are_never_cut():
    """Packing splits the stream at max_length, not the rows: nothing is truncated."""
    found = _audited(
        check_lengths, _recipe("training.packing=true", "training.max_length=64"),
        _rows((2, {"total": 300, "kept": 0})), None,
    )  # fmt: skip
    assert found.findings == [] and "truncated_share" not in found.stats


def test_a_row_at_max_length_is_whole_and_cut_answers_are_counted_exactly():
    """64 tokens fit max_length=64; of the two rows cut, one loses trained tokens and one had
    none to lose. One row in 100 (exactly 1%) is not yet a warning."""
    rows = _rows(
        (97, {"total": 60}),
        (1, {"total": 64}),
        (1, {"total": 70, "kept": 4}),
        (1, {"total": 100, "trained": 0}),
    )
    found = _audited(check_lengths, _recipe("training.max_length=64"), rows, None)
    assert found.stats["truncated_share"] == 0.02
    assert found.stats["completion_truncated_share"] == 0.01
    assert found.findings == []


def test_answers_cut_in_more_than_one_row_in_a_hundred_are_a_warning_with_the_fix():
    rows = _rows(
        (96, {"total": 60}),
        (1, {"total": 64}),
        (1, {"total": 70, "kept": 4}),
        (1, {"total": 72, "kept": 2}),
        (1, {"total": 100, "trained": 0}),
    )
    found = _audited(check_lengths, _recipe("training.max_length=64"), rows, None)
    assert found.findings == [
        Finding(
            "warning",
            "completions-truncated",
            "2 of 100 rows (2%) lose trained tokens to max_length=64: cut answers teach cut "
            "answers",
            # the 99% rank is 72 tokens: rounded up to 128, which keeps every row whole
            "set training.max_length=128, which keeps 100% of the rows whole",
            ("line 98", "line 99"),
        )
    ]
    assert found.stats["suggested_max_length"] == 128


def test_text_rows_cut_are_counted_without_the_answers_sentence():
    rows = _rows((1, {"total": 60, "trained": 60}), (1, {"total": 80, "trained": 80, "kept": 64}))
    recipe = _recipe("training.max_length=64", name="domain-adaptation")
    found = _audited(check_lengths, recipe, rows, None)
    warning = _only(found, "completions-truncated")
    assert warning.message == "1 of 2 rows (50%) lose trained tokens to max_length=64"


def test_when_the_99_percent_rank_fits_the_suggestion_keeps_the_last_rows_too():
    """99 rows of 60 tokens and one of 100 at max_length=64: the 99% rank (60) needs no longer
    max_length, so the suggestion is the longest row rounded up (128), not 64."""
    rows = _rows((99, {"total": 60}), (1, {"total": 100, "kept": 4}))
    found = _audited(check_lengths, _recipe("training.max_length=64"), rows, None)
    assert found.stats["suggested_max_length"] == 128


def test_the_suggestion_stops_at_the_models_context_and_says_so():
    config = {**SMOLLM2, "max_position_embeddings": 96}
    rows = _rows((98, {"total": 60}), (2, {"total": 100, "kept": 4}))
    recipe = _recipe("training.max_length=64")
    found = _audited(check_lengths, recipe, rows, config)
    assert found.stats["suggested_max_length"] == 96
    assert _only(found, "completions-truncated").fix == (
        "set training.max_length=96, which keeps 98% of the rows whole (96 is the most the model "
        "takes: max_position_embeddings), and shorten or split the 2 row(s) longer than 96 tokens"
    )
    # the memory of both lengths, as `peftkit estimate` gives it for each recipe
    longer = _recipe("training.max_length=96")
    assert found.stats["memory_gb"] == {
        "current": recipe.estimate(config).total / 1e9,
        "suggested": longer.estimate(config).total / 1e9,
    }
    assert found.stats["memory_gb"]["suggested"] > found.stats["memory_gb"]["current"] > 0.1


def test_when_no_longer_max_length_is_possible_the_rows_must_be_shorter():
    config = {**SMOLLM2, "max_position_embeddings": 64}
    rows = _rows((98, {"total": 60}), (2, {"total": 100, "kept": 4}))
    found = _audited(check_lengths, _recipe("training.max_length=64"), rows, config)
    assert _only(found, "completions-truncated").fix == (
        "shorten or split the 2 row(s) longer than 64 tokens (64 is the most the model takes: "
        "max_position_embeddings)"
    )


def test_the_fix_gives_the_memory_of_the_suggested_length():
    rows = _rows((98, {"total": 60}), (2, {"total": 100, "kept": 4}))
    recipe = _recipe("training.max_length=64")
    found = _audited(check_lengths, recipe, rows, SMOLLM2)
    peak = _recipe("training.max_length=128").estimate(SMOLLM2).total / 1e9
    assert _only(found, "completions-truncated").fix == (
        f"set training.max_length=128, which keeps 100% of the rows whole (estimated peak "
        f"{peak:.1f} GB)"
    )


def test_every_answer_cut_is_an_error_naming_the_rows():
    rows = [_row(0, 100, 10, 4), _row(1, 90, 10, 2), _row(2, 30, 0)]
    found = _audited(check_lengths, _recipe("training.max_length=64"), rows, None)
    error = _only(found, "every-completion-truncated")
    assert error.level == "error" and error.rows == ("line 1", "line 2")


def test_the_longest_max_length_is_the_fields_bound_or_the_models_context():
    assert longest_length(None) == (1_048_576, "training.max_length takes")
    assert longest_length({"max_position_embeddings": 1_048_576}) == (
        1_048_576,
        "training.max_length takes",
    )
    assert longest_length({"max_position_embeddings": 4096}) == (
        4096,
        "the model takes: max_position_embeddings",
    )


# --- labels --------------------------------------------------------------------------------------


def test_the_share_of_trained_tokens_counts_what_max_length_leaves():
    rows = [_row(0, 100, 50, 14), _row(1, 60, 30)]
    found = _audited(check_labels, _recipe("training.max_length=64"), rows, "</s>")
    assert found.stats["trained_token_share"] == 44 / 124  # 64 + 60 tokens are seen
    assert (
        _audited(check_labels, _recipe(), [_row(0, 1, 1)], "</s>").stats["trained_token_share"]
        == 1.0
    )  # a one-token row: all of it is trained


def test_packed_rows_keep_every_token_and_count_as_whole():
    rows = [_row(0, 100, 50, eos=False), _row(1, 60, 30)]
    found = _audited(
        check_labels, _recipe("training.packing=true", "training.max_length=64"), rows, "</s>"
    )
    assert found.stats["trained_token_share"] == 80 / 160
    assert found.stats["rows_without_trained_eos"] == 1
    assert _only(found, "no-trained-eos").message.startswith("1 of 2 whole rows do not end")


def test_no_row_left_to_train_is_an_error_naming_the_rows():
    rows = [_row(0, 100, 10, 0), _row(1, 90, 0)]
    found = _audited(check_labels, _recipe("training.max_length=64"), rows, "</s>")
    error = _only(found, "no-trained-token")
    assert error.level == "error" and error.rows == ("line 1", "line 2")


def test_rows_with_nothing_to_train_are_dropped_and_named():
    rows = [_row(0, 100, 10, 0), _row(1, 50, 10), _row(2, 90, 5, 0)]
    found = _audited(check_labels, _recipe("training.max_length=64"), rows, "</s>")
    assert _only(found, "rows-dropped").rows == ("line 1", "line 3")
    assert _only(found, "rows-dropped").message.startswith("2 row(s) have no trained token")
    assert found.stats["rows_without_trained_tokens"] == 2


def test_rows_whole_at_max_length_and_untrained_rows_for_the_eos_check():
    """A row of exactly max_length tokens is whole (its EOS is checked); a row with no trained
    token is not an answer that lacks an EOS."""
    rows = [_row(0, 64, 5, eos=False), _row(1, 10, 0, eos=False), _row(2, 10, 5)]
    found = _audited(check_labels, _recipe("training.max_length=64"), rows, "</s>")
    assert found.stats["rows_without_trained_eos"] == 1
    assert found.findings[-1] == Finding(
        "warning",
        "no-trained-eos",
        "1 of 2 whole rows do not end with a trained end-of-text token (</s>): the model does "
        "not learn to stop",
        "end every answer with the tokenizer's EOS token, or use a chat template that ends the "
        "assistant turn with it",
        ("line 1",),
    )


def test_one_row_in_a_hundred_without_eos_is_not_yet_a_warning():
    rows = _rows((99, {"total": 20}), (1, {"total": 20, "eos": False}))
    found = _audited(check_labels, _recipe(), rows, "</s>")
    assert found.stats["rows_without_trained_eos"] == 1 and found.findings == []
    rows[0] = _row(0, 20, eos=False)
    assert _codes(_audited(check_labels, _recipe(), rows, "</s>")) == {"no-trained-eos"}


def _codes(found: Audit) -> set[str]:
    return {f.code for f in found.findings}


# --- duplicates ----------------------------------------------------------------------------------


def _keyed(keys: list[int]) -> list[Row]:
    return [Row(f"line {n + 1}", 10, 5, 5, True, key) for n, key in enumerate(keys)]


def test_one_repeat_in_a_hundred_rows_is_a_note_two_a_warning():
    records = [{"text": f"row {n}"} for n in range(100)]
    places = tuple(f"line {n + 1}" for n in range(100))
    splits = _splits(records, "text", places)
    once = _audited(check_duplicates, splits, _keyed([*range(99), 0]))
    assert once.findings == [
        Finding(
            "note",
            "duplicates",
            "1 training row(s) repeat an earlier one: they weigh double",
            "remove the repeats",
            ("line 100",),
        )
    ]
    twice = _audited(check_duplicates, splits, _keyed([*range(98), 0, 1]))
    assert _only(twice, "duplicates").level == "warning"
    assert twice.stats["duplicate_rows"] == 2


def test_rows_past_the_known_places_are_counted_but_not_named():
    records = [{"text": "a"}, {"text": "b"}, {"text": "c"}]
    found = _audited(check_duplicates, _splits(records, "text", ("x", "y")), _keyed([7, 7, 7]))
    assert _only(found, "duplicates").rows == ("y",)  # the third row has no place
    assert found.stats["duplicate_rows"] == 2


def test_evaluation_rows_found_in_training_are_named_where_known():
    from datasets import Dataset

    train = [{"text": "one"}, {"text": "two"}]
    rows = [Row("t1", 5, 5, 5, True, hash(normalized(r))) for r in train]
    held_out = Dataset.from_list([{"text": "ONE "}, {"text": "three"}, {"text": "two"}])
    splits = _splits(train, "text", ("t1", "t2"), eval=held_out, eval_places=("e1", "e2"))
    found = _audited(check_duplicates, splits, rows)
    leaked = _only(found, "eval-in-train")
    assert leaked.rows == ("e1",)  # the third evaluation row has no place
    assert leaked.message.startswith("2 of 3 evaluation rows are also training rows")
    assert found.stats["eval_rows_in_train"] == 2


# --- JSON answers --------------------------------------------------------------------------------

SCHEMA_OVERRIDE = 'json_schema={"type": "object", "required": ["code"]}'


def test_answers_that_are_all_not_json_are_an_error():
    records = [{"prompt": "p", "completion": "not json"}]
    found = _audited(check_json, _recipe(), _splits(records, "prompt-completion", ()), records)
    assert found.findings == [
        Finding(
            "error",
            "answers-not-json",
            "1 of 1 training answers are not JSON: the model learns to answer in other ways too",
            "correct or remove those rows",
            ("row 1",),
        )
    ]
    assert found.stats["answers_json_share"] == 0.0


def test_a_conversation_without_an_answer_has_no_json_answer():
    records = [
        {"messages": [{"role": "user", "content": "hi"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "{}"}]},
    ]
    found = _audited(check_json, _recipe(), _splits(records, "messages", ("a",)), records)
    assert _only(found, "answers-not-json").rows == ("a",)
    assert found.stats["answers_json_share"] == 0.5


def test_answers_some_not_json_and_the_rest_failing_the_schema_satisfy_nothing():
    records = [
        {"prompt": "p", "completion": "nope"},
        {"prompt": "p", "completion": '{"a": 1}'},
        {"prompt": "p", "completion": '{"b": 2}'},
        {"prompt": "p", "completion": '{"code": 3}'},
    ]
    places = ("l1", "l2", "l3")
    some = _audited(
        check_json, _recipe(SCHEMA_OVERRIDE), _splits(records, "prompt-completion", places), records
    )
    failing = _only(some, "answers-fail-schema")
    assert failing.level == "warning"
    why = "'code' is a required property"
    assert failing.message == f"2 training answers fail json_schema (first: {why})"
    assert failing.rows == (
        "l2: 'code' is a required property",
        "l3: 'code' is a required property",
    )
    assert some.stats["answers_schema_share"] == 0.25
    none = _audited(check_json, _recipe(SCHEMA_OVERRIDE),
                    _splits(records[:3], "prompt-completion", places), records[:3])  # fmt: skip
    failing = _only(none, "answers-fail-schema")
    assert failing.level == "error"
    assert failing.message.startswith("no training answer satisfies json_schema (first: ")
    assert _only(none, "answers-not-json").level == "warning"


def test_recipes_without_json_answers_are_not_checked():
    records = [{"text": "not json"}]
    found = _audited(check_json, _recipe(name="domain-adaptation"), _splits(records, "text", ()),
                     records)  # fmt: skip
    assert found.findings == [] and found.stats == {}


# --- the run's length ----------------------------------------------------------------------------


def _budget(rows: list[Row], *overrides: str, world_size: int = 1) -> Audit:
    off = ("callbacks.early_stopping.enabled=false", "callbacks.overfit.enabled=false")
    recipe = _recipe("training.eval_strategy=no", *off, *overrides)
    return _audited(check_run_length, recipe, rows, world_size)


def test_the_budget_of_a_run():
    """40 trained rows of 20 tokens (those cut count max_length's 64) at 4 a batch, 2 batches a
    step, on two processes: 3 steps an epoch; 7 steps are 2.333 passes."""
    rows = _rows((38, {"total": 20}), (2, {"total": 100, "kept": 4}), (5, {"total": 9, "kept": 0}))
    found = _budget(rows, "training.max_length=64", "training.max_steps=7", world_size=2)
    assert found.stats["budget"] == {
        "rows": 40,
        "tokens_per_epoch": 38 * 20 + 2 * 64,
        "optimizer_steps": 7,
        "epochs": 2.333,
    }


def test_the_budget_of_data_with_nothing_to_train():
    found = _budget([_row(0, 10, 0)], "training.max_steps=20")
    assert found.stats["budget"] == {
        "rows": 0, "tokens_per_epoch": 0, "optimizer_steps": 0, "epochs": 0.0
    }  # fmt: skip
    assert found.findings == []


def test_exactly_the_usual_three_passes_is_not_too_many():
    rows = _rows((40, {"total": 20}))  # 5 steps an epoch
    assert _budget(rows, "training.max_steps=15").findings == []
    (many,) = _budget(rows, "training.max_steps=16").findings
    assert many.code == "many-passes"
    assert many.fix == "set training.max_steps=15 or less, or add data"


@pytest.mark.parametrize(
    ("rows", "settings", "fix"),
    [
        pytest.param(12, ["batch_size=4", "gradient_accumulation_steps=2", "epochs=2"],
                     "set training.batch_size=1, or add data", id="a-smaller-batch"),
        pytest.param(5, ["batch_size=1", "gradient_accumulation_steps=2", "epochs=2"],
                     "set training.gradient_accumulation_steps=1, or add data",
                     id="less-accumulation-gives-exactly-ten-steps"),
        pytest.param(4, ["batch_size=1", "gradient_accumulation_steps=1", "epochs=1"],
                     "set training.max_steps=12, or add data", id="more-passes"),
        pytest.param(10, ["batch_size=4", "gradient_accumulation_steps=4", "epochs=1"],
                     "set training.batch_size=1 training.gradient_accumulation_steps=3 "
                     "training.max_steps=12, or add data", id="all-three"),
        pytest.param(200, ["batch_size=4", "gradient_accumulation_steps=4", "epochs=0.5"],
                     "set training.max_steps=30, or add data", id="at-most-thirty-steps"),
        pytest.param(3, ["batch_size=1", "gradient_accumulation_steps=1", "epochs=1"],
                     "add data: 3 row(s) give at most 9 steps in 3 passes, even one row at a "
                     "time", id="too-few-rows"),
    ],
)  # fmt: skip
def test_the_fix_for_too_few_steps_reaches_ten_within_three_passes(rows, settings, fix):
    """The first setting that gives at least 10 steps within 3 passes, the largest batch and
    accumulation first; max_steps only where the epochs do not already reach 10 steps."""
    found = _budget(_rows((rows, {"total": 20})), *[f"training.{s}" for s in settings])
    few = _only(found, "few-steps")
    assert few.fix == fix
    assert few.message.startswith(f"{rows} rows make ")


# --- what LoRA tolerates -------------------------------------------------------------------------


def test_the_effective_batch_counts_every_process():
    from peftkit.recipes.capacity import batch_doubt

    recipe = _recipe("training.batch_size=16", "training.gradient_accumulation_steps=8")
    rows = _rows((10, {"total": 20}))
    assert _audited(check_lora_fit, recipe, rows, None, 1).findings == []  # 128: not more
    found = _audited(check_lora_fit, recipe, rows, None, 2)
    assert found.findings == [Finding("warning", "lora-batch", *batch_doubt(recipe, 2))]
    assert found.findings[0].fix == "set training.gradient_accumulation_steps=1"  # 32 a step


def test_the_adapters_size_against_the_datas():
    from peftkit.recipes.capacity import adapter_params

    recipe = _recipe()
    params = adapter_params(recipe, SMOLLM2)
    small = _audited(check_lora_fit, recipe, _rows((3, {"total": 20, "trained": 7})), SMOLLM2, 1)
    assert small.stats["adapter_params"] == params
    assert small.stats["adapter_bits_per_data_bit"] == round(params * 2 / 21, 3)
    assert round(params * 2 / 21, 3) != round(params * 2 / 21, 4)  # three decimals, not four
    huge = _rows((2000, {"total": 9000, "trained": 8000}))  # 16M tokens
    (finding,) = _audited(check_lora_fit, recipe, huge, SMOLLM2, 1).findings
    assert finding.code == "rank-too-small" and finding.level == "warning"
    assert _audited(check_lora_fit, recipe, huge, None, 1).stats == {}


# --- the chat template ---------------------------------------------------------------------------

CONVERSATION = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]


def test_the_chat_template_finding_splits_the_error_into_message_and_fix(tiny_model_dir):
    from transformers import AutoTokenizer

    from peftkit.core.errors import RecipeError
    from peftkit.data.splits import check_chat

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = None
    records = [{"messages": CONVERSATION}]
    splits = _splits(records, "messages", ("line 1",))
    with pytest.raises(RecipeError) as raised:
        check_chat(splits, tokenizer)
    found = Audit()
    assert check_template(found, splits, tokenizer, True) is False
    (finding,) = found.findings
    assert (finding.level, finding.code) == ("error", "no-chat-template")
    assert f"{finding.message} Fix: {finding.fix}." == str(raised.value)
    assert "Fix" not in finding.message and finding.fix and not finding.fix.endswith(".")


def test_a_template_that_marks_no_answer_names_the_first_row(tiny_model_dir):
    """One row is enough to check (the first); a row with no place is named by nobody."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    )
    records = [{"messages": CONVERSATION}]
    for places, named in [(("line 7",), ("line 7",)), ((), ())]:
        found = Audit()
        assert check_template(found, _splits(records, "messages", places), tokenizer, True) is False
        assert _only(found, "template-cannot-mark-assistant").rows == named
    assert check_template(Audit(), _splits(records, "messages", ()), tokenizer, False) is True


def test_rows_beyond_the_known_places_are_numbered():
    measured = [(5, 2, 2, True, 1), (6, 3, 3, False, 2), (7, 3, 3, True, 3)]
    assert [r.place for r in rows_of(measured, ("train.jsonl, line 4",))] == [
        "train.jsonl, line 4",
        "row 2",
        "row 3",
    ]
