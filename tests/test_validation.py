"""Recipe validation: every way a recipe can be wrong is reported at the right field, with a rule
and a fix, and every legal-but-doubtful choice is a PeftkitWarning.

Each row of ``BAD_RECIPES`` is run once, through the Python API, ``peftkit validate`` and its
fixes; ``YAML_ERRORS`` is a module-level table so that tests/test_cli.py runs the very same
cases through ``peftkit validate`` in a subprocess.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from recipe_fixes import ADVICE_ONLY, ROUNDS, apply, edits, found, problems_of, raw
from train_helpers import assert_user_error, run_main

import peftkit
from peftkit import PeftkitDeprecationWarning, PeftkitWarning, RecipeError, recipes
from peftkit.core.errors import describe, problems

J = "recipe: json-output\n"
"""Start of most YAML rows: the recipe whose other defaults are all valid."""

# One row per way to get a recipe wrong: (YAML text or dict, dotted path the error must name).
# YAML text goes through a file and recipes.load; a dict goes through recipes.from_dict.
BAD_RECIPES = [
    # --- wrong types ---
    pytest.param(J + "lora: {r: big}\n", "lora.r", id="type-r-string"),
    pytest.param(
        J + "training: {learning_rate: [1]}\n", "training.learning_rate", id="type-lr-list"
    ),
    pytest.param(J + "training: {packing: maybe}\n", "training.packing", id="type-packing-maybe"),
    pytest.param(J + "training: {epochs: three}\n", "training.epochs", id="type-epochs-word"),
    pytest.param(J + "model: 5\n", "model", id="type-model-number"),
    pytest.param({"recipe": "json-output", "lora": [16]}, "lora", id="type-section-list"),
    # --- out of range ---
    pytest.param(J + "lora: {r: 0}\n", "lora.r", id="range-r-zero"),
    pytest.param(J + "lora: {r: 2000, alpha: 4000}\n", "lora.r", id="range-r-too-big"),
    pytest.param(J + "lora: {dropout: 1.5}\n", "lora.dropout", id="range-dropout-1.5"),
    pytest.param(
        J + "training: {eval_fraction: 0.9}\n", "training.eval_fraction", id="range-eval-fraction"
    ),
    pytest.param(
        J + "training: {max_grad_norm: -1}\n", "training.max_grad_norm", id="range-neg-grad-norm"
    ),
    pytest.param(J + "training: {max_length: 8}\n", "training.max_length", id="range-max-length"),
    pytest.param(J + "quantization: {bits: 3}\n", "quantization.bits", id="range-bits-3"),
    pytest.param(
        J + "callbacks: {early_stopping: {patience: 0}}\n",
        "callbacks.early_stopping.patience",
        id="range-patience-zero",
    ),
    # --- unknown keys, at every level ---
    pytest.param(J + "foo: 1\n", "foo", id="unknown-top-level"),
    pytest.param(J + "model: {name: org/m, foo: 1}\n", "model.foo", id="unknown-model"),
    pytest.param(J + "lora: {foo: 1}\n", "lora.foo", id="unknown-lora"),
    pytest.param(J + "quantization: {foo: 1}\n", "quantization.foo", id="unknown-quantization"),
    pytest.param(J + "training: {foo: 1}\n", "training.foo", id="unknown-training"),
    pytest.param(J + "data: {foo: 1}\n", "data.foo", id="unknown-data"),
    pytest.param(
        J + "callbacks: {early_stopping: {foo: 1}}\n",
        "callbacks.early_stopping.foo",
        id="unknown-early-stopping",
    ),
    pytest.param(
        {"recipe": "qlora-budget", "json_schema": {"type": "object"}},
        "json_schema",
        id="unknown-json-schema-outside-json-output",
    ),
    # --- misspelled or foreign keys (the suggestions are checked in their own test) ---
    pytest.param(J + "lora: {alpa: 32}\n", "lora.alpa", id="misspelled-alpa"),
    pytest.param(J + "lora: {lora_alpha: 32}\n", "lora.lora_alpha", id="foreign-lora_alpha"),
    pytest.param(
        J + "training: {num_train_epochs: 2}\n",
        "training.num_train_epochs",
        id="foreign-num_train_epochs",
    ),
    pytest.param(
        J + "training: {per_device_train_batch_size: 8}\n",
        "training.per_device_train_batch_size",
        id="foreign-per_device_train_batch_size",
    ),
    # --- TRL and axolotl keys at the top (one table: peftkit.recipes.foreign_keys) ---
    pytest.param(J + "learning_rate: 1.0e-4\n", "learning_rate", id="trl-learning_rate-at-top"),
    pytest.param(J + "load_in_4bit: true\n", "load_in_4bit", id="trl-load_in_4bit-at-top"),
    pytest.param(J + "output_dir: out\n", "output_dir", id="trl-key-without-a-home"),
    pytest.param(
        J + "lr_scheduler_type: cosine_with_min_lr\n",
        "lr_scheduler_type",
        id="trl-value-peftkit-lacks",
    ),
    pytest.param(
        J + "model_name_or_path: Qwen/Qwen2.5-0.5B\n"
        "num_train_epochs: 2\n"
        "per_device_train_batch_size: 8\n"
        "gradient_checkpointing: true\n"
        "use_peft: true\n"
        "lora_target_modules: [q_proj, k_proj, v_proj, o_proj]\n"
        "load_in_4bit: true\n"
        "eval_strategy: 'no'\n"
        "bf16: true\n",
        "num_train_epochs",
        id="trl-sft-config-at-top",
    ),
    pytest.param(
        J + "base_model: NousResearch/Llama-3.2-1B\n"
        "datasets: [{path: data/chats.jsonl, type: chat_template}]\n"
        "adapter: lora\n"
        "sequence_len: 2048\n"
        "micro_batch_size: 2\n"
        "num_epochs: 1\n"
        "lora_r: 16\n"
        "lora_alpha: 32\n"
        "lora_target_linear: true\n"
        "val_set_size: 0.05\n"
        "train_on_inputs: false\n"
        "bf16: auto\n"
        "special_tokens: {pad_token: <|end_of_text|>}\n",
        "sequence_len",
        id="axolotl-config-at-top",
    ),
    # --- contradictory sections ---
    pytest.param(J + "method: qlora\n", "quantization.bits", id="rule-qlora-without-4bit"),
    pytest.param(J + "quantization: {bits: 4}\n", "method", id="rule-lora-with-4bit"),
    pytest.param(
        J + "method: full\nquantization: {bits: 8}\n", "quantization.bits", id="rule-full-quantized"
    ),
    pytest.param(
        J + "method: full\ntraining: {learning_rate: 2e-5}\n",
        "callbacks.early_stopping.restore_best",
        id="rule-full-copy-needs-opt-in",
    ),
    pytest.param(
        J + "method: qlora\nquantization: {load_in_4bit: true, load_in_8bit: true}\n",
        "quantization.load_in_8bit",
        id="rule-4bit-and-8bit",
    ),
    pytest.param(
        J + "quantization: {load_in_4bit: 4}\n",
        "quantization.load_in_4bit",
        id="rule-load-in-4bit-not-bool",
    ),
    pytest.param(
        J + "model: {dtype: bfloat16}\ntraining: {precision: fp16}\n",
        "training.precision",
        id="rule-fp16-with-bf16-weights",
    ),
    pytest.param(
        "recipe: qlora-budget\n"
        "quantization: {compute_dtype: float16}\n"
        "training: {precision: bf16}\n",
        "quantization.compute_dtype",
        id="rule-bf16-with-fp16-compute",
    ),
    pytest.param(
        "recipe: qlora-budget\ndistributed: {strategy: fsdp}\n"
        "quantization: {compute_dtype: bfloat16, storage_dtype: uint8}\n",
        "quantization.storage_dtype",
        id="rule-fsdp-storage-dtype",
    ),
    pytest.param(
        J + "training: {eval_strategy: steps, eval_fraction: 0}\n",
        "training.eval_strategy",
        id="rule-eval-without-data",
    ),
    pytest.param(
        J + "training: {eval_strategy: 'no'}\n",
        "callbacks.early_stopping.enabled",
        id="rule-early-stopping-without-eval",
    ),
    pytest.param(
        "recipe: custom\ndata: {format: text, completion_only_loss: true}\n",
        "data.completion_only_loss",
        id="rule-completion-loss-on-text",
    ),
    pytest.param(J + "data: {format: text}\n", "data.format", id="rule-json-output-text"),
    pytest.param(
        "recipe: domain-adaptation\ndata: {format: prompt-completion}\n",
        "data.format",
        id="rule-domain-adaptation-prompt-completion",
    ),
    pytest.param("recipe: qlora-budget\nmethod: lora\n", "method", id="rule-qlora-budget-lora"),
    pytest.param(J + "lora: {r: 4, alpha: 512}\n", "lora.alpha", id="rule-alpha-over-r"),
    pytest.param(J + "lora: {target_modules: []}\n", "lora.target_modules", id="rule-no-targets"),
    pytest.param(
        {"recipe": "json-output", "json_schema": {"type": 12}},
        "json_schema",
        id="rule-invalid-json-schema",
    ),
    pytest.param(
        J + "training: {max_seq_length: 100, max_length: 200}\n",
        "training.max_seq_length",
        id="rule-old-and-new-name",
    ),
    pytest.param(
        J + "lora: {target_modules: 'q_proj, v_proj'}\n",
        "lora.target_modules",
        id="rule-targets-as-a-comma-string",
    ),
    pytest.param(
        J + "lora: {target_modules: [q_proj, lm_head]}\n",
        "lora.target_modules",
        id="rule-lora-on-the-output-head",
    ),
    pytest.param(
        J + "training: {warmup_steps: 5.5}\n", "training.warmup_steps", id="rule-warmup-fraction"
    ),
    pytest.param(
        J + "training: {lr_scheduler: constant, warmup_steps: 0.1}\n",
        "training.warmup_steps",
        id="rule-constant-ignores-warmup",
    ),
    pytest.param(
        J + "training: {max_steps: 10, warmup_steps: 10}\n",
        "training.warmup_steps",
        id="rule-warmup-longer-than-the-run",
    ),
    pytest.param(
        {"recipe": "json-output", "json_schema": {"$ref": "#/$defs/Missing"}},
        "json_schema.$ref",
        id="rule-schema-ref-to-nothing",
    ),
    pytest.param(
        {"recipe": "json-output", "json_schema": {"$ref": "https://example.com/s.json"}},
        "json_schema.$ref",
        id="rule-schema-ref-outside",
    ),
    # --- which recipe ---
    pytest.param("recipe: nope\n", "recipe", id="recipe-unknown-name"),
    pytest.param("method: lora\nlora: {r: 8}\n", "recipe", id="recipe-key-missing"),
]

RECIPE_FILE = "recipe.yaml"
VALID_WITH_MODEL_STRING = "recipe: json-output\nmodel: org/name\n"

# Errors outside field validation: (file text or None for no file, overrides, text the message
# must contain). The file is always called RECIPE_FILE.
YAML_ERRORS = [
    pytest.param("recipe: json-output\nlora: {r: 3\n", (), RECIPE_FILE, id="bad-yaml-syntax"),
    pytest.param("", (), RECIPE_FILE, id="empty-file"),
    pytest.param("# only a comment\n", (), RECIPE_FILE, id="comment-only-file"),
    pytest.param("- recipe\n- json-output\n", (), RECIPE_FILE, id="top-level-list"),
    pytest.param(None, (), RECIPE_FILE, id="missing-file"),
    pytest.param(VALID_WITH_MODEL_STRING, ("lora.r",), "lora.r", id="override-without-equals"),
    pytest.param(VALID_WITH_MODEL_STRING, ("=3",), "'=3'", id="override-without-key"),
    pytest.param(VALID_WITH_MODEL_STRING, ("lora.r=[",), "lora.r=[", id="override-bad-yaml"),
    pytest.param(
        VALID_WITH_MODEL_STRING, ("model.name.x=1",), "model.name.x=1", id="override-through-value"
    ),
]


def load_source(source: str | dict[str, Any], tmp_path: Path) -> recipes.Recipe:
    """Load a table row: YAML text through a file, a dict through from_dict; no warnings shown."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PeftkitWarning)
        if isinstance(source, dict):
            return recipes.from_dict(source)
        path = tmp_path / RECIPE_FILE
        path.write_text(source, encoding="utf-8")
        return recipes.load(path)


