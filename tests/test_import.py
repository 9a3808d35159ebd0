"""Coming from TRL or axolotl: their keys in a recipe, and ``peftkit import`` of their files.

The configs below use only keys those projects document: TRL's ``trl sft --config`` (SFTConfig,
TrainingArguments, ModelConfig, ScriptArguments) and axolotl's examples (examples/llama-3/
qlora.yml and lora-1b.yml, and a completion dataset). One table
(:mod:`peftkit.recipes.foreign_keys`) serves both the error message and the importer, so both
are checked against it: every fix the message suggests works as written, and every key of an
imported file is either in the recipe or listed with the reason.
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from fix_reader import ASSIGNMENT, fix_of, overrides
from pydantic import ValidationError
from recipe_fixes import apply, edits, found
from train_helpers import assert_user_error, peftkit_cli, run_main

from peftkit import PeftkitWarning, recipes
from peftkit.core.errors import Problem, ProblemsError, RecipeError, problems
from peftkit.recipes.foreign_keys import FOREIGN_KEYS, UNKNOWN_KEY, field_at, unknown_key_error
from peftkit.recipes.importing import convert, import_file
from peftkit.recipes.registry import ALL

TRL_SFT_CONFIG = """\
# trl sft --config sft_config.yaml
model_name_or_path: Qwen/Qwen2.5-0.5B
dataset_name: trl-lib/Capybara
learning_rate: 2.0e-4
num_train_epochs: 1
per_device_train_batch_size: 2
gradient_accumulation_steps: 8
gradient_checkpointing: true
max_length: 2048
use_peft: true
lora_r: 32
lora_alpha: 16
lora_dropout: 0.05
lora_target_modules: all-linear
load_in_4bit: true
output_dir: Qwen2.5-0.5B-SFT-QLoRA
logging_steps: 25
eval_strategy: "no"
bf16: true
report_to: none
"""

AXOLOTL_QLORA = """\
base_model: NousResearch/Meta-Llama-3-8B
model_type: AutoModelForCausalLM
tokenizer_type: AutoTokenizer

load_in_8bit: false
load_in_4bit: true
strict: false

datasets:
  - path: tatsu-lab/alpaca
    type: alpaca
dataset_prepared_path:
val_set_size: 0
output_dir: ./outputs/qlora-out

adapter: qlora
lora_model_dir:

sequence_len: 4096
sample_packing: true
pad_to_sequence_len: true

lora_r: 32
lora_alpha: 16
lora_dropout: 0.05
lora_target_modules:
lora_target_linear: true
lora_fan_in_fan_out:

wandb_project:
wandb_entity:
wandb_watch:
wandb_name:
wandb_log_model:

gradient_accumulation_steps: 4
micro_batch_size: 2
num_epochs: 4
optimizer: paged_adamw_32bit
lr_scheduler: cosine
learning_rate: 0.0002

train_on_inputs: false
group_by_length: false
bf16: auto
fp16:
tf32: false

gradient_checkpointing: true
early_stopping_patience:
resume_from_checkpoint:
local_rank:
logging_steps: 1
xformers_attention:
flash_attention: true

warmup_steps: 10
evals_per_epoch: 4
eval_table_size:
saves_per_epoch: 1
debug:
deepspeed:
weight_decay: 0.0
fsdp:
fsdp_config:
special_tokens:
  pad_token: "<|end_of_text|>"
"""

AXOLOTL_LORA_CHAT = """\
base_model: NousResearch/Llama-3.2-1B
load_in_8bit: false
load_in_4bit: false
datasets:
  - path: data/chats.jsonl
    type: chat_template
val_set_size: 0.1
output_dir: ./outputs/lora-out
adapter: lora
sequence_len: 2048
lora_r: 16
lora_alpha: 32
lora_dropout: 0.05
lora_target_modules:
  - gate_proj
  - down_proj
  - up_proj
  - q_proj
  - v_proj
  - k_proj
  - o_proj
