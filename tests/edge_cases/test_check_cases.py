"""`peftkit check` is the audit `peftkit train` runs, exactly: the same preparation (the model's
position limit, the recipe's field bounds), and fixes that train takes and that do not call for
each other's opposite. Every fix the audit suggests is applied here to train's own checks and
the audit is run again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from corpus import Case, run_case, write_files
from fix_reader import fix_of, overrides
from train_helpers import load_recipe, merged, run_main, with_data

from peftkit.data.audit import Audit
from peftkit.data.audit_checks import FEW_STEPS
from peftkit.testing import prompt_completion_rows

ROWS = prompt_completion_rows(40)
LONG = [{**row, "prompt": "word " * 300 + row["prompt"]} for row in ROWS[:20]]


def check(*extra: str, data: str = "t.jsonl") -> tuple[str, ...]:
    return ("check", "json-output", "--model", "{model}", "--data", data, *extra)


CASES = [
    Case("check-max-length-beyond-the-models-context", check("training.max_length=1024"),
         ("training.max_length: got 1024", "at most 512 tokens", "training.max_length=512"),
         {"t.jsonl": ROWS}, model=True),
    Case("check-an-unclosed-csv-quote", check(data="t.csv"),
         ("t.csv, line 4", "never closed"),
         {"t.csv": "prompt,completion\nq0,{}\nq1,{}\nq2,\"{}\nq3,{}\n"}, model=True),
    Case("check-a-metric-the-run-never-produces",
         check("callbacks.early_stopping.metric=eval_accuracy"),
         ("eval_accuracy", "callbacks.early_stopping.metric=eval_loss"), {"t.jsonl": ROWS},
         model=True),
]  # fmt: skip


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_check_refuses_what_train_refuses(case: Case, tmp_path, monkeypatch, tiny_model_dir):
    run_case(case, tmp_path, monkeypatch, tiny_model_dir)


def _audit(recipe_overrides: list[str], data: Path, model: Path) -> tuple[Audit, Any]:
    """The audit `peftkit check` prints, through train's own preparation."""
    from peftkit.run.prepare import audit_data

    recipe = load_recipe("json-output", merged(f"model.name={json.dumps(str(model))}",
                                               *recipe_overrides))  # fmt: skip
    return audit_data(with_data(recipe, data)), recipe


def _train_takes(model: Path, settings: list[str]) -> None:
    """What `peftkit train` checks before it loads weights: the recipe's fields and rules,
    and the model's context and targets."""
    from peftkit.run.loading import check_model

    recipe = load_recipe("json-output", merged(f"model.name={json.dumps(str(model))}", *settings))
    check_model(recipe, recipe.training.max_length)


OPPOSITE = {"few-steps": "many-passes", "many-passes": "few-steps"}
SITUATIONS = {
    "answers-cut-by-max-length": (ROWS, ["training.max_length=48"]),
    "rows-longer-than-the-model": (LONG + ROWS[20:], ["training.max_length=256"]),
    "few-rows": (ROWS[:6], ["training.eval_strategy=no", "training.eval_fraction=0",
                            "callbacks.early_stopping.enabled=false",
                            "callbacks.overfit.enabled=false"]),
    "few-rows-in-large-batches": (ROWS[:12], ["training.batch_size=8",
                                              "training.gradient_accumulation_steps=4"]),
    "many-passes": (ROWS[:12], ["training.max_steps=200"]),
}  # fmt: skip


@pytest.mark.parametrize("situation", sorted(SITUATIONS))
def test_every_fix_is_one_train_takes_and_none_calls_for_its_opposite(
    situation: str, tmp_path: Path, tiny_model_dir: Path
) -> None:
    rows, settings = SITUATIONS[situation]
    write_files(tmp_path, {"t.jsonl": rows})
    found, _ = _audit(settings, tmp_path / "t.jsonl", tiny_model_dir)
    fixed = [f for f in found.findings if overrides(f.fix)]
    assert fixed, [(f.code, f.fix) for f in found.findings]
    for finding in fixed:
        for alternative in overrides(finding.fix):
            applied = [*settings, *alternative]
            _train_takes(tiny_model_dir, applied)
            again, _ = _audit(applied, tmp_path / "t.jsonl", tiny_model_dir)
            codes = {f.code for f in again.findings}
            assert OPPOSITE.get(finding.code) not in codes, (finding.code, alternative)
            if finding.code == "few-steps":  # the fix gives the steps it promises
                assert again.stats["budget"]["optimizer_steps"] >= FEW_STEPS, alternative
            left = [f for f in again.findings if f.code == finding.code]
            # gone, or only the data can still change (no setting left to suggest)
            assert all(not overrides(f.fix) for f in left), (finding.code, alternative, left)


def test_a_length_beyond_the_model_is_never_suggested(tmp_path: Path, tiny_model_dir: Path):
    """Rows longer than the tiny model's 512 positions at max_length=512: no longer length is
    possible, so the fix is to shorten them, not a length train refuses (640 used to be)."""
    write_files(tmp_path, {"t.jsonl": LONG + ROWS[20:]})
    found, _ = _audit(["training.max_length=512"], tmp_path / "t.jsonl", tiny_model_dir)
    (cut,) = [f for f in found.findings if f.code == "completions-truncated"]
    assert "training.max_length=" not in cut.fix
    assert "shorten or split the 18 row(s) longer than 512 tokens" in cut.fix
    assert found.stats["suggested_max_length"] == 512


def test_a_huge_row_never_suggests_more_than_the_field_takes(tiny_model_dir: Path) -> None:
    """A model with a very long context and one row of two million tokens: the suggestion
    stops at the field's own bound (it was 2,000,064)."""
    from peftkit.data.audit_checks import Row, check_lengths

    recipe = load_recipe("json-output", ["training.max_length=1024"])
    rows = [Row(f"line {i}", 2_000_000 if i == 0 else 50, 10, 10, True, i) for i in range(99)]
    found = Audit()
    check_lengths(found, recipe, rows, {"max_position_embeddings": 2**23})
    assert found.stats["suggested_max_length"] == 1_048_576
    recipe = load_recipe("json-output", [f"training.max_length={1_048_576}"])  # train takes it
    assert recipe.training.max_length == 1_048_576


def test_no_rows_make_no_steps(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Every answer cut away: the audit says nothing is left to train, not that 0 rows make 2
    optimizer steps, and suggests no step count."""
    write_files(tmp_path, {"t.jsonl": [{**r, "prompt": "word " * 100} for r in ROWS[:12]]})
    found, _ = _audit(["training.max_length=32"], tmp_path / "t.jsonl", tiny_model_dir)
    codes = {f.code for f in found.findings}
    assert "no-trained-token" in codes
    assert not codes & {"few-steps", "many-passes", "cadence-longer-than-run"}
    assert found.stats["budget"]["optimizer_steps"] == 0
    assert "0 rows" not in " ".join(f.message for f in found.findings)


def test_check_lowers_the_default_length_as_train_does(
    tmp_path: Path, monkeypatch, tiny_model_dir: Path
) -> None:
    """The recipe's default max_length (1024) on the 512-position model: train lowers it with a
    notice, and check audits the run at 512 as train will run it."""
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    write_files(tmp_path, {"t.jsonl": ROWS})
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(
        monkeypatch, "check", "json-output", "--model", str(model), "--data", "t.jsonl", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["stats"]["tokens"]["max_length"] == 512
    assert fix_of("Fix: x") == "x"
