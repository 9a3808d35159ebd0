"""``peftkit merge``: the merged model computes what base + adapter computes.

A LoRA adapter merged into a float32 base must match it to float32 rounding. An adapter trained
on a 4-bit base (qlora-budget; bitsandbytes quantizes on the CPU too) is merged into the
dequantized NF4 weights, so it must match the 4-bit base + adapter up to bfloat16 rounding,
and clearly better than a merge into the original 16-bit weights would.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from train_helpers import (
    assert_user_error,
    base_model,
    earlier_output,
    load_recipe,
    logits,
    peftkit_cli,
    run_main,
    short,
    with_adapter,
    with_data,
)

from peftkit.run.merging import merge
from peftkit.run.train import train
from peftkit.testing import prompt_completion_rows, write_data

# A high learning rate, so the adapter changes the logits enough for a comparison to mean
# something; float32 training, so the numbers do not depend on the CPU's bf16 support.
STRONG = ["training.learning_rate=1e-2", "training.precision=fp32"]


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A short json-output run, merged with the real command."""
    folder = tmp_path_factory.mktemp("merge")
    data = write_data(folder / "train.jsonl", prompt_completion_rows(40))
    recipe = load_recipe("json-output", short(tiny_model_dir, *STRONG))
    train(with_data(recipe, data), folder / "out")
    adapter, merged = folder / "out" / "adapter", folder / "merged"
    result = peftkit_cli("merge", str(adapter), "--output", str(merged), cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return SimpleNamespace(adapter=adapter, merged=merged, folder=folder, stdout=result.stdout)


def test_merged_model_gives_base_plus_adapter_logits(lora_run, tiny_model_dir: Path):
    import torch

    assert str(lora_run.merged) in lora_run.stdout
    merged = base_model(lora_run.merged)
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    expected = logits(with_adapter(tiny_model_dir, lora_run.adapter))
    found = logits(merged)
    assert torch.allclose(found, expected, atol=1e-4), (found - expected).abs().max()
    base = logits(base_model(tiny_model_dir))
    assert (base - expected).abs().max() > 1e-2  # the adapter matters


def test_merged_folder_holds_the_tokenizer(lora_run):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(lora_run.merged)
    assert tokenizer.chat_template is not None
    assert tokenizer("hello")["input_ids"]


def test_overwrite_replaces_an_earlier_output(lora_run, monkeypatch, tiny_model_dir):
    import torch

    target = earlier_output(lora_run.folder / "replaced", {"notes.txt": "an earlier merge"})
    args = ["merge", str(lora_run.adapter), "--output", str(target), "--overwrite"]
    code, _, err = run_main(monkeypatch, *args)
    assert code == 0, err
    assert not (target / "notes.txt").exists()
    assert torch.equal(logits(base_model(target)), logits(base_model(lora_run.merged)))


def test_a_missing_adapter_folder_is_a_user_error(tmp_path: Path, monkeypatch):
    missing = tmp_path / "out" / "adapter"
    code, _, err = run_main(monkeypatch, "merge", str(missing), "--output", str(tmp_path / "m"))
    assert_user_error(code, err, str(missing), "adapter_config.json")
    assert not (tmp_path / "m").exists()


def test_a_missing_adapter_folder_in_a_real_process(tmp_path: Path):
    result = peftkit_cli("merge", "nowhere/adapter", "--output", "merged", cwd=tmp_path)
    assert_user_error(result.returncode, result.stderr, "nowhere/adapter")
    assert not (tmp_path / "merged").exists()


def test_qlora_adapter_is_merged_into_the_dequantized_base(tiny_model_dir: Path, tmp_path: Path):
    """4-bit base + adapter vs the merged bf16 model: close (bf16 rounding, ~0.03 here), and
    much closer than merging the same adapter into the original weights, which adds the
    quantization error back (~0.1 here)."""
    data = write_data(tmp_path / "train.jsonl", prompt_completion_rows(40))
    recipe = load_recipe(
        "qlora-budget",
        # r=8: at r=64 the adapter of this 64-wide model outweighs the model itself. A moderate
        # learning rate: the merged bf16 weights round the adapter's change too, and a large
        # change would swamp the comparison in rounding.
        short(
            tiny_model_dir,
            "training.learning_rate=1e-3",
            "training.precision=fp32",
            "lora.r=8",
            "lora.alpha=16",
            json_output=False,
        ),
    )
    train(with_data(recipe, data), tmp_path / "out")
    adapter = tmp_path / "out" / "adapter"
    merge(adapter, tmp_path / "merged")
    merged = logits(base_model(tmp_path / "merged"))
    quantized = {"quantization_config": recipe.build_bnb_config()}
    four_bit = logits(with_adapter(tiny_model_dir, adapter, **quantized))
    into_original = logits(with_adapter(tiny_model_dir, adapter).merge_and_unload())
    error = (merged - four_bit).abs().max().item()
    naive_error = (into_original - four_bit).abs().max().item()
    assert error < 0.05, error
    assert naive_error > 2 * error, (naive_error, error)
    untrained = logits(base_model(tiny_model_dir, **quantized))
    assert (four_bit - untrained).abs().max() > 0.05  # the adapter matters
    # The adapter folder carries its recipe: copied away from its run, it merges the same way.
    import shutil

    import torch

    moved = shutil.copytree(adapter, tmp_path / "elsewhere" / "my-adapter")
    merge(moved, tmp_path / "merged-again")
    assert torch.equal(logits(base_model(tmp_path / "merged-again")), merged)
