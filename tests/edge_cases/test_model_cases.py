"""Models and adapters that cannot work, for ``train`` and ``merge``: folders missing a piece,
configs that are not configs, LoRA targets that match nothing, a metric the run never
produces, an adapter merged onto a base it was not trained on. Each is refused before any
weights load and before anything is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from corpus import Case, run_case
from train_helpers import SHORT_GENERATION, SHORT_RUN

from peftkit.testing import prompt_completion_rows

ROWS = {"t.jsonl": prompt_completion_rows(12)}
TRAIN = ("train", "json-output", "--model", "model", "--data", "t.jsonl", "--output", "out",
         *SHORT_RUN, *SHORT_GENERATION)  # fmt: skip


def train(*extra: str) -> tuple[str, ...]:
    """TRAIN with ``extra``, which replaces a short-run setting of the same field (a field
    given twice is refused)."""
    given = {item.partition("=")[0] for item in extra}
    return (*(a for a in TRAIN if a.partition("=")[0] not in given or "=" not in a), *extra)


def remove(*names: str):
    def setup(folder: Path) -> None:
        for name in names:
            (folder / "model" / name).unlink()

    return setup


def replace(name: str, content: str | bytes):
    def setup(folder: Path) -> None:
        path = folder / "model" / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)

    return setup


def adapter(folder: Path) -> None:
    """A real LoRA adapter of the tiny model in ``adapter/`` (untrained: merging is what
    matters), naming ``model`` as its base."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(folder / "model")
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    peft_model = get_peft_model(base, lora)
    peft_model.save_pretrained(folder / "adapter")
    config_file = folder / "adapter" / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = "model"
    config_file.write_text(json.dumps(config))


def other_base(kind: str):
    """``adapter`` plus a base of another size (``llama``) or architecture (``gpt2``)."""

    def setup(folder: Path) -> None:
        from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

        adapter(folder)
        if kind == "llama":
            model = LlamaForCausalLM(
                LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64,
                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
            )  # fmt: skip
        else:
            model = GPT2LMHeadModel(GPT2Config(vocab_size=512, n_embd=32, n_layer=2, n_head=4))
        model.save_pretrained(folder / "other")
        shutil.copy(folder / "model" / "tokenizer.json", folder / "other")
        shutil.copy(folder / "model" / "tokenizer_config.json", folder / "other")

    return setup


def eight_bit_adapter(folder: Path) -> None:
    """``adapter`` with the recipe of a run on an 8-bit base beside it (what `peftkit train`
    writes into the adapter folder)."""
    adapter(folder)
    (folder / "adapter" / "recipe.yaml").write_text(
        "recipe: custom\nquantization: {bits: 8}\n", encoding="utf-8"
    )


def break_adapter(name: str, content: str | bytes | None):
    def setup(folder: Path) -> None:
        adapter(folder)
        path = folder / "adapter" / name
        if content is None:
            path.unlink()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)

    return setup