wandb_project: llama-chat
gradient_accumulation_steps: 2
micro_batch_size: 2
num_epochs: 1
optimizer: adamw_8bit
lr_scheduler: cosine
learning_rate: 0.0002
train_on_inputs: false
bf16: auto
early_stopping_patience: 3
warmup_steps: 10
"""

AXOLOTL_COMPLETION = """\
base_model: HuggingFaceTB/SmolLM2-135M
adapter: lora
datasets:
  - path: corpus/contracts.jsonl
    type: completion
sequence_len: 1024
val_set_size: 0.05
lora_r: 64
lora_alpha: 128
train_on_inputs: false
micro_batch_size: 4
num_epochs: 1
learning_rate: 0.0002
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def quiet_convert(path: Path, *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PeftkitWarning)
        return convert(path, path.with_suffix(".out.yaml"), *args, **kwargs)


# --- peftkit import, as users run it ------------------------------------------------------------


def test_a_trl_sft_config_becomes_a_qlora_recipe(tmp_path: Path) -> None:
    """`trl sft --config` keys land in their sections with TRL's meaning; the keys with no place
    are listed with the reason; the file is written beside the config and validates."""
    write(tmp_path, "sft_config.yaml", TRL_SFT_CONFIG)
    run = peftkit_cli("import", "sft_config.yaml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    recipe = recipes.load(tmp_path / "sft_config.peftkit.yaml")
    assert recipe.recipe == "qlora-budget" and "load_in_4bit" in run.stdout
    assert (recipe.method, recipe.quantization.bits) == ("qlora", 4)
    assert recipe.model.name == "Qwen/Qwen2.5-0.5B"
    t = recipe.training
    assert (t.learning_rate, t.epochs, t.batch_size, t.gradient_accumulation_steps) == (
        2e-4,
        1,
        2,
        8,
    )
    assert (t.max_length, t.activation_checkpointing, t.logging_steps) == (2048, True, 25)
    assert (t.precision, t.eval_strategy, list(t.report_to)) == ("bf16", "no", ["none"])
    assert not recipe.callbacks.early_stopping.enabled and not recipe.callbacks.overfit.enabled
    assert (recipe.lora.r, recipe.lora.alpha, recipe.lora.dropout) == (32, 16, 0.05)
    assert recipe.lora.target_modules == "all-linear"
    not_mapped = run.stdout.split("not mapped")[1]
    for key, why in [
        ("dataset_name", "Hub dataset"),
        ("output_dir", "--output"),
        ("use_peft", "LoRA adapter"),
    ]:
        assert re.search(rf"^  {key}: .*{why}", not_mapped, flags=re.M), run.stdout
    assert "--data DATA" in run.stdout
    assert "peftkit validate sft_config.peftkit.yaml" in run.stdout
    assert peftkit_cli("validate", "sft_config.peftkit.yaml", cwd=tmp_path).returncode == 0


def test_the_axolotl_qlora_example_becomes_a_qlora_recipe(tmp_path: Path) -> None:
    """axolotl's examples/llama-3/qlora.yml: its names and value spellings (``bf16: auto``,
    ``val_set_size: 0``, ``lora_target_linear``) are converted; empty keys are named once."""
    write(tmp_path, "qlora.yml", AXOLOTL_QLORA)
    run = peftkit_cli("import", "qlora.yml", "--output", "out/llama.yaml", cwd=tmp_path)
    assert run.returncode == 2 and "saves_per_epoch" in run.stderr  # steps per epoch: data's
    run = peftkit_cli(
        "import", "qlora.yml", "training.save_steps=100", "--output", "out/llama.yaml",
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "axolotl config" in run.stdout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PeftkitWarning)  # epochs=4: a doubt, shown by the run
        recipe = recipes.load(tmp_path / "out" / "llama.yaml")
    assert recipe.recipe == "qlora-budget"
    assert recipe.model.name == "NousResearch/Meta-Llama-3-8B"
    t = recipe.training
    assert (t.max_length, t.packing, t.batch_size, t.gradient_accumulation_steps) == (
        4096,
        True,
        2,
        4,
    )
    assert (t.epochs, t.optimizer, t.lr_scheduler, t.warmup_steps) == (
        4,
        "paged_adamw_32bit",
        "cosine",
        10,
    )
    assert (t.precision, t.eval_fraction, t.eval_strategy) == ("auto", 0, "no")
    assert recipe.data.completion_only_loss is True  # train_on_inputs: false
    assert recipe.lora.target_modules == "all-linear"
    assert recipe.data.special_tokens.pad_token == "<|end_of_text|>"
    listed = run.stdout.split("not mapped")[1]
    for key in ("flash_attention", "pad_to_sequence_len", "datasets", "strict",
                "evals_per_epoch", "saves_per_epoch"):  # fmt: skip
        assert f"\n  {key}: " in listed, key
    assert "alpaca" in listed  # the dataset type needs converting
    assert "wandb_project" in run.stdout.split("empty, nothing to map:")[1]


def test_raw_text_data_chooses_domain_adaptation_with_the_local_path(tmp_path: Path) -> None:
    """A completion dataset is raw text: domain-adaptation, its local path as data.train_path;
    train_on_inputs has no meaning for raw text and is listed instead of breaking the recipe."""
    path = write(tmp_path, "config.yaml", AXOLOTL_COMPLETION)
    imported = quiet_convert(path)
    assert imported.recipe.recipe == "domain-adaptation"
    assert imported.recipe.data.train_path == "corpus/contracts.jsonl"
    assert imported.recipe.data.format == "text"
    assert imported.recipe.training.eval_fraction == 0.05
    skipped = {s.key: s.reason for s in imported.conversion.skipped}
    assert "raw text" in skipped["train_on_inputs"]
    assert "--data DATA" not in imported.summary()


def test_chat_data_without_quantization_is_a_custom_recipe(tmp_path: Path) -> None:
    """LoRA on chat data: the custom recipe (json-output only when asked), messages data, the
    listed target modules and axolotl's optimizer name; a wandb project reports to wandb."""
    path = write(tmp_path, "config.yaml", AXOLOTL_LORA_CHAT)
    imported = quiet_convert(path)
    recipe = imported.recipe
    assert recipe.recipe == "custom" and "--recipe json-output" in imported.why
    assert (recipe.method, recipe.quantization.bits) == ("lora", None)
    assert recipe.data.format == "messages" and recipe.data.train_path == "data/chats.jsonl"
    assert recipe.lora.target_modules == ("gate_proj", "down_proj", "up_proj") + (
        "q_proj",
        "v_proj",
        "k_proj",
        "o_proj",
    )
    assert recipe.training.optimizer == "adamw_8bit"
    assert recipe.training.eval_fraction == 0.1
    assert list(recipe.training.report_to) == ["wandb"]
    assert recipe.callbacks.early_stopping.patience == 3
    assert "WANDB_PROJECT" in imported.summary()


def test_recipe_option_and_overrides_win(tmp_path: Path) -> None:
    """--recipe picks the recipe; overrides apply last, as in `peftkit validate`."""
    path = write(tmp_path, "config.yaml", AXOLOTL_LORA_CHAT)
    imported = quiet_convert(path, "json-output", ["lora.r=8", "training.epochs=2"])
    assert imported.recipe.recipe == "json-output"
    assert (imported.recipe.lora.r, imported.recipe.training.epochs) == (8, 2)
    assert imported.why == "json-output, as --recipe asked"


def test_values_peftkit_cannot_take_and_contradictions_are_listed_not_written(
    tmp_path: Path,
) -> None:
    """A schedule peftkit lacks, a second precision, and a meaning implied by one key against
    one set explicitly by another: each is listed (or yields), and the recipe still validates."""
    text = (
        "model_name_or_path: Qwen/Qwen2.5-0.5B\n"
        "optim: adamw_bnb_8bit\n"
        "bf16: true\n"
        "fp16: true\n"
        "save_total_limit: 2\n"
        "save_strategy: best\n"
        "max_steps: -1\n"
    )
    path = write(tmp_path, "config.yaml", text)
    imported = quiet_convert(path)
    skipped = {s.key: s.reason for s in imported.conversion.skipped}
    assert "bf16 sets training.precision" in skipped["fp16"]
    assert "not set" in skipped["max_steps"]
    t = imported.recipe.training
    assert (t.lr_scheduler, t.optimizer, t.precision) == ("cosine", "adamw_8bit", "bf16")
    assert (t.save, t.save_total_limit) == ("best", 2)  # the limit implies steps; best is explicit
    with pytest.raises(ProblemsError, match=r"training\.lr_scheduler does not take"):
        quiet_convert(
            write(tmp_path, "lacking.yaml", text + "lr_scheduler_type: cosine_with_min_lr\n")
        )


def test_the_written_file_loads_back_equal_and_says_what_was_left_out(tmp_path: Path) -> None:
    path = write(tmp_path, "qlora.yml", AXOLOTL_QLORA)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PeftkitWarning)
        imported = import_file(path, overrides=["training.save_steps=100"])
        again = recipes.load(imported.output)
    assert imported.output == tmp_path / "qlora.peftkit.yaml"
    assert again == imported.recipe
    header = imported.output.read_text(encoding="utf-8").split("recipe: qlora-budget")[0]
    assert "from " + str(path) in header and "axolotl's" in header
    for skipped in imported.conversion.skipped:
        assert f"#   {skipped.key}: " in header