def validation_error(source: str | dict[str, Any], tmp_path: Path) -> ValidationError:
    """The ValidationError a bad source raises (the test fails if it raises nothing)."""
    with pytest.raises(ValidationError) as info:
        load_source(source, tmp_path)
    return info.value


def recorded_warnings(load: Any) -> list[warnings.WarningMessage]:
    """Every warning ``load()`` emits, none filtered away."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load()
    return caught


# --- the table -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "path"), BAD_RECIPES)
def test_bad_recipe_is_reported_at_its_field_and_its_fixes_work(
    source: str | dict[str, Any], path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each mistake, once through every route: a ValidationError naming the field, every
    problem with a rule and a fix; `peftkit validate` exits 2 naming it, without a traceback;
    each alternative of each fix, applied as written, removes its problem; and following the
    first fix of each problem ends in a valid recipe within a few rounds, as it does for a
    user (a fix may reveal a rule that depends on the new value)."""
    found_problems = problems(validation_error(source, tmp_path))
    assert path in [p.path for p in found_problems]
    for problem in found_problems:
        assert problem.rule.strip(), problem
        assert problem.fix.strip(), problem
    monkeypatch.chdir(tmp_path)  # load_source wrote the YAML rows to RECIPE_FILE here
    if isinstance(source, dict):
        (tmp_path / RECIPE_FILE).write_text(yaml.safe_dump(source, sort_keys=False))
    assert_user_error(*run_main(monkeypatch, "validate", RECIPE_FILE)[::2], path)
    data = raw(source)
    for problem in problems_of(data):
        if problem.fix.startswith(ADVICE_ONLY):
            continue
        choices = edits(problem)
        assert choices, f"no edit can be read from the fix of {problem}"
        for alternative in choices:
            assert (problem.path, problem.rule) not in found(apply(data, alternative))
    for _ in range(ROUNDS):
        listed = problems_of(data)
        if any(p.fix.startswith(ADVICE_ONLY) for p in listed):
            return
        for problem in listed:
            data = apply(data, edits(problem)[0])
        if not found(data):
            return
    pytest.fail(f"still invalid after {ROUNDS} rounds of fixes: {found(data)}")


