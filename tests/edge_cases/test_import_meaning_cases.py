"""``peftkit import`` never changes a setting's meaning without a word: a value the recipe
cannot take stops the import (it used to be dropped for the recipe's default), a cadence per
epoch or a warmup ratio of 1 is refused with the override that sets it, and what the recipe adds
on its own (early stopping, a hold-out) is listed in the summary.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus import Case, run_case, write_files
from fix_reader import fix_of, overrides
from train_helpers import run_main

from peftkit import recipes

TRL = "model_name_or_path: Qwen/Qwen2.5-0.5B\nlearning_rate: 2.0e-4\nlora_r: 16\n"
AXOLOTL = "base_model: Qwen/Qwen2.5-0.5B\nlearning_rate: 2.0e-4\nmicro_batch_size: 2\n"


def config(text: str) -> dict[str, str]:
    return {"c.yaml": text}


IMPORTS = [
    Case("import-a-learning-rate-that-is-a-word", ("import", "c.yaml"),
         ("learning_rate", "'fast'", "training.learning_rate", "valid number"),
         config(TRL.replace("2.0e-4", "fast"))),
    Case("import-a-negative-lora-alpha", ("import", "c.yaml"),
         ("lora_alpha", "-16", "lora.alpha", "greater than 0"),
         config(TRL + "lora_alpha: -16\n")),
    Case("import-an-empty-model-name", ("import", "c.yaml"),
         ("base_model", "''", "model.name", "at least 1 character"),
         config(AXOLOTL.replace("Qwen/Qwen2.5-0.5B", '""'))),
    Case("import-a-warmup-ratio-of-one", ("import", "c.yaml"),
         ("warmup_ratio", "1.0", "whole run", "training.warmup_steps=0.1"),
         config(TRL + "warmup_ratio: 1.0\n")),
    Case("import-evaluations-per-epoch", ("import", "c.yaml"),
         ("evals_per_epoch", "4 evaluations per epoch", "training.eval_steps=50"),
         config(AXOLOTL + "evals_per_epoch: 4\n")),
    Case("import-checkpoints-per-epoch", ("import", "c.yaml"),
         ("saves_per_epoch", "1 checkpoints per epoch", "training.save_steps=200"),
         config(AXOLOTL + "saves_per_epoch: 1\n")),
    Case("import-a-save-strategy-per-epoch", ("import", "c.yaml"),
         ("save_strategy", "'epoch'", "training.save", "training.save=none"),
         config(TRL + "save_strategy: epoch\n")),
    Case("recipe-warmup-ratio-of-one", ("validate", "json-output", "training.warmup_ratio=1.0"),
         ("training.warmup_ratio", "1.0", "number of steps", "ratio below 1"), {}),
]  # fmt: skip


@pytest.mark.parametrize("case", [c.param() for c in IMPORTS])
def test_an_import_that_would_change_a_meaning(case: Case, tmp_path, monkeypatch, tiny_model_dir):
    run_case(case, tmp_path, monkeypatch, tiny_model_dir)


FIXABLE = [c for c in IMPORTS if c.args[0] == "import"]


@pytest.mark.parametrize("case", [c.param() for c in FIXABLE])
def test_the_suggested_override_makes_the_import_work(
    case: Case, tmp_path: Path, monkeypatch, tiny_model_dir: Path
) -> None:
    """The fix, passed as written, imports the file; the key it replaces is listed as replaced
    by the override, and the recipe holds the override's value."""
    message = run_case(case, tmp_path, monkeypatch, tiny_model_dir)
    (extra,) = overrides(fix_of(message))[-1:]
    code, out, err = run_main(monkeypatch, *case.args, *extra, "--output", "fixed.yaml")
    assert code == 0, f"{' '.join(extra)} did not fix it:\n{err[-3000:]}"
    path, _, value = extra[0].partition("=")
    assert "your override of" in out or path in out, out
    imported = recipes.load(tmp_path / "fixed.yaml").model_dump(mode="json")
    section, field = path.split(".")
    assert str(imported[section][field]) == value


def _import(tmp_path: Path, monkeypatch, text: str, *extra: str) -> tuple[str, str]:
    write_files(tmp_path, config(text))
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(monkeypatch, "import", "c.yaml", *extra)
    assert code == 0, err
    return out, (tmp_path / "c.peftkit.yaml").read_text()


def test_what_the_recipe_adds_is_listed(tmp_path: Path, monkeypatch) -> None:
    """A TRL config has no early stopping and no hold-out: the recipe adds both, and says so in
    the summary and in the file's header, with the setting that leaves each out."""
    out, written = _import(tmp_path, monkeypatch, TRL)
    text = " ".join(out.split())
    assert "added by the custom recipe" in text
    for setting in ("callbacks.early_stopping.enabled=true", "training.eval_fraction=0.1"):
        assert setting in text
        assert setting in written
    assert "10% of the training rows" in text


def test_what_the_file_sets_is_not_listed_as_added(tmp_path: Path, monkeypatch) -> None:
    """No evaluation in the file: nothing that evaluates is added (nor listed)."""
    out, _ = _import(tmp_path, monkeypatch, TRL + 'eval_strategy: "no"\n')
    assert "early_stopping.enabled=true" not in out and "eval_fraction=0.1:" not in out


def test_no_checkpoints_keep_no_checkpoint_limit(tmp_path: Path, monkeypatch) -> None:
    """save_strategy no with save_total_limit: the summary said save=none and the file had
    save: steps (the limit turned saving on). Now both say none, and the limit is listed as
    not mapped, with the reason."""
    out, written = _import(
        tmp_path, monkeypatch, TRL + 'save_strategy: "no"\nsave_total_limit: 2\n'
    )
    assert 'save_strategy: "no" -> training.save=none' in out
    assert "save_total_limit: 2: save_strategy no saves no checkpoints" in " ".join(out.split())
    recipe = recipes.load(tmp_path / "c.peftkit.yaml")
    assert recipe.training.save == "none" and recipe.training.save_total_limit is None
    assert "save_total_limit" in written  # in the header's list of keys not mapped


def test_several_datasets_are_named_as_unsupported(tmp_path: Path, monkeypatch) -> None:
    text = AXOLOTL + "datasets:\n  - path: a.jsonl\n    type: chat_template\n  - path: b.jsonl\n"
    out, _ = _import(tmp_path, monkeypatch, text)
    flat = " ".join(out.split())
    assert "2 datasets (a.jsonl, b.jsonl): peftkit trains on one dataset" in flat
    assert "--data DATA" in flat
    assert recipes.load(tmp_path / "c.peftkit.yaml").data.train_path is None
