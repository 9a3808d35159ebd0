"""``peftkit.data.prepare`` on real files: clean files of every type and format give their rows,
problems name the line they are on, JSON answers become JSON text for json-output only, 100,000
rows check in seconds, and no random value makes it fail with anything but a user error (or let
through a row that TRL cannot tokenize).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from train_helpers import load_recipe

from peftkit.core.errors import ProblemsError, RecipeError
from peftkit.data import Splits, prepare
from peftkit.testing import messages_rows, prompt_completion_rows, text_rows, write_data

NO_EVAL = [
    "data.format=auto",
    "training.eval_fraction=0",
    "training.eval_strategy=no",
    "callbacks.early_stopping.enabled=false",
    "callbacks.overfit.enabled=false",
]
"""Every row in the training set, so that the rows can be compared with the file's."""


@pytest.fixture(scope="module")
def custom_recipe_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("custom") / "custom.yaml"
    path.write_text("recipe: custom\n")
    return path


def json_output(*extra: str) -> Any:
    return load_recipe("json-output", [*NO_EVAL, *extra])


def jsonl(path: Path, *lines: Any) -> Path:
    """Each of ``lines`` as one line: a str as it is, anything else as JSON."""
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


# --- clean files ---------------------------------------------------------------------------------

FORMATS = {
    "text": text_rows(6),
    "prompt-completion": prompt_completion_rows(6),
    "messages": messages_rows(6),
}
FILE_TYPES = ["data.jsonl", "data.json", "data.csv", "data.parquet", "saved-dataset"]
CLEAN = [
    (fmt, name)
    for fmt in FORMATS
    for name in FILE_TYPES
    if not (fmt == "messages" and name.endswith(".csv"))  # CSV cannot hold chat turns
]


@pytest.mark.parametrize(("fmt", "file_name"), CLEAN)
def test_clean_files_give_their_rows(fmt, file_name, custom_recipe_file, tmp_path):
    rows = [{**row, "id": i} for i, row in enumerate(FORMATS[fmt])]  # other columns are dropped
    path = write_data(tmp_path / file_name, rows)
    splits = prepare(load_recipe(custom_recipe_file, NO_EVAL), path, None)
    assert splits.format == fmt
    assert splits.eval is None
    assert splits.notes == ()
    assert splits.train.to_list() == FORMATS[fmt]


def save_dataset_dict(path: Path, **splits: list[dict[str, Any]]) -> Path:
    from datasets import Dataset, DatasetDict

    DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items()}).save_to_disk(
        str(path)
    )
    return path


ROWS = prompt_completion_rows(12)


def test_a_saved_dataset_dict_trains_on_train_and_evaluates_on_test(custom_recipe_file, tmp_path):
    folder = save_dataset_dict(tmp_path / "dd", test=ROWS[:2], train=ROWS[2:])
    splits = prepare(load_recipe(custom_recipe_file, NO_EVAL), folder, None)
    assert splits.train.to_list() == ROWS[2:]
    assert splits.eval.to_list() == ROWS[:2]
    assert splits.eval_source == f"the 'test' split of {folder}"


def test_a_saved_dataset_dict_evaluates_on_validation_rather_than_test(tmp_path):
    folder = save_dataset_dict(tmp_path / "dd", train=ROWS[:6], test=ROWS[6:8], validation=ROWS[8:])
    splits = prepare(load_recipe("json-output", []), folder, None)  # eval_fraction 0.1 unused
    assert splits.train.to_list() == ROWS[:6]
    assert splits.eval.to_list() == ROWS[8:]
    assert splits.eval_source == f"the 'validation' split of {folder}"


def test_a_saved_dataset_dict_with_a_train_split_only_holds_out_rows(tmp_path):
    folder = save_dataset_dict(tmp_path / "dd", train=ROWS[:10])
    splits = prepare(load_recipe("json-output", []), folder, None)
    assert (len(splits.train), len(splits.eval)) == (9, 1)
    assert splits.eval_source == "1 of 10 rows held out (eval_fraction 0.1, seed 42)"