@pytest.mark.parametrize(
    ("section", "key", "suggestion"),
    [
        pytest.param("lora", "alpa", "did you mean 'alpha'", id="alpa"),
        pytest.param("lora", "lora_alpha", "did you mean 'alpha'", id="lora_alpha"),
        pytest.param(
            "training", "num_train_epochs", "did you mean 'epochs'", id="num_train_epochs"
        ),
        pytest.param(
            "training",
            "per_device_train_batch_size",
            "did you mean 'batch_size'",
            id="per_device_train_batch_size",
        ),
        pytest.param(None, "qunatization", "did you mean 'quantization'", id="top-level-typo"),
    ],
)
def test_unknown_key_suggests_the_right_name(
    section: str | None, key: str, suggestion: str
) -> None:
    """A misspelled or foreign key gets a "did you mean" in the fix and in the error message
    itself, so that a plain ``except ValidationError: print(err)`` in user code shows it too."""
    data: dict[str, Any] = {"recipe": "json-output"}
    if section is None:
        data[key] = {}
    else:
        data[section] = {key: 1}
    with pytest.raises(ValidationError) as info:
        recipes.from_dict(data)
    path = key if section is None else f"{section}.{key}"
    (problem,) = [p for p in problems(info.value) if p.path == path]
    assert suggestion in problem.fix
    if key in ("lora_alpha", "num_train_epochs", "per_device_train_batch_size"):
        assert f"peftkit's name for {key}" in problem.fix
    assert suggestion in str(info.value)


