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


# --- what evaluate and JsonAnswers report, case by case ------------------------------------------

CHAT = [
    {
        "messages": [
            {"role": "system", "content": "Answer in JSON."},
            {"role": "user", "content": f"Status {code}?"},
            {"role": "assistant", "content": json.dumps({"code": code})},
            {"role": "user", "content": f"And {code + 1}?"},
            {"role": "assistant", "content": json.dumps({"code": code + 1})},
        ]
    }
    for code in (200, 300, 400, 500, 600)
]


def _trainer(tiny_model_dir: Path, tmp_path: Path, recipe: Any, rows: list[dict]) -> Any:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
            args=recipe.build_sft_config(tmp_path),
            peft_config=recipe.build_lora_config(),
            train_dataset=Dataset.from_list(rows),
            eval_dataset=Dataset.from_list(rows),
            processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
        )


def test_a_conversations_prompt_is_its_turns_before_the_last_answer():
    from datasets import Dataset

    from peftkit.evaluation.held_out import held_out_prompts

    prompts, answers = held_out_prompts(Dataset.from_list(CHAT), "messages", 2)
    assert prompts == [row["messages"][:4] for row in CHAT[:2]]
    assert answers == ['{"code": 201}', '{"code": 301}']
    rows = Dataset.from_list(ROWS[:3])
    assert held_out_prompts(rows, "prompt-completion", 5) == (
        [r["prompt"] for r in ROWS[:3]],
        [r["completion"] for r in ROWS[:3]],
    )


def test_evaluate_on_conversations_with_a_schema_after_training(tiny_model_dir, tmp_path):
    """Chat rows: the examples show each prompt's last turn and the answer (three at most); the
    schema-valid rate comes with a schema; a trained model that never stops is named, with the
    recipe's max_new_tokens; before training it is not."""
    from peftkit.evaluation import evaluate

    schema = 'json_schema={"type": "object", "required": ["code"]}'
    recipe = load_recipe(
        "json-output",
        short(tiny_model_dir, "data.format=messages", schema, "generation.max_new_tokens=3"),
    )
    trainer = _trainer(tiny_model_dir, tmp_path, recipe, CHAT)
    from datasets import Dataset

    scores = evaluate(trainer, recipe, Dataset.from_list(CHAT), trained=True)
    assert [e["prompt"] for e in scores["examples"]] == ["And 201?", "And 301?", "And 401?"]
    assert all(set(e) == {"prompt", "answer"} for e in scores["examples"])
    assert "schema_valid_rate" in scores
    assert scores["truncated_rate"] == 1.0  # 3 new tokens: no answer of the tiny model ends
    (note,) = scores["notes"]
    assert "max_new_tokens=3 without an EOS token" in note
    assert "notes" not in evaluate(trainer, recipe, Dataset.from_list(CHAT))


def test_evaluate_on_text_rows_reports_the_loss_only(tiny_model_dir, tmp_path):
    from datasets import Dataset

    from peftkit.evaluation import evaluate

    recipe = load_recipe("json-output", short(tiny_model_dir))
    trainer = _trainer(tiny_model_dir, tmp_path, recipe, ROWS[:8])
    text = Dataset.from_list([{"text": "a plain document"}])
    assert set(evaluate(trainer, recipe, text)) == {"eval_loss", "perplexity"}


class _Losses:
    """A trainer that reports a given evaluation loss: a real run cannot be steered to a loss of
    exactly 50, where the perplexity is no longer worth a number."""

    def __init__(self, loss: float) -> None:
        self.loss = loss
        self.eval_dataset = ["a row"]

    def evaluate(self) -> dict[str, float]:
        return {"eval_loss": self.loss}


@pytest.mark.parametrize(("loss", "finite"), [(49.9, True), (50.0, False), (50.5, False)])
def test_perplexity_is_infinite_from_a_loss_of_50(loss, finite):
    import math

    from peftkit.evaluation import evaluate

    recipe = load_recipe("domain-adaptation", [])
    perplexity = evaluate(_Losses(loss), recipe)["perplexity"]
    assert perplexity == (math.exp(loss) if finite else math.inf)


def test_json_answers_adds_the_rates_at_evaluations_in_training_only(tiny_model_dir, monkeypatch):
    """At an evaluation during train(): the JSON and schema-valid rates, generated with the
    callback's max_new_tokens and batch size (the count of answers is not a metric); outside
    train(), nothing. Its defaults are the recipe's generation defaults."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerControl, TrainerState

    from peftkit.evaluation import callback as module
    from peftkit.evaluation.callback import JsonAnswers
    from peftkit.recipes.json_output import GenerationSection

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    asked = []
    real = module.generate_answers

    def recorded(*args: Any) -> Any:  # the real generation, its arguments kept
        asked.append(args[3:])
        return real(*args)

    monkeypatch.setattr(module, "generate_answers", recorded)
    callback = JsonAnswers(tokenizer, [r["prompt"] for r in ROWS[:3]], {"type": "object"}, 5, 2)
    state, control = TrainerState(), TrainerControl()
    outside = {"eval_loss": 1.0}
    callback.on_log(None, state, control, logs=outside, model=model)
    assert outside == {"eval_loss": 1.0} and asked == []
    callback.training = True
    logs = {"eval_loss": 1.0}
    callback.on_log(None, state, control, logs=logs, model=model)
    assert asked == [(5, 2)]
    assert set(logs) == {"eval_loss", "eval_json_valid_rate", "eval_schema_valid_rate"}
    defaults = JsonAnswers(tokenizer, [])
    fields = GenerationSection.model_fields
    assert defaults.max_new_tokens == fields["max_new_tokens"].default
    assert defaults.batch_size == fields["batch_size"].default
