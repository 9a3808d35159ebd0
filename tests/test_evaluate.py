"""Scoring and trying an adapter without training: ``peftkit evaluate`` reports what training
reported (the same function, public as ``peftkit.evaluation.evaluate``), ``peftkit generate``
answers as the adapter does, and answers with the adapter switched off are the base model's.
Real runs of the tiny model; the adapter is trained by ``peftkit.run.train`` once for the module.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from train_helpers import load_recipe, run_main, short, with_data

from peftkit.testing import prompt_completion_rows, write_data

ROWS = prompt_completion_rows(24)


@pytest.fixture(scope="module")
def run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short json-output run with held-out data e.jsonl: OUT/adapter, OUT/metrics.json."""
    from peftkit.run.train import train

    folder = tmp_path_factory.mktemp("run")
    train_file = write_data(folder / "t.jsonl", ROWS[:16])
    eval_file = write_data(folder / "e.jsonl", ROWS[16:])
    recipe = with_data(load_recipe("json-output", short(tiny_model_dir)), train_file, eval_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(recipe, folder / "out")
    return folder


def _files(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_evaluate_reports_what_training_reported(run: Path, monkeypatch) -> None:
    """The same held-out rows: before (the base model: the adapter switched off) and after
    (with it) equal the run's own before/after, loss and JSON rates alike; nothing written."""
    monkeypatch.chdir(run)
    before_files = _files(run)
    code, out, err = run_main(monkeypatch, "evaluate", "out/adapter", "--data", "e.jsonl", "--json")
    assert code == 0, err
    found = json.loads(out)
    trained = json.loads((run / "out" / "metrics.json").read_text())
    assert found["data"] == {"path": "e.jsonl", "format": "prompt-completion", "rows": 8}
    for when in ("before", "after"):
        for key in ("eval_loss", "perplexity", "json_valid_rate", "exact_match_rate"):
            assert found[when][key] == pytest.approx(trained[when][key], rel=1e-4), (when, key)
        assert found[when]["examples"] == trained[when]["examples"]
    assert found["after"]["eval_loss"] < found["before"]["eval_loss"]
    assert _files(run) == before_files
    code, out, err = run_main(monkeypatch, "evaluate", "out/adapter", "--data", "e.jsonl")
    assert code == 0 and "after: with the adapter" in " ".join(out.split()), err
    assert "perplexity" in out


def test_the_job_s_evaluation_on_a_user_s_own_trainer(tiny_model_dir: Path, tmp_path) -> None:
    """peftkit.evaluation.evaluate on an SFTTrainer built from a recipe: the trainer's own
    eval_loss, its perplexity, and with the rows given the JSON rates of json-output."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    from peftkit.evaluation import evaluate

    recipe = load_recipe("json-output", short(tiny_model_dir))
    rows = Dataset.from_list(ROWS[16:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
            args=recipe.build_sft_config(tmp_path),
            peft_config=recipe.build_lora_config(),
            train_dataset=Dataset.from_list(ROWS[:16]),
            eval_dataset=rows,
            processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
        )
    scores = evaluate(trainer, recipe, rows)
    assert scores["eval_loss"] == pytest.approx(trainer.evaluate()["eval_loss"])
    assert {"perplexity", "json_valid_rate", "exact_match_rate", "stopped_rate"} <= set(scores)
    assert scores["count"] == 4  # generation.samples of the short run
    assert set(evaluate(trainer, recipe)) == {"eval_loss", "perplexity"}


def test_generate_answers_as_the_adapter_does(run: Path, tiny_model_dir: Path, monkeypatch):
    """`peftkit generate` prints the greedy answer of the base model with the adapter, to the
    prompt as json-output trained on it (plain text)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from peftkit.evaluation import generate_answers

    prompt = "Describe HTTP status 200 as JSON."
    monkeypatch.chdir(run)
    code, out, err = run_main(
        monkeypatch, "generate", "out/adapter", prompt, "--max-new-tokens", "6"
    )
    assert code == 0, err
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), run / "out" / "adapter"
    )
    tokenizer = AutoTokenizer.from_pretrained(run / "out" / "adapter")
    expected = generate_answers(model, tokenizer, [prompt], max_new_tokens=6).texts[0]
    assert out == expected + "\n"


def test_answers_with_the_adapter_switched_off_are_the_base_model_s(tiny_model_dir: Path):
    """generate_answers inside peft's disable_adapter() (the "before" of peftkit evaluate)
    answers as the base model, quietly: merging the adapter for speed there made peft undo it
    at once with an "Already unmerged" warning per layer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from peftkit.evaluation import generate_answers

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompts = [row["prompt"] for row in ROWS[:4]]

    def answers(model: Any) -> list[str]:
        return generate_answers(model, tokenizer, prompts, max_new_tokens=6).texts

    base = answers(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    adapted = _random_adapter(tiny_model_dir)
    assert answers(adapted) != base  # premise: the adapter changes the answers
    with warnings.catch_warnings(record=True) as caught, adapted.disable_adapter():
        warnings.simplefilter("always")
        assert answers(adapted) == base
    assert not [w for w in caught if "unmerged" in str(w.message)]
    assert answers(adapted) != base


def _random_adapter(model_dir: Path) -> Any:
    """An adapter whose B factors are random rather than zero (init_lora_weights=False): it
    changes the model as a trained one does."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(r=8, lora_alpha=64, target_modules="all-linear", init_lora_weights=False)
    return get_peft_model(model, config)