MODELS = [
    # --- model folders missing a piece ---
    Case("no-config", train(), ("config.json", "model"), ROWS, remove("config.json"), True),
    Case("no-weights", train(), ("weights", "model.safetensors"), ROWS,
         remove("model.safetensors"), True),
    Case("no-tokenizer", train(), ("tokenizer",), ROWS,
         remove("tokenizer.json", "tokenizer_config.json"), True),
    Case("nothing-at-all", train(), ("config.json", "weights", "tokenizer"),
         {**ROWS, "model/readme.md": "empty"}),
    Case("model-is-a-file", train(), ("model", "file"), {**ROWS, "model": "not a folder"}),
    Case("model-missing", train(), ("model", "not a folder"), ROWS),
    Case("model-missing-nested", train("--model", "models/mine"), ("models/mine",), ROWS),
    Case("config-not-json", train(), ("config.json", "JSON"), ROWS,
         replace("config.json", "{not json"), True),
    Case("config-a-list", train(), ("model_type",), ROWS, replace("config.json", "[1, 2]"), True),
    Case("config-without-model-type", train(), ("model_type",), ROWS,
         replace("config.json", json.dumps({"hidden_size": 64})), True),
    Case("config-unknown-model-type", train(), ("model.name", "config"), ROWS,
         replace("config.json", json.dumps({"model_type": "no-such-architecture"})), True),
    Case("config-not-utf8", train(), ("config.json",), ROWS,
         replace("config.json", b'{"model_type": "llama\xff"}'), True),
    Case("weights-corrupt", train(), ("model.name", "could not load"), ROWS,
         replace("model.safetensors", b"\x00" * 64), True),
    Case("tokenizer-corrupt", train(), ("tokenizer",), ROWS,
         replace("tokenizer.json", "{broken"), True),
    # --- what the recipe asks of the model ---
    Case("targets-match-nothing", train("lora.target_modules=[nope]"),
         ("nope", "q_proj", "lora.target_modules"), ROWS, model=True),
    Case("one-target-matches-nothing", train("lora.target_modules=[q_proj,vproj]"),
         ("vproj", "v_proj"), ROWS, model=True),
    Case("fused-names-on-a-separate-model", train("lora.target_modules=[qkv_proj]"),
         ("qkv_proj",), ROWS, model=True),
    Case("max-length-beyond-context", train("training.max_length=1024"),
         ("training.max_length", "512"), ROWS, model=True),
    Case("metric-never-produced", train("callbacks.early_stopping.metric=eval_accuracy"),
         ("eval_accuracy", "eval_loss", "callbacks.early_stopping.metric=eval_loss"),
         ROWS, model=True),
    Case("json-rate-without-generation",
         train("callbacks.early_stopping.metric=eval_json_valid_rate",
               "callbacks.early_stopping.mode=max"),
         ("eval_json_valid_rate", "generation.during_training=8"), ROWS, model=True),
    Case("schema-rate-without-schema",
         train("callbacks.early_stopping.metric=eval_schema_valid_rate",
               "callbacks.early_stopping.mode=max", "generation.during_training=2"),
         ("eval_schema_valid_rate", "json_schema"), ROWS, model=True),
    # --- merge: adapters that are not adapters, bases that do not fit ---
    Case("merge-no-adapter-config", ("merge", "adapter", "--output", "m"),
         ("adapter_config.json",), setup=break_adapter("adapter_config.json", None), model=True),
    Case("merge-no-adapter-weights", ("merge", "adapter", "--output", "m"),
         ("adapter weights",), setup=break_adapter("adapter_model.safetensors", None),
         model=True),
    Case("merge-adapter-config-not-json", ("merge", "adapter", "--output", "m"),
         ("adapter_config.json", "JSON"), setup=break_adapter("adapter_config.json", "{x"),
         model=True),
    Case("merge-adapter-config-a-list", ("merge", "adapter", "--output", "m"),
         ("adapter_config.json", "object"), setup=break_adapter("adapter_config.json", "[]"),
         model=True),
    Case("merge-adapter-names-no-base", ("merge", "adapter", "--output", "m"),
         ("--base",), setup=break_adapter("adapter_config.json", '{"peft_type": "LORA"}'),
         model=True),
    Case("merge-adapter-weights-corrupt", ("merge", "adapter", "--output", "m"),
         ("adapter_model.safetensors",),
         setup=break_adapter("adapter_model.safetensors", b"\x00" * 16), model=True),
    Case("merge-base-missing", ("merge", "adapter", "--output", "m", "--base", "nowhere"),
         ("nowhere",), setup=adapter, model=True),
    Case("merge-base-of-another-size", ("merge", "adapter", "--output", "m", "--base", "other"),
         ("--base other", "does not fit", "q_proj", "--base model"),
         setup=other_base("llama"), model=True),
    Case("merge-base-of-another-architecture",
         ("merge", "adapter", "--output", "m", "--base", "other"),
         ("--base other", "no such layer", "--base model"), setup=other_base("gpt2"),
         model=True),
    Case("merge-a-full-run", ("merge", "full", "--output", "m"),
         ("whole model", "nothing to merge"),
         setup=lambda folder: shutil.copytree(folder / "model", folder / "full"), model=True),
    Case("merge-an-8-bit-adapter", ("merge", "adapter", "--output", "m"),
         ("8-bit", "--base model"), setup=eight_bit_adapter, model=True),
    Case("merge-adapter-missing", ("merge", "nothing-here", "--output", "m"),
         ("nothing-here", "adapter_config.json"), {}),
]  # fmt: skip


@pytest.mark.parametrize("case", [c.param() for c in MODELS])
def test_model_that_cannot_work(case: Case, tmp_path, monkeypatch, tiny_model_dir) -> None:
    run_case(case, tmp_path, monkeypatch, tiny_model_dir)