def test_an_invalid_result_is_refused_and_its_fix_works_as_an_override(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "lora_r: 8\nlora_alpha: 1024\n")
    with pytest.raises(RecipeError) as info:
        quiet_convert(path)
    message = str(info.value)
    assert "imported from" in message and "lora.alpha" in message
    (fix,) = overrides(fix_of(message))
    assert quiet_convert(path, None, fix).recipe.lora.alpha == 16
    assert not (tmp_path / "c.peftkit.yaml").exists()


# --- the same keys pasted into a recipe -------------------------------------------------------

SAMPLES: dict[str, Any] = {
    "learning_rate": 1e-4,
    "num_train_epochs": 2,
    "num_epochs": 2,
    "per_device_train_batch_size": 8,
    "micro_batch_size": 2,
    "gradient_accumulation_steps": 4,
    "max_length": 2048,
    "max_seq_length": 2048,
    "sequence_len": 4096,
    "packing": True,
    "sample_packing": True,
    "lr_scheduler_type": "cosine",
    "lr_scheduler": "linear",
    "warmup_ratio": 0.1,
    "warmup_steps": 10,
    "evals_per_epoch": 4,
    "saves_per_epoch": 1,
    "max_grad_norm": 0.3,
    "weight_decay": 0.01,
    "gradient_checkpointing": True,
    "seed": 7,
    "logging_steps": 5,
    "eval_steps": 50,
    "save_steps": 100,
    "run_name": "my-run",
    "wandb_name": "my-run",
    "model_name_or_path": "Qwen/Qwen2.5-0.5B",
    "base_model": "NousResearch/Meta-Llama-3-8B",
    "dtype": "bfloat16",
    "torch_dtype": "bfloat16",
    "trust_remote_code": True,
    "attn_implementation": "sdpa",
    "lora_r": 32,
    "lora_alpha": 64,
    "lora_dropout": 0.1,
    "lora_modules_to_save": ["embed_tokens"],
    "use_rslora": True,
    "peft_use_rslora": True,
    "use_dora": True,
    "peft_use_dora": True,
    "bnb_4bit_quant_type": "fp4",
    "use_bnb_nested_quant": False,
    "bnb_4bit_quant_storage": "bfloat16",
    "completion_only_loss": True,
    "early_stopping_patience": 5,
    "load_best_model_at_end": True,
    "optim": "adamw_bnb_8bit",
    "optimizer": "paged_adamw_8bit",
    "max_steps": 100,
    "bf16": True,
    "fp16": True,
    "eval_strategy": "no",
    "evaluation_strategy": "epoch",
    "val_set_size": 0.05,
    "report_to": "tensorboard",
    "wandb_project": "my-project",
    "save_strategy": "steps",
    "save_total_limit": 2,
    "use_peft": False,
    "adapter": "qlora",
    "lora_target_modules": ["q_proj", "v_proj"],
    "lora_target_linear": True,
    "load_in_4bit": True,
    "load_in_8bit": True,
    "train_on_inputs": False,
    "assistant_only_loss": True,
    "metric_for_best_model": "loss",
    "greater_is_better": False,
    "fsdp": "full_shard auto_wrap",
    "dataset_name": "data/train.jsonl",
    "datasets": [{"path": "data/train.jsonl", "type": "chat_template"}],
    "pretraining_dataset": "data/corpus.jsonl",
    "chat_template": "chatml",
    "chat_template_jinja": "{{messages[0]['content']}}",
    "chat_template_path": "templates/chat.jinja",
    "special_tokens": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "eos_token": "<|im_end|>",
    "pad_token": "<pad>",
    "default_system_message": "You are a helpful assistant.",
}
"""A realistic value for every key with a peftkit home."""
EXPECTED_HOME = {
    "learning_rate": "training.learning_rate",
    "num_train_epochs": "training.epochs",
    "per_device_train_batch_size": "training.batch_size",
    "lora_r": "lora.r",
    "lora_alpha": "lora.alpha",
    "lora_target_modules": "lora.target_modules",
    "base_model": "model.name",
    "model_name_or_path": "model.name",
    "gradient_checkpointing": "training.activation_checkpointing",
    "max_seq_length": "training.max_length",
    "sequence_len": "training.max_length",
    "load_in_4bit": "quantization.bits",
    "lr_scheduler_type": "training.lr_scheduler",
    "optim": "training.optimizer",
}
"""The homes the issue names, as the table must give them."""