def test_eval_data_given_replaces_a_dataset_dicts_own_split(tmp_path):
    folder = save_dataset_dict(tmp_path / "dd", train=ROWS[:6], validation=ROWS[6:8])
    held_out = write_data(tmp_path / "held-out.jsonl", ROWS[8:])
    splits = prepare(load_recipe("json-output", []), folder, held_out)
    assert splits.eval.to_list() == ROWS[8:]
    assert splits.eval_source == str(held_out)


@pytest.mark.parametrize(
    ("names", "used"),
    [(("train", "validation", "test"), "validation"), (("test", "extra"), "test")],
)
def test_eval_data_that_is_a_dataset_dict_gives_its_validation_or_test_split(names, used, tmp_path):
    data = write_data(tmp_path / "train.jsonl", ROWS[:6])
    parts = {name: ROWS[6 + 2 * i : 8 + 2 * i] for i, name in enumerate(names)}
    folder = save_dataset_dict(tmp_path / "dd", **parts)
    splits = prepare(load_recipe("json-output", []), data, folder)
    assert splits.eval.to_list() == parts[used]
    assert splits.eval_source == f"the '{used}' split of {folder}"


def test_a_split_folder_of_a_dataset_dict_is_a_dataset(tmp_path):
    """What the fix of a DatasetDict without the split wanted passes: one split's folder."""
    folder = save_dataset_dict(tmp_path / "dd", extra=ROWS[:6])
    splits = prepare(json_output(), folder / "extra", None)
    assert splits.train.to_list() == ROWS[:6]