def test_union_field_error_is_reported_at_the_field_path() -> None:
    """``target_modules: q_proj`` (neither 'all-linear' nor a list) is reported at
    lora.target_modules, not at pydantic's internal union-branch names."""
    with pytest.raises(ValidationError) as info:
        recipes.from_dict({"recipe": "json-output", "lora": {"target_modules": "q_proj"}})
    assert [p.path for p in problems(info.value)] == ["lora.target_modules"]


# --- errors outside field validation ------------------------------------------------------------


@pytest.mark.parametrize(("text", "overrides", "names"), YAML_ERRORS)
def test_file_and_override_errors_are_recipe_errors(
    text: str | None, overrides: tuple[str, ...], names: str, tmp_path: Path
) -> None:
    """Bad YAML, an empty or non-mapping file, a missing file and malformed overrides raise
    RecipeError (not a traceback-worthy exception) whose message names the file or override."""
    path = tmp_path / RECIPE_FILE
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        recipes.load(path, overrides=overrides)
    assert names in str(info.value)


def test_bad_yaml_message_gives_the_line(tmp_path: Path) -> None:
    """A YAML syntax error says where it is."""
    path = tmp_path / RECIPE_FILE
    path.write_text("recipe: json-output\nlora:\n  r: 8\n   alpha: 16\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"line \d+"):
        recipes.load(path)


def test_unknown_builtin_name_suggests_the_closest() -> None:
    """A typo in a built-in recipe's name is a RecipeError with a suggestion."""
    with pytest.raises(RecipeError, match="did you mean 'json-output'"):
        recipes.load("json-outptu")


# --- all errors at once -------------------------------------------------------------------------


def test_field_errors_in_several_sections_are_reported_together(tmp_path: Path) -> None:
    """One run shows every field error, not just the first, so users fix them in one go."""
    text = (
        "recipe: json-output\n"
        "model: {dtype: int8}\n"
        "lora: {r: 0}\n"
        "quantization: {bits: 3}\n"
        "training: {packing: maybe}\n"
        "data: {format: csv}\n"
        "callbacks: {early_stopping: {patience: 0}}\n"
    )
    paths = {p.path for p in problems(validation_error(text, tmp_path))}
    assert paths == {
        "model.dtype",
        "lora.r",
        "quantization.bits",
        "training.packing",
        "data.format",
        "callbacks.early_stopping.patience",
    }


Q = "qlora-budget"
FULL_COPY = {"early_stopping": {"allow_full_copy": True}}

FULL_COPY_OVERRIDE = ["callbacks.early_stopping.allow_full_copy=true"]
FP16_RULE = "fp16 mixed precision with bfloat16 weights or compute"

# Each cross-section rule on both sides of its condition: (recipe as a dict, the problems it has
# by path, with the value found there and the start of the rule; none for a recipe that loads).
RULE_BOUNDARIES = [
    pytest.param(
        {"method": "qlora", "quantization": {"bits": 8}},
        {"quantization.bits": (8, "method 'qlora' trains an adapter on a 4-bit base")},
        id="qlora-on-8-bit",
    ),
    pytest.param({"quantization": {"bits": 8}}, {}, id="lora-on-8-bit"),
    pytest.param(
        {"quantization": {"bits": 4}},
        {"method": ("lora", "LoRA on a 4-bit base model is QLoRA")},
        id="lora-on-4-bit",
    ),
    pytest.param(
        {"method": "full", "quantization": {"bits": 8}, "callbacks": FULL_COPY},
        {"quantization.bits": (8, "quantized weights cannot be trained in full")},
        id="full-on-8-bit",
    ),
    pytest.param(
        {"model": {"dtype": "bfloat16"}, "training": {"precision": "fp16"}},
        {"training.precision": ("fp16", FP16_RULE)},
        id="fp16-with-bf16-weights",
    ),
    pytest.param(
        {"model": {"dtype": "float16"}, "training": {"precision": "fp16"}},
        {},
        id="fp16-with-fp16-weights",
    ),
    pytest.param(
        {
            "recipe": Q,
            "training": {"precision": "fp16"},
            "quantization": {"compute_dtype": "bfloat16"},
        },
        {"training.precision": ("fp16", FP16_RULE)},
        id="fp16-with-bf16-4-bit-compute",
    ),
    pytest.param(
        {
            "recipe": Q,
            "training": {"precision": "fp16"},
            "quantization": {"compute_dtype": "float16"},
        },
        {},
        id="fp16-with-fp16-4-bit-compute",
    ),
    pytest.param(
        {
            "quantization": {"bits": 8, "compute_dtype": "bfloat16"},
            "training": {"precision": "fp16"},
        },
        {},
        id="fp16-with-8-bit-whose-compute-dtype-is-unused",
    ),
    pytest.param(
        {
            "recipe": Q,
            "training": {"precision": "bf16"},
            "quantization": {"compute_dtype": "float16"},
        },
        {"quantization.compute_dtype": ("float16", "bf16 training with float16 4-bit compute")},
        id="bf16-with-fp16-4-bit-compute",
    ),
    pytest.param(
        {
            "quantization": {"bits": 8, "compute_dtype": "float16"},
            "training": {"precision": "bf16"},
        },
        {},
        id="bf16-with-8-bit",
    ),
    pytest.param(
        {
            "recipe": Q,
            "distributed": {"strategy": "fsdp"},
            "quantization": {"compute_dtype": "bfloat16", "storage_dtype": "uint8"},
        },
        {"quantization.storage_dtype": ("uint8", "FSDP shards parameters of one dtype")},
        id="fsdp-4-bit-stored-as-uint8",
    ),
    pytest.param(
        {
            "recipe": Q,
            "distributed": {"strategy": "fsdp"},
            "quantization": {"storage_dtype": "bfloat16"},
        },
        {},
        id="fsdp-4-bit-stored-in-the-compute-dtype",
    ),
    pytest.param({"distributed": {"strategy": "fsdp"}}, {}, id="fsdp-unquantized"),
    pytest.param(
        {"training": {"eval_fraction": 0}},
        {"training.eval_strategy": ("steps", "evaluations are scheduled but there is no")},
        id="evaluations-without-data",
    ),
    pytest.param(
        {"training": {"eval_fraction": 0}, "data": {"eval_path": "held.jsonl"}},
        {},
        id="evaluations-on-an-eval-file",
    ),
    pytest.param(
        {"training": {"eval_strategy": "no"}},
        {
            "callbacks.early_stopping.enabled": (True, "the early stopping callback decides"),
            "callbacks.overfit.enabled": (True, "the overfit callback decides at"),
        },
        id="callbacks-without-evaluations",
    ),
    pytest.param(
        {"training": {"eval_strategy": "no"}, "callbacks": {"early_stopping": {"enabled": False}}},
        {"callbacks.overfit.enabled": (True, "the overfit callback decides at")},
        id="one-callback-without-evaluations",
    ),
    pytest.param(
        {"callbacks": {"early_stopping": {"metric": "eval_quality"}}},
        {"callbacks.early_stopping.mode": ("auto", "the name 'eval_quality' does not say")},
        id="auto-mode-on-a-silent-name",
    ),
    pytest.param(
        {"callbacks": {"early_stopping": {"metric": "eval_quality", "mode": "max"}}},
        {},
        id="explicit-mode-on-a-silent-name",
    ),
    pytest.param(
        {"method": "full"},
        {"callbacks.early_stopping.restore_best": (True, "with method 'full', keeping")},
        id="full-copy-without-opt-in",
    ),
    pytest.param(
        {"method": "full", "callbacks": {"early_stopping": {"enabled": False}}},
        {},
        id="full-with-early-stopping-off",
    ),
    pytest.param(
        {"method": "full", "callbacks": {"early_stopping": {"restore_best": False}}},
        {},
        id="full-without-restoring",
    ),
    pytest.param({"method": "full", "callbacks": FULL_COPY}, {}, id="full-copy-accepted"),
    pytest.param(
        {"data": {"format": "text"}},
        {"data.format": ("text", "the json-output recipe trains on prompt-completion or")},
        id="a-format-the-recipe-cannot-train",
    ),
    pytest.param({"data": {"format": "messages"}}, {}, id="a-format-the-recipe-trains"),
]


@pytest.mark.parametrize(("changes", "expected"), RULE_BOUNDARIES)
def test_each_rule_fires_exactly_on_its_side_of_the_boundary(
    changes: dict[str, Any], expected: dict[str, tuple[Any, str]]
) -> None:
    """A rule reports its problem where its condition holds and stays silent just beside it
    (the same recipe with the one setting that makes it legal)."""
    data = {"recipe": "json-output", **changes}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PeftkitWarning)
        if not expected:
            recipes.from_dict(data)
            return
        with pytest.raises(ValidationError) as info:
            recipes.from_dict(data)
    found = {p.path: (p.value, p.rule) for p in problems(info.value)}
    assert found.keys() == expected.keys()
    for path, (value, rule) in expected.items():
        assert found[path][0] == value and type(found[path][0]) is type(value), found[path]
        assert found[path][1].startswith(rule), found[path]