def _problem_of(data: dict[str, Any], key: str) -> Problem:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PeftkitWarning)
        with pytest.raises(ValidationError) as info:
            recipes.from_dict(data)
    (problem,) = [p for p in problems(info.value) if p.path == key]
    return problem


HOMED = sorted(name for name, key in FOREIGN_KEYS.items() if key.home is not None)


@pytest.mark.parametrize("key", HOMED)
def test_a_pasted_key_says_where_it_lives_and_its_fix_works(key: str) -> None:
    """At the top of a recipe, each TRL or axolotl key names its home ("did you mean"), with the
    value converted; its fix, applied as written, removes the problem, and following the first
    fixes ends in a valid recipe."""
    data = {"recipe": "json-output", key: SAMPLES[key]}
    problem = _problem_of(data, key)
    assert f"did you mean '{FOREIGN_KEYS[key].home}'?" in problem.rule
    choices = edits(problem)
    assert choices, problem
    for alternative in choices:
        assert (problem.path, problem.rule) not in found(apply(data, alternative)), alternative
    assert follow_fixes(data) == set()


def follow_fixes(data: dict[str, Any], rounds: int = 3) -> set[tuple[str, str]]:
    """The problems left after following the first fix of each problem, round after round (a
    fix may reveal a rule that depends on the new value)."""
    for _ in range(rounds):
        if not found(data):
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PeftkitWarning)
            try:
                recipes.from_dict(data)
            except ValidationError as error:
                for each in problems(error):
                    data = apply(data, edits(each)[0])
    return found(data)