@pytest.mark.parametrize("evaluation", [False, True])
def test_a_folder_that_is_not_a_saved_dataset_is_named(evaluation, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "rows.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    data = write_data(tmp_path / "train.jsonl", ROWS)
    paths = (data, folder) if evaluation else (folder, None)
    with pytest.raises(RecipeError) as raised:
        prepare(load_recipe("json-output", []), *paths)
    assert str(raised.value) == (
        f"data '{folder}': a folder, but not one saved with Dataset.save_to_disk. Fix: pass a "
        ".jsonl, .json, .csv or .parquet file, or such a folder."
    )


def test_csv_cells_stay_strings(custom_recipe_file, tmp_path):
    path = tmp_path / "numbers.csv"
    path.write_text('prompt,completion\n007,42\ntrue,1.50\n"a, b",""""\n', encoding="utf-8")
    splits = prepare(load_recipe(custom_recipe_file, NO_EVAL), path, None)
    assert splits.train.to_list() == [
        {"prompt": "007", "completion": "42"},
        {"prompt": "true", "completion": "1.50"},
        {"prompt": "a, b", "completion": '"'},
    ]


def test_a_utf8_bom_and_crlf_line_ends_are_fine(tmp_path):
    rows = prompt_completion_rows(3)
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\r\n" for r in rows).encode())
    assert prepare(json_output(), path, None).train.to_list() == rows


def test_a_line_separator_inside_a_string_is_not_a_line_end(tmp_path):
    rows = [{"prompt": "one\u2028two", "completion": "x\u0085y"}, *prompt_completion_rows(2)]
    path = tmp_path / "separators.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    assert prepare(json_output(), path, None).train.to_list() == rows


def test_eval_data_is_checked_and_used(tmp_path):
    data = write_data(tmp_path / "train.jsonl", prompt_completion_rows(6))
    held_out = write_data(tmp_path / "held-out.csv", prompt_completion_rows(9)[6:])
    recipe = load_recipe("json-output", [])
    splits = prepare(recipe, data, held_out)
    assert splits.eval_source == str(held_out)
    assert splits.eval.to_list() == prompt_completion_rows(9)[6:]


@pytest.mark.parametrize(
    ("count", "fraction", "held_out"),
    [(3, 0.5, 1), (7, 0.5, 3), (9, 0.5, 4), (100, 0.29, 29), (2, 0.1, 1), (40, 0.1, 4)],
)
def test_the_held_out_count_is_rows_times_eval_fraction_rounded_down(
    count, fraction, held_out, tmp_path
):
    """At least one row, and never more than the fraction says (100 * 0.29 is just under 29 in
    floating point)."""
    rows = [{"prompt": f"q{i}", "completion": "{}"} for i in range(count)]
    data = write_data(tmp_path / "d.jsonl", rows)
    splits = prepare(load_recipe("json-output", [f"training.eval_fraction={fraction}"]), data, None)
    assert (len(splits.train), len(splits.eval)) == (count - held_out, held_out)
    assert splits.eval_source == (
        f"{held_out} of {count} rows held out (eval_fraction {fraction}, seed 42)"
    )


# --- where the problems are ----------------------------------------------------------------------


def test_problems_name_the_physical_line_in_file_order(tmp_path):
    good = prompt_completion_rows(3)
    path = jsonl(
        tmp_path / "train.jsonl",
        *good,
        "",
        {"prompt": "q", "completion": None},
        '{"prompt": "q", "completion": "a",}',
        {"prompt": "", "completion": "a"},
    )
    with pytest.raises(ProblemsError) as raised:
        prepare(json_output(), path, None)
    found = raised.value.problems
    assert [p.path for p in found] == [
        f"{path}, line 5, column 'completion'",
        f"{path}, line 6",
        f"{path}, line 7, column 'prompt'",
    ]
    assert found[0].value is None
    assert "not valid JSON" in found[1].rule


def test_csv_lines_count_line_breaks_inside_cells(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('prompt,completion\n"two\nlines",a\n\nq,\n', encoding="utf-8")
    with pytest.raises(ProblemsError) as raised:
        prepare(json_output(), path, None)
    assert [p.path for p in raised.value.problems] == [f"{path}, line 5, column 'completion'"]


def test_parquet_rows_are_counted_from_one(tmp_path):
    rows = prompt_completion_rows(3)
    rows[1] = {"prompt": "q", "completion": None}
    path = write_data(tmp_path / "train.parquet", rows)
    with pytest.raises(ProblemsError) as raised:
        prepare(json_output(), path, None)
    assert [p.path for p in raised.value.problems] == [f"{path}, row 2, column 'completion'"]


# --- JSON answers --------------------------------------------------------------------------------

ANSWER = {"name": "Zoë", "tags": ["a", "b"]}


def test_json_output_writes_json_answers_as_json_text_and_says_so(tmp_path):
    path = jsonl(
        tmp_path / "train.jsonl",
        {"prompt": "Who?", "completion": ANSWER},
        {"prompt": "List", "completion": [1, 2]},
        *prompt_completion_rows(2),
    )
    splits = prepare(json_output(), path, None)
    completions = splits.train["completion"]
    assert completions[:2] == ['{"name": "Zoë", "tags": ["a", "b"]}', "[1, 2]"]
    assert splits.notes == (
        f"data '{path}': 2 answer(s) given as JSON objects or arrays were written as JSON text, "
        "as json-output answers are JSON.",
    )


def test_json_output_writes_json_assistant_turns_as_json_text(tmp_path):
    chat = [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": ANSWER}]
    path = jsonl(tmp_path / "chat.jsonl", {"messages": chat}, *messages_rows(2))
    splits = prepare(json_output(), path, None)
    assert splits.train[0]["messages"][1]["content"] == json.dumps(ANSWER, ensure_ascii=False)
    assert "1 answer(s)" in splits.notes[0]


def test_a_json_answer_with_nan_is_a_problem(tmp_path):
    path = jsonl(tmp_path / "train.jsonl", '{"prompt": "q", "completion": {"x": NaN}}')
    with pytest.raises(ProblemsError, match="NaN or Infinity"):
        prepare(json_output(), path, None)


def test_other_recipes_refuse_json_answers(custom_recipe_file, tmp_path):
    row = {"prompt": "Who?", "completion": ANSWER}
    path = jsonl(tmp_path / "train.jsonl", *prompt_completion_rows(1), row)
    with pytest.raises(ProblemsError) as raised:
        prepare(load_recipe(custom_recipe_file, NO_EVAL), path, None)
    (problem,) = raised.value.problems
    assert problem.path == f"{path}, line 2, column 'completion'"
    assert problem.value == ANSWER
    assert "json-output" in problem.fix


# --- speed ---------------------------------------------------------------------------------------


def test_100k_rows_check_in_seconds(tmp_path):
    path = tmp_path / "big.jsonl"
    with path.open("w") as file:
        for i in range(100_000):
            answer = json.dumps({"id": i, "name": f"item {i}"})
            file.write(json.dumps({"prompt": f"Describe item {i}.", "completion": answer}) + "\n")
    started = time.perf_counter()
    splits = prepare(load_recipe("json-output", []), path, None)
    seconds = time.perf_counter() - started
    print(f"100,000 rows read, checked and split in {seconds:.2f} s")
    assert len(splits.train) + len(splits.eval) == 100_000
    assert seconds < 10


# --- random values -------------------------------------------------------------------------------

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
ROLES = st.sampled_from(["system", "user", "assistant", "tool", "bot"])
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        | st.fixed_dictionaries({"role": ROLES | inner, "content": inner})
    ),
    max_leaves=8,
)
"""Any JSON value, with chat-turn-like objects more often than chance would give them."""
CONTENT = st.text(max_size=6) | VALUES
MESSAGES = (
    st.lists(st.fixed_dictionaries({"role": ROLES, "content": CONTENT}), max_size=4)
    | st.tuples(CONTENT, CONTENT).map(
        lambda pair: [
            {"role": "user", "content": pair[0]},
            {"role": "assistant", "content": pair[1]},
        ]
    )
    | VALUES
)
"""Random chats: turns with random roles and contents, a question and an answer, or any value."""


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _as_trl_would(row: dict[str, Any], tokenizer: Any) -> None:
    """Turn one row into token ids the way TRL's SFTTrainer does for its format."""
    from trl.data_utils import is_conversational

    if is_conversational(row):
        turns = row["messages"] if "messages" in row else row["prompt"] + row["completion"]
        assert tokenizer.apply_chat_template(turns, tokenize=True)
    else:
        text = row["text"] if "text" in row else row["prompt"] + row["completion"]
        assert tokenizer(text + tokenizer.eos_token)["input_ids"]


def _prepare_or_refuse(rows: list[dict[str, Any]], path: Path, tokenizer: Any) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    try:
        splits = prepare(load_recipe("json-output", ["data.format=auto"]), path, None)
    except RecipeError:
        return
    assert isinstance(splits, Splits)
    for dataset in (splits.train, splits.eval):
        for row in dataset:
            _as_trl_would(row, tokenizer)


FIXTURES_OK = [HealthCheck.function_scoped_fixture]


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES_OK)
@given(
    prompt=st.just("Name a colour.") | st.just(" ") | VALUES,
    completion=st.just('{"colour": "red"}') | VALUES,
    drop=st.sampled_from([None, "prompt", "completion"]),
)
def test_random_prompt_completion_values(prompt, completion, drop, tmp_path, tokenizer):
    row = {"prompt": prompt, "completion": completion}
    row.pop(drop, None)
    _prepare_or_refuse([*prompt_completion_rows(2), row], tmp_path / "pc.jsonl", tokenizer)


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES_OK)
@given(messages=MESSAGES)
def test_random_messages_values(messages, tmp_path, tokenizer):
    rows = [*messages_rows(2), {"messages": messages}]
    _prepare_or_refuse(rows, tmp_path / "chat.jsonl", tokenizer)