def test_contradictions_are_reported_together() -> None:
    """Fields that are fine one by one but break four rules give four problems at once."""
    data = {
        "recipe": "json-output",
        "method": "full",
        "quantization": {"bits": 8},
        "model": {"dtype": "bfloat16"},
        "training": {"precision": "fp16", "eval_fraction": 0},
    }
    with pytest.raises(ValidationError) as info:
        recipes.from_dict(data)
    found = problems(info.value)
    assert sorted(p.path for p in found) == [
        "callbacks.early_stopping.restore_best",  # full fine-tuning copies the whole model
        "quantization.bits",
        "training.eval_strategy",
        "training.precision",
    ]
    assert all(p.rule and p.fix for p in found)


def test_unknown_keys_keep_their_message_when_reported_together() -> None:
    """A nested unknown key is described the same way ("unknown key ...") whether or not
    another section has an unknown key too."""
    data = {"recipe": "json-output", "bogus": 1, "lora": {"alpa": 1}, "training": {"foo": 1}}
    with pytest.raises(ValidationError) as info:
        recipes.from_dict(data)
    found = {p.path: p for p in problems(info.value)}
    assert set(found) == {"bogus", "lora.alpa", "training.foo"}
    for path, problem in found.items():
        assert problem.rule.startswith(f"unknown key '{path.split('.')[-1]}'"), problem