def test_the_issue_s_keys_have_the_homes_it_names() -> None:
    assert {k: FOREIGN_KEYS[k].home for k in EXPECTED_HOME} == EXPECTED_HOME
    problem = _problem_of({"recipe": "custom", "load_in_4bit": True}, "load_in_4bit")
    assert "quantization.bits=4" in problem.fix and "method=qlora" in problem.fix
    problem = _problem_of({"recipe": "qlora-budget", "load_in_4bit": True}, "load_in_4bit")
    assert "method=" not in problem.fix  # qlora-budget is QLoRA already
    problem = _problem_of({"recipe": "json-output", "num_train_epochs": 3}, "num_train_epochs")
    assert problem.fix == "set training.epochs=3 instead of num_train_epochs"


def test_a_key_without_a_home_says_why_and_a_bad_value_says_what_fits() -> None:
    problem = _problem_of({"recipe": "json-output", "output_dir": "out"}, "output_dir")
    assert "--output" in problem.rule and problem.fix == "remove it"
    problem = _problem_of(
        {"recipe": "json-output", "lr_scheduler_type": "cosine_with_min_lr"}, "lr_scheduler_type"
    )
    assert "did you mean 'training.lr_scheduler'" in problem.rule and "'cosine'" in problem.rule
    assert problem.fix.startswith("remove it")


