"""Bad input for ``import``: configs that cannot be read or converted, outputs that would replace
something, and results that are not valid recipes. Each ends as a user error with nothing
written; a fix the message suggests, passed as written, makes the import work.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus import Case, run_case
from fix_reader import fix_of, overrides
from train_helpers import run_main

TRL = (
    "model_name_or_path: Qwen/Qwen2.5-0.5B\n"
    "learning_rate: 2.0e-4\n"
    "use_peft: true\n"
    "lora_r: 16\n"
    "output_dir: out\n"
)
"""A small `trl sft --config` file that imports cleanly."""
C = {"c.yaml": TRL}


def dangling_output(folder: Path) -> None:
    (folder / "c.peftkit.yaml").symlink_to(folder / "gone" / "x.yaml")


IMPORTS = [
    # --- the config cannot be read ---
    Case("import-missing", ("import", "nope.yaml"), ("nope.yaml", "no such file"), {}),
    Case("import-a-folder", ("import", "c.yaml"), ("c.yaml", "folder"), {"c.yaml/x": "a"}),
    Case("import-non-utf8", ("import", "c.yaml"), ("c.yaml", "UTF-8", "line 1"),
         {"c.yaml": b"base_model: caf\xe9\n"}),
    Case("import-not-yaml", ("import", "c.yaml"), ("c.yaml", "not valid YAML", "line"),
         {"c.yaml": "lora_r: [8\n"}),
    Case("import-tab-indent", ("import", "c.yaml"), ("c.yaml", "not valid YAML"),
         {"c.yaml": "datasets:\n\t- path: x\n"}),
    Case("import-duplicate-key", ("import", "c.yaml"), ("'lora_r'", "line 6", "line 4"),
         {"c.yaml": TRL + "lora_r: 32\n"}),
    Case("import-alias-bomb", ("import", "c.yaml"), ("aliases",),
         {"c.yaml": "a: &a [1,2,3]\n" + "".join(
             f"{c}: &{c} [{', '.join([f'*{p}'] * 3)}]\n"
             for p, c in zip("abcdefgh", "bcdefghi", strict=True))}),
    # --- the config is not a TRL or axolotl mapping ---
    Case("import-empty", ("import", "c.yaml"), ("c.yaml", "empty"), {"c.yaml": ""}),
    Case("import-only-comments", ("import", "c.yaml"), ("c.yaml", "empty"),
         {"c.yaml": "# learning_rate: 1e-4\n"}),
    Case("import-a-list", ("import", "c.yaml"), ("c.yaml", "mapping", "a list"),
         {"c.yaml": "- lora_r: 8\n"}),
    Case("import-a-string", ("import", "c.yaml"), ("c.yaml", "mapping", "a str"),
         {"c.yaml": "lora_r\n"}),
    Case("import-a-recipe", ("import", "r.yaml"), ("r.yaml", "peftkit recipe already",
                                                   "peftkit validate r.yaml"),
         {"r.yaml": "recipe: json-output\nlora: {r: 8}\n"}),
    Case("import-nothing-known", ("import", "c.yaml"), ("c.yaml", "none of its keys"),
         {"c.yaml": "epochs: 3\nlora: {r: 8}\n"}),
    # --- the output would replace something ---
    Case("import-default-output-exists", ("import", "c.yaml"), ("c.peftkit.yaml", "exists"),
         {**C, "c.peftkit.yaml": "mine\n"}),
    Case("import-output-exists", ("import", "c.yaml", "--output", "mine.yaml"),
         ("mine.yaml", "exists"), {**C, "mine.yaml": "mine\n"}),
    Case("import-onto-the-config", ("import", "c.yaml", "--output", "c.yaml"),
         ("c.yaml", "exists"), C),
    Case("import-output-is-a-folder", ("import", "c.yaml", "--output", "d"), ("d", "exists"),
         {**C, "d/keep.txt": "keep"}),
    Case("import-output-under-a-file", ("import", "c.yaml", "--output", "f.txt/r.yaml"),
         ("f.txt", "not a folder"), {**C, "f.txt": "keep"}),
    Case("import-output-dangling-link", ("import", "c.yaml"), ("c.peftkit.yaml", "exists"),
         C, dangling_output),
    Case("import-output-empty", ("import", "c.yaml", "--output", ""), ("--output", "empty"), C),
    # --- the result is not a valid recipe ---
    Case("import-scale-out-of-range", ("import", "c.yaml"),
         ("imported from c.yaml", "lora.alpha", "lora.alpha=16"),
         {"c.yaml": "lora_r: 8\nlora_alpha: 1024\n"}),
    Case("import-text-data-for-json-output", ("import", "c.yaml", "--recipe", "json-output"),
         ("data.format", "data.format=prompt-completion"),
         {"c.yaml": "base_model: HuggingFaceTB/SmolLM2-135M\n"
                    "datasets: [{path: corpus.jsonl, type: completion}]\n"}),
    Case("import-override-bad-value", ("import", "c.yaml", "lora.r=0"), ("lora.r",), C),
    Case("import-override-no-equals", ("import", "c.yaml", "lora.r"), ("lora.r",), C),
    Case("import-override-foreign-key", ("import", "c.yaml", "num_train_epochs=2"),
         ("did you mean 'training.epochs'", "training.epochs=2"), C),
    # --- the command line ---
    Case("import-unknown-recipe", ("import", "c.yaml", "--recipe", "jsonoutput"),
         ("--recipe", "did you mean 'json-output'"), C),
    Case("import-empty-name", ("import", ""), ("FILE", "empty"), {}),
    Case("import-missing-argument", ("import",), ("Missing argument",), {}),
]  # fmt: skip


@pytest.mark.parametrize("case", [c.param() for c in IMPORTS])
def test_bad_import_input(case: Case, tmp_path: Path, monkeypatch, tiny_model_dir) -> None:
    run_case(case, tmp_path, monkeypatch, tiny_model_dir)


FIXABLE = [c for c in IMPORTS if c.id in {
    "import-scale-out-of-range",
    "import-text-data-for-json-output",
    "import-override-foreign-key",
}]  # fmt: skip


@pytest.mark.parametrize("case", [c.param() for c in FIXABLE])
def test_the_suggested_fix_makes_the_import_work(
    case: Case, tmp_path: Path, monkeypatch, tiny_model_dir: Path
) -> None:
    """Every alternative of the fix, passed as overrides exactly as written, makes the same
    command write a recipe (the bad override itself replaced by its fix)."""
    message = run_case(case, tmp_path, monkeypatch, tiny_model_dir)
    alternatives = overrides(fix_of(message))
    assert alternatives, f"nothing to apply in: {message}"
    args = [arg for arg in case.args if arg != "num_train_epochs=2"]
    for number, extra in enumerate(alternatives):
        output = f"fixed-{number}.yaml"
        code, out, err = run_main(monkeypatch, *args, *extra, "--output", output)
        assert code == 0, f"{' '.join(extra)} did not fix it:\n{err[-3000:]}"
        assert (tmp_path / output).is_file() and f"wrote {output}" in out