# --- warnings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "mentions"),
    [
        pytest.param(["training.learning_rate=1e-5"], "learning_rate", id="low-learning-rate"),
        pytest.param(["training.epochs=5"], "epochs", id="many-epochs"),
        pytest.param(["lora.target_modules=[q_proj,v_proj]"], "target_modules", id="attention"),
        pytest.param(["training.max_grad_norm=0"], "max_grad_norm", id="no-clipping"),
    ],
)
def test_doubtful_choice_gives_one_warning(overrides: list[str], mentions: str) -> None:
    """A legal but doubtful choice loads, with exactly one PeftkitWarning that names the field."""
    caught = recorded_warnings(lambda: recipes.load("json-output", overrides=overrides))
    ours = [w for w in caught if issubclass(w.category, PeftkitWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert mentions in str(ours[0].message)


@pytest.mark.parametrize(
    ("overrides", "doubts"),
    [
        pytest.param(["training.learning_rate=5e-5"], [], id="lowest-usual-rate"),
        pytest.param(
            ["training.learning_rate=4.9e-5"],
            ["learning_rate=4.9e-05 is outside"],
            id="below-the-usual-rates",
        ),
        pytest.param(["training.learning_rate=1e-3"], [], id="highest-usual-rate"),
        pytest.param(
            ["training.learning_rate=1.1e-3"],
            ["learning_rate=0.0011 is outside"],
            id="above-the-usual-rates",
        ),
        pytest.param(
            ["method=full", "training.learning_rate=1e-4"] + FULL_COPY_OVERRIDE,
            [],
            id="full-fine-tuning-rate",
        ),
        pytest.param(
            ["method=full", "training.learning_rate=2e-4"] + FULL_COPY_OVERRIDE,
            ["learning_rate=0.0002 is outside the usual [1e-06, 0.0001] for method 'full'"],
            id="lora-rate-for-full-fine-tuning",
        ),
        pytest.param(["training.epochs=3"], [], id="three-epochs"),
        pytest.param(
            ["training.epochs=3.5"],
            ["training.epochs=3.5: more than 3 passes"],
            id="more-than-three-epochs",
        ),
        pytest.param(
            ["training.epochs=5", "training.max_steps=40"], [], id="epochs-when-max-steps-decides"
        ),
        pytest.param(
            ["training.max_steps=5", "training.logging_steps=5", "training.eval_steps=5"],
            [],
            id="cadences-as-long-as-the-run",
        ),
        pytest.param(
            ["training.max_steps=5", "training.logging_steps=6", "training.eval_steps=5"],
            ["training.logging_steps=6 is more than the 5 steps of the run"],
            id="logging-longer-than-the-run",
        ),
        pytest.param(
            ["training.max_steps=5", "training.logging_steps=1", "training.eval_steps=6"],
            ["evaluations every 6 steps never come in a run of 5 steps"],
            id="evaluations-longer-than-the-run",
        ),
        pytest.param(
            [
                "training.max_steps=5",
                "training.logging_steps=1",
                "training.eval_steps=6",
                "training.eval_strategy=epoch",
            ],
            [],
            id="evaluations-every-epoch",
        ),
        pytest.param(["training.logging_steps=1000"], [], id="cadence-when-epochs-decide"),
    ],
)
def test_doubts_at_their_boundaries(overrides: list[str], doubts: list[str]) -> None:
    """Each doubt warns past its boundary and not at it, once, with what it found."""
    caught = recorded_warnings(lambda: recipes.load("json-output", overrides=overrides))
    said = [str(w.message) for w in caught if issubclass(w.category, PeftkitWarning)]
    assert len(said) == len(doubts), said
    for message, start in zip(said, doubts, strict=True):
        assert start in message, message


@pytest.mark.parametrize("name", sorted(recipes.BUILTIN))
def test_builtin_recipes_load_without_any_warning(name: str) -> None:
    """The shipped recipes are the recommended settings: loading one warns about nothing."""
    caught = recorded_warnings(lambda: recipes.load(name))
    assert caught == [], [f"{w.category.__name__}: {w.message}" for w in caught]


# --- renamed keys -------------------------------------------------------------------------------

RENAMED = [
    pytest.param("max_seq_length", "max_length", 100, id="max_seq_length"),
    pytest.param("warmup_ratio", "warmup_steps", 0.1, id="warmup_ratio"),
    pytest.param("evaluation_strategy", "eval_strategy", "epoch", id="evaluation_strategy"),
    pytest.param(
        "gradient_checkpointing", "activation_checkpointing", True, id="gradient_checkpointing"
    ),
]


@pytest.mark.parametrize(("old", "new", "value"), RENAMED)
def test_renamed_key_is_mapped_with_a_deprecation_warning(old: str, new: str, value: Any) -> None:
    """An old SFTConfig/TrainingArguments key still works: it warns and sets the new field."""
    with pytest.warns(PeftkitDeprecationWarning, match=f"'{old}' was renamed to '{new}'"):
        recipe = recipes.from_dict({"recipe": "json-output", "training": {old: value}})
    assert getattr(recipe.training, new) == value


@pytest.mark.parametrize(("old", "new", "value"), RENAMED)
def test_renamed_key_works_as_an_override(old: str, new: str, value: Any) -> None:
    """``training.<old>=v`` on a built-in (whose file spells the new key) wins over the file's
    value instead of clashing with it."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    with pytest.warns(PeftkitDeprecationWarning):
        recipe = recipes.load("json-output", overrides=[f"training.{old}={text}"])
    assert getattr(recipe.training, new) == value


def test_deprecation_warning_is_a_peftkit_warning_and_a_future_warning() -> None:
    """Callers filtering PeftkitWarning catch renames too, and Python shows them by default."""
    assert issubclass(peftkit.PeftkitDeprecationWarning, PeftkitWarning)
    assert issubclass(peftkit.PeftkitDeprecationWarning, FutureWarning)


# --- overrides ----------------------------------------------------------------------------------


def test_override_values_are_parsed_as_yaml() -> None:
    """Overrides are YAML values validated like the file: numbers, lists and the model string."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PeftkitWarning)  # attention-only targets warn
        recipe = recipes.load(
            "json-output",
            overrides=[
                "training.learning_rate=1e-4",
                "lora.target_modules=[q_proj,v_proj]",
                "model=foo/bar",
            ],
        )
    assert recipe.training.learning_rate == 1e-4
    assert isinstance(recipe.training.learning_rate, float)
    assert recipe.lora.target_modules == ("q_proj", "v_proj")
    assert recipe.model.name == "foo/bar"


def test_override_of_a_field_of_the_model_shorthand(tmp_path: Path) -> None:
    """``model.dtype=...`` works on a file that wrote ``model: org/name``, keeping the name."""
    path = tmp_path / RECIPE_FILE
    path.write_text(VALID_WITH_MODEL_STRING, encoding="utf-8")
    recipe = recipes.load(path, overrides=["model.dtype=float16"])
    assert (recipe.model.name, recipe.model.dtype) == ("org/name", "float16")


@pytest.mark.parametrize(
    ("override", "path"),
    [
        pytest.param("lora.r=big", "lora.r", id="r-word"),
        pytest.param("training.packing=maybe", "training.packing", id="packing-word"),
        pytest.param("lora.alpa=3", "lora.alpa", id="unknown-key"),
        pytest.param("method=qlora", "quantization.bits", id="breaks-a-rule"),
    ],
)
def test_invalid_override_is_a_validation_error_naming_the_field(override: str, path: str) -> None:
    """A bad override value fails exactly like the same value in the file."""
    with pytest.raises(ValidationError) as info:
        recipes.load("json-output", overrides=[override])
    assert path in [p.path for p in problems(info.value)]


# --- construction from Python -------------------------------------------------------------------


def test_model_shorthand_in_python() -> None:
    """``JsonOutput(model="org/name")`` is ``model: {name: org/name}``."""
    assert recipes.JsonOutput(model="org/name").model.name == "org/name"


@pytest.mark.parametrize(
    "load",
    [
        pytest.param(lambda: recipes.load("qlora-budget", overrides=["lora.r=32"]), id="override"),
        pytest.param(
            lambda: recipes.from_dict({"recipe": "qlora-budget", "lora": {"r": 32}}),
            id="partial-section",
        ),
    ],
)
def test_recipe_defaults_survive_a_partial_section(load: Any) -> None:
    """Setting one lora field keeps the recipe's own alpha and dropout, not the section's
    generic defaults (32.0 and 0.05)."""
    lora = load().lora
    assert (lora.r, lora.alpha, lora.dropout) == (32, 16.0, 0.1)


def test_loaded_recipe_is_immutable() -> None:
    """Recipes are frozen at every level; data flows one way, into the builders."""
    recipe = recipes.load("json-output")
    with pytest.raises(ValidationError):
        recipe.method = "full"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        recipe.lora.r = 8  # type: ignore[misc]
    assert recipe == recipes.load("json-output")


@pytest.mark.parametrize(
    ("override", "example"),
    [("training.report_to=7", "[none]"), ("lora.modules_to_save=7", "[]")],
)
def test_a_list_fix_shows_the_fields_own_default(override: str, example: str) -> None:
    """The example in a "write a list" fix is the field's default, which loads as written
    (it once named LoRA modules for every list field)."""
    with pytest.raises(ValidationError) as raised:
        recipes.load("json-output", [override])
    assert f"write a list, e.g. {example}" in describe(raised.value)
    field = override.split("=")[0]
    recipes.load("json-output", [f"{field}={example}"])