def test_the_table() -> None:
    """Over a hundred keys; none is a recipe's own key; every home exists in every recipe; a
    note never looks like an assignment (a fix reader would apply it); the samples cover every
    key with a home."""
    assert len(FOREIGN_KEYS) >= 100
    for name, kind in ALL.items():
        assert not set(FOREIGN_KEYS) & set(kind.model_fields), name
        assert all(field_at(kind, f.home) for f in FOREIGN_KEYS.values() if f.home), name
    assert set(SAMPLES) == set(HOMED)
    for foreign in FOREIGN_KEYS.values():
        for value in (SAMPLES.get(foreign.name), "x", 0, False, True):
            note = foreign.translate(value).note
            assert not ASSIGNMENT.search(note), (foreign.name, note)


@pytest.mark.parametrize("value", [None, [], {}, "", "x", 1.5, -1, True, [{"a": 1}], {"p": 1}])
def test_any_value_gives_a_message_never_a_crash(value: Any) -> None:
    """Whatever the value, each foreign key gets a problem at its own place, holding the value
    it was given, with a rule and a fix that name the key and, where it has one, its home."""
    for name, foreign in FOREIGN_KEYS.items():
        for kind in ALL.values():
            error = unknown_key_error(kind, name, value)
            assert error["loc"] == (name,) and error["input"] is value
            assert error["type"].type == UNKNOWN_KEY
            rule, fix = error["type"].context["rule"], error["type"].context["fix"]
            assert rule.strip() and fix.strip() and error["type"].message() == rule
            assert name in rule + fix, (name, rule, fix)
            assert foreign.home is None or foreign.home in rule + fix, (name, rule, fix)


def test_a_dotted_override_gets_the_same_message_and_its_fix_works(monkeypatch) -> None:
    code, _, err = run_main(
        monkeypatch, "validate", "json-output", "learning_rate=1e-4", "num_train_epochs=2"
    )
    assert_user_error(code, err, "did you mean 'training.learning_rate'", "training.epochs=2")
    fixes = [item for block in err.split("fix:  ")[1:] for item in overrides(block)[0]]
    assert fixes == ["training.learning_rate=0.0001", "training.epochs=2"]
    code, _, err = run_main(monkeypatch, "validate", "json-output", *fixes)
    assert code == 0, err


def test_an_override_of_the_home_replaces_the_pasted_key(tmp_path: Path) -> None:
    """`peftkit validate FILE training.learning_rate=1e-4` works as the fix says, even with the
    TRL key still in the file: the override wins, as it does over a section's old spelling."""
    path = write(tmp_path, "r.yaml", "recipe: json-output\nlearning_rate: 3.0e-4\nbf16: true\n")
    recipe = recipes.load(path, ["training.learning_rate=1e-4", "training.precision=bf16"])
    assert (recipe.training.learning_rate, recipe.training.precision) == (1e-4, "bf16")


def test_a_whole_foreign_file_given_as_a_recipe_points_to_import(tmp_path: Path) -> None:
    path = write(tmp_path, "sft_config.yaml", TRL_SFT_CONFIG)
    with pytest.raises(ValidationError, match="peftkit import FILE"):
        recipes.load(path)


