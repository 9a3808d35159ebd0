"""What LoRA tolerates (peftkit.recipes.capacity): a warning for an effective batch far above
it, at validation and in the data audit, and for a rank far from the data's size, in the audit
of `peftkit check` and `train`; each fix, applied as written, clears its finding."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from train_helpers import load_recipe, merged, with_data

from peftkit import recipes
from peftkit.core.errors import PeftkitWarning
from peftkit.recipes.capacity import BATCH_WARN
from peftkit.run.prepare import audit_data
from peftkit.testing import prompt_completion_rows, text_rows, write_data


def _checked(tmp_path: Path, model: Path, rows: list[dict], recipe: str, *overrides: str):
    data = write_data(tmp_path / "train.jsonl", rows)
    loaded = load_recipe(recipe, merged(f"model.name={json.dumps(str(model))}", *overrides))
    return audit_data(with_data(loaded, data))


def _finding(found, code: str):
    return next((f for f in found.findings if f.code == code), None)


def test_a_large_effective_batch_is_doubted_at_validation():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PeftkitWarning)
        recipes.load(
            "json-output", ["training.batch_size=8", "training.gradient_accumulation_steps=17"]
        )
    doubts = [str(w.message) for w in caught if issubclass(w.category, PeftkitWarning)]
    (doubt,) = [d for d in doubts if "effective batch of 136" in d]
    assert doubt.startswith("training: an effective batch of 136 examples per optimizer step")
    assert "LoRA Without Regret" in doubt
    assert doubt.endswith(". Fix: set training.gradient_accumulation_steps=4.")  # 8 x 4 = 32
    with warnings.catch_warnings():
        warnings.simplefilter("error", PeftkitWarning)
        recipes.load(
            "json-output", ["training.batch_size=16", "training.gradient_accumulation_steps=8"]
        )
        recipes.load("json-output", ["method=full", "training.batch_size=16",
                                     "training.gradient_accumulation_steps=16",
                                     "callbacks.early_stopping.allow_full_copy=true"])  # fmt: skip


def test_the_audit_counts_every_process_in_the_batch_and_its_fix_clears_it(
    tmp_path, tiny_model_dir
):
    rows = prompt_completion_rows(48)
    overrides = ("training.batch_size=8", "training.gradient_accumulation_steps=32")
    found = _checked(tmp_path, tiny_model_dir, rows, "json-output", *overrides)
    batch = _finding(found, "lora-batch")
    assert batch is not None and f"more than {BATCH_WARN}" in batch.message
    assert batch.fix == "set training.gradient_accumulation_steps=4"
    fixed = _checked(
        tmp_path, tiny_model_dir, rows, "json-output", *overrides, batch.fix.removeprefix("set ")
    )
    assert _finding(fixed, "lora-batch") is None


def test_a_rank_too_small_for_the_data_is_a_warning_with_a_rank_that_holds_it(
    tmp_path, tiny_model_dir
):
    """The tiny model's adapter at r=1 has 2,048 parameters (~4,096 bits); 120 documents
    of ~60 tokens are more than that."""
    rows = text_rows(120)
    found = _checked(
        tmp_path, tiny_model_dir, rows, "domain-adaptation", "lora.r=1", "lora.alpha=2"
    )
    assert found.stats["adapter_params"] == 2048
    small = _finding(found, "rank-too-small")
    assert small is not None and small.level == "warning"
    assert "2,048 parameters" in small.message
    assert small.fix.startswith("set lora.r=") and "lora.alpha=" in small.fix  # alpha/r kept
    applied = small.fix.removeprefix("set ").split()
    fixed = _checked(tmp_path, tiny_model_dir, rows, "domain-adaptation", *applied)
    assert _finding(fixed, "rank-too-small") is None
    assert fixed.stats["adapter_bits_per_data_bit"] >= 1


def test_a_rank_far_above_the_data_is_a_note(tmp_path, tiny_model_dir):
    found = _checked(tmp_path, tiny_model_dir, text_rows(6), "domain-adaptation", "lora.r=256")
    roomy = _finding(found, "rank-roomy")
    assert roomy is not None and roomy.level == "note"
    applied = roomy.fix.removeprefix("set ").split(" to save")[0].split()
    fixed = _checked(tmp_path, tiny_model_dir, text_rows(6), "domain-adaptation", *applied)
    assert _finding(fixed, "rank-roomy") is None


@pytest.mark.parametrize("method", ["full"])
def test_full_fine_tuning_has_no_adapter_to_size(method, tmp_path, tiny_model_dir):
    found = _checked(
        tmp_path, tiny_model_dir, text_rows(120), "domain-adaptation", f"method={method}",
        "callbacks.early_stopping.allow_full_copy=true",
    )  # fmt: skip
    assert "adapter_params" not in found.stats
    assert _finding(found, "rank-too-small") is None


def test_the_rank_rule_is_two_bits_per_parameter_against_one_per_token():
    from peftkit.recipes.capacity import Capacity, capacity_finding

    recipe = recipes.load("json-output")  # r=16, alpha=32
    assert capacity_finding(recipe, Capacity(1000, 2000)) is None  # 2,000 bits for 2,000 bits
    level, code, _, fix = capacity_finding(recipe, Capacity(1000, 2001))
    assert (level, code, fix) == ("warning", "rank-too-small", "set lora.r=32 lora.alpha=64")
    assert capacity_finding(recipe, Capacity(1000, 5)) is None  # roomy, but r=16 is modest
