"""``peftkit merge`` of an adapter into a base it was not trained on, where every tensor of the
adapter still finds a module of its size: a base with more layers, another architecture of the
same sizes. Refused before any weights load, naming the base the adapter expects.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from corpus import Case, run_case
from test_model_cases import adapter
from train_helpers import run_main


def save_base(folder: Path, name: str, kind: str = "llama", layers: int = 2) -> None:
    """A base of the tiny model's sizes (hidden 64, MLP 128, 4 heads, 2 key/value heads) with
    ``layers`` layers, as ``kind`` (llama, or qwen2: the same module names and shapes)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    tiny = AutoConfig.from_pretrained(folder / "model").to_dict()
    sizes = {key: tiny[key] for key in ("vocab_size", "hidden_size", "intermediate_size",
                                         "num_attention_heads", "num_key_value_heads",
                                         "max_position_embeddings")}  # fmt: skip
    config = AutoConfig.for_model(kind, **sizes, num_hidden_layers=layers)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder / name)
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(folder / "model" / file, folder / name)


def with_base(name: str, kind: str = "llama", layers: int = 2):
    def setup(folder: Path) -> None:
        adapter(folder)
        save_base(folder, name, kind, layers)

    return setup


def base_replaced_by_a_deeper_model(folder: Path) -> None:
    """The adapter's own base folder now holds a 3-layer model of the same sizes."""
    adapter(folder)
    save_base(folder, "deeper", layers=3)
    shutil.rmtree(folder / "model")
    (folder / "deeper").rename(folder / "model")


MERGES = [
    Case("merge-a-2-layer-adapter-into-a-3-layer-base",
         ("merge", "adapter", "--output", "m", "--base", "deeper"),
         ("--base deeper", "more layers", "layers.2", "--base model"),
         setup=with_base("deeper", layers=3), model=True),
    Case("merge-into-another-architecture-of-the-same-sizes",
         ("merge", "adapter", "--output", "m", "--base", "qwen"),
         ("--base qwen", "model_type", "'qwen2'", "'llama'", "--base model"),
         setup=with_base("qwen", kind="qwen2"), model=True),
    Case("merge-into-its-base-folder-now-holding-a-deeper-model",
         ("merge", "adapter", "--output", "m"),
         ("--base", "more layers", "layers.2", "model"),
         setup=base_replaced_by_a_deeper_model, model=True),
]  # fmt: skip


@pytest.mark.parametrize("case", [c.param() for c in MERGES])
def test_an_adapter_merged_into_a_base_it_does_not_fit(
    case: Case, tmp_path, monkeypatch, tiny_model_dir
):
    run_case(case, tmp_path, monkeypatch, tiny_model_dir)


def test_a_variant_of_the_same_architecture_is_accepted(
    tmp_path: Path, monkeypatch, tiny_model_dir: Path
) -> None:
    """A base of the same architecture and sizes (a fine-tuned variant of the adapter's base)
    merges: the checks refuse other models, not other weights."""
    shutil.copytree(tiny_model_dir, tmp_path / "model")
    with_base("variant")(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(monkeypatch, "merge", "adapter", "--output", "m", "--base", "variant")
    assert code == 0, err
    assert (tmp_path / "m" / "config.json").is_file()