def test_import_imports_nothing_heavy(tmp_path: Path) -> None:
    write(tmp_path, "qlora.yml", AXOLOTL_QLORA)
    run = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "peftkit",
            "import",
            "qlora.yml",
            "training.save_steps=100",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in run.stderr.splitlines()
        if line.startswith("import time:")
    }
    heavy = {"torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "accelerate"}
    assert "yaml" in imported and not imported & heavy, sorted(imported & heavy)


# --- chat templates and special tokens -----------------------------------------------------------

AXOLOTL_CHAT = """\
base_model: NousResearch/Meta-Llama-3-8B-Instruct
model_type: LlamaForCausalLM
tokenizer_type: AutoTokenizer

load_in_8bit: true
load_in_4bit: false

chat_template: llama3
datasets:
  - path: data/chats.jsonl
    type: chat_template
    field_messages: messages
    message_property_mappings:
      role: role
      content: content
    roles_to_train: ["assistant"]
default_system_message: You are a careful assistant.
dataset_prepared_path: last_run_prepared
val_set_size: 0.05
output_dir: ./outputs/lora-out

sequence_len: 4096
sample_packing: false
pad_to_sequence_len: true

adapter: lora
lora_r: 32
lora_alpha: 16
lora_dropout: 0.05
lora_target_linear: true

gradient_accumulation_steps: 4
micro_batch_size: 2
num_epochs: 1
optimizer: adamw_bnb_8bit
lr_scheduler: cosine
learning_rate: 0.0002
train_on_inputs: false
bf16: auto
gradient_checkpointing: true
logging_steps: 1
flash_attention: true
warmup_steps: 10
eval_steps: 50
save_steps: 200
weight_decay: 0.0
special_tokens:
  pad_token: <|end_of_text|>
  eos_token: <|eot_id|>
tokens:
  - <|reserved_special_token_0|>
"""
"""axolotl's examples/llama-3/instruct-lora-8b.yml, with a system message and both tokens, and
its per-epoch cadences written in steps (peftkit refuses per-epoch ones: test_import_meaning)."""


def test_an_axolotl_chat_config_keeps_its_template_and_special_tokens(tmp_path: Path) -> None:
    write(tmp_path, "chat.yml", AXOLOTL_CHAT)
    run = peftkit_cli("import", "chat.yml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    recipe = recipes.load(tmp_path / "chat.peftkit.yaml")
    data = recipe.data
    assert (data.format, data.chat_template) == ("messages", "llama3")
    assert data.special_tokens.given() == {
        "eos_token": "<|eot_id|>",
        "pad_token": "<|end_of_text|>",
    }
    assert data.system_prompt == "You are a careful assistant."
    assert data.completion_only_loss is True  # train_on_inputs: false: the answers only
    mapped, listed = run.stdout.split("not mapped")
    assert 'chat_template: "llama3" -> data.chat_template=llama3' in mapped
    assert "data.special_tokens.eos_token=" in mapped and "data.special_tokens.pad_token=" in mapped
    assert "\n  tokens: " in listed and "adds no token" in listed


def test_an_inline_jinja_template_and_other_names(tmp_path: Path) -> None:
    """axolotl's `chat_template: jinja` with the text in chat_template_jinja; a template name
    peftkit has no built-in for is listed with what to do; the tokenizer's default is ours."""
    jinja = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    config = AXOLOTL_CHAT.replace("chat_template: llama3", "chat_template: jinja")
    path = write(tmp_path, "a.yml", config + f"chat_template_jinja: {jinja!r}\n")
    imported = quiet_convert(path)
    assert imported.recipe.data.chat_template == jinja
    skipped = {s.key: s.reason for s in imported.conversion.skipped}
    assert "chat_template_jinja" in skipped["chat_template"]
    for name, words in (("gemma", "Jinja file"), ("tokenizer_default", "own chat template")):
        path = write(tmp_path, f"{name}.yml", AXOLOTL_CHAT.replace("llama3", name, 1))
        imported = quiet_convert(path)
        assert imported.recipe.data.chat_template is None
        assert words in {s.key: s.reason for s in imported.conversion.skipped}["chat_template"]


def test_trl_s_eos_token_and_chat_template_path(tmp_path: Path) -> None:
    config = TRL_SFT_CONFIG + "eos_token: <|im_end|>\nchat_template_path: chat.jinja\n"
    imported = quiet_convert(write(tmp_path, "sft.yaml", config))
    assert imported.recipe.data.special_tokens.eos_token == "<|im_end|>"
    assert imported.recipe.data.chat_template == "chat.jinja"
    cloned = TRL_SFT_CONFIG + "chat_template_path: Qwen/Qwen3-0.6B\n"
    imported = quiet_convert(write(tmp_path, "clone.yaml", cloned))
    assert imported.recipe.data.chat_template is None
    reason = {s.key: s.reason for s in imported.conversion.skipped}["chat_template_path"]
    assert "Jinja file" in reason
