"""Bad recipes and bad overrides for ``validate``, ``show`` and ``new``: files that are not UTF-8,
not readable, not YAML, with duplicate keys or sections, hostile sizes, and values YAML or
pydantic would silently reinterpret.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus import Case, run_case

J = "recipe: json-output\n"

RECIPES = [
    # --- files that cannot be read as text ---
    Case("non-utf8", ("validate", "r.yaml"), ("r.yaml", "UTF-8", "line 2"),
         {"r.yaml": b"recipe: json-output\nmodel: caf\xe9\n"}),
    Case("utf16", ("validate", "r.yaml"), ("r.yaml", "UTF-8"),
         {"r.yaml": J.encode("utf-16")}),
    Case("binary", ("validate", "r.yaml"), ("r.yaml", "UTF-8"),
         {"r.yaml": bytes(range(256))}),
    Case("a-folder", ("validate", "r.yaml"), ("r.yaml", "folder"), {"r.yaml/x": "a"}),
    Case("missing", ("validate", "nope.yaml"), ("nope.yaml", "no such file"), {}),
    Case("empty", ("validate", "r.yaml"), ("r.yaml", "empty"), {"r.yaml": ""}),
    Case("only-spaces", ("validate", "r.yaml"), ("r.yaml", "empty"), {"r.yaml": "   \n\n"}),
    Case("a-list", ("validate", "r.yaml"), ("r.yaml", "mapping"), {"r.yaml": "- a\n- b\n"}),
    Case("a-string", ("validate", "r.yaml"), ("r.yaml", "mapping"), {"r.yaml": "hello\n"}),
    Case("a-number", ("validate", "r.yaml"), ("r.yaml", "mapping"), {"r.yaml": "42\n"}),
    Case("bad-indent", ("validate", "r.yaml"), ("r.yaml", "line 4"),
         {"r.yaml": J + "lora:\n  r: 8\n   alpha: 16\n"}),
    Case("tab-indent", ("validate", "r.yaml"), ("r.yaml", "not valid YAML"),
         {"r.yaml": J + "lora:\n\tr: 8\n"}),
    Case("unclosed-bracket", ("validate", "r.yaml"), ("r.yaml", "line"),
         {"r.yaml": J + "lora: {r: 8\n"}),
    Case("two-documents", ("validate", "r.yaml"), ("r.yaml",),
         {"r.yaml": J + "---\n" + J}),
    Case("python-tag", ("validate", "r.yaml"), ("r.yaml",),
         {"r.yaml": J + "x: !!python/object/apply:os.system ['true']\n"}),
    # --- duplicates: YAML would keep the last silently ---
    Case("duplicate-key", ("validate", "r.yaml"), ("line 4", "line 3", "'r'"),
         {"r.yaml": J + "lora:\n  r: 8\n  r: 16\n"}),
    Case("duplicate-section", ("validate", "r.yaml"), ("line 4", "line 2", "'lora'", "merge"),
         {"r.yaml": J + "lora: {r: 8}\ntraining: {epochs: 1}\nlora: {alpha: 16}\n"}),
    Case("duplicate-recipe-key", ("validate", "r.yaml"), ("'recipe'", "line 2"),
         {"r.yaml": J + "recipe: qlora-budget\n"}),
    Case("duplicate-in-flow-mapping", ("validate", "r.yaml"), ("'r'", "line 2"),
         {"r.yaml": J + "lora: {r: 8, r: 16}\n"}),
    Case("duplicate-in-override", ("validate", "json-output", "lora={r: 8, r: 16}"),
         ("'r'", "override"), {}),
    # --- hostile sizes ---
    Case("alias-bomb", ("validate", "r.yaml"), ("aliases",),
         {"r.yaml": J + "a: &a [1,2,3]\n" + "".join(
             f"{c}: &{c} [{', '.join([f'*{p}'] * 3)}]\n"
             for p, c in zip("abcdefgh", "bcdefghi", strict=True))}),
    Case("many-unknown-keys", ("validate", "r.yaml"), ("500 problem(s)", "480 more"),
         {"r.yaml": J + "".join(f"key{i}: {i}\n" for i in range(500))}),
    Case("huge-value", ("validate", "r.yaml"), ("characters",),
         {"r.yaml": J + "model: {name: org/m, foo: '" + "x" * 100_000 + "'}\n"}),
    # --- values that would be silently reinterpreted ---
    Case("true-as-rank", ("validate", "json-output", "lora.r=true"), ("lora.r", "true/false"), {}),
    Case("false-as-epochs", ("validate", "r.yaml"), ("training.epochs", "true/false"),
         {"r.yaml": J + "training: {epochs: false}\n"}),
    Case("nan-learning-rate", ("validate", "json-output", "training.learning_rate=.nan"),
         ("training.learning_rate", "finite"), {}),
    Case("inf-threshold", ("validate", "json-output",
                           "callbacks.early_stopping.stopping_threshold=.inf"),
         ("stopping_threshold", "finite"), {}),
    Case("seed-too-big", ("validate", "json-output", "training.seed=4294967296"),
         ("training.seed", "4294967295"), {}),
    Case("negative-seed", ("validate", "json-output", "training.seed=-1"), ("training.seed",), {}),
    Case("float-rank", ("validate", "json-output", "lora.r=8.5"), ("lora.r",), {}),
    Case("string-targets", ("validate", "json-output", "lora.target_modules=q_proj"),
         ("lora.target_modules",), {}),
    Case("number-in-targets", ("validate", "json-output", "lora.target_modules=[q_proj, 5]"),
         ("lora.target_modules",), {}),
    Case("eval-strategy-maybe", ("validate", "json-output", "training.eval_strategy=maybe"),
         ("training.eval_strategy",), {}),
    Case("old-and-new-name", ("validate", "r.yaml"), ("max_seq_length", "max_length"),
         {"r.yaml": J + "training: {max_seq_length: 100, max_length: 200}\n"}),
    Case("mode-nonsense", ("validate", "json-output", "callbacks.early_stopping.mode=up"),
         ("callbacks.early_stopping.mode",), {}),
    Case("schema-not-a-mapping", ("validate", "json-output", "json_schema=[1]"),
         ("json_schema",), {}),
    Case("schema-invalid", ("validate", "r.yaml"), ("json_schema",),
         {"r.yaml": J + "json_schema: {type: 12}\n"}),
    Case("budget-gpu-unknown", ("validate", "qlora-budget", "budget.gpu=GTX1080"),
         ("budget.gpu",), {}),
    Case("budget-negative-memory", ("validate", "qlora-budget", "budget.gpu_memory_gb=-8"),
         ("budget.gpu_memory_gb",), {}),
    # --- overrides ---
    Case("override-no-equals", ("validate", "json-output", "lora.r"), ("lora.r",), {}),
    Case("override-empty-key", ("validate", "json-output", "=3"), ("=3",), {}),
    Case("override-empty-part", ("validate", "json-output", "lora..r=3"), ("lora..r=3",), {}),
    Case("override-bad-yaml", ("validate", "json-output", "lora.r=["), ("lora.r=[",), {}),
    Case("override-through-value", ("validate", "json-output", "model.name.x=1"),
         ("model.name.x=1",), {}),
    Case("override-unknown-section", ("validate", "json-output", "lorra.r=8"),
         ("lorra", "lora"), {}),
    Case("override-section-scalar", ("validate", "json-output", "lora=5"), ("lora",), {}),
    Case("recipe-name-typo", ("validate", "json-outptu"), ("json-output",), {}),
    Case("recipe-key-list", ("validate", "r.yaml"), ("recipe",),
         {"r.yaml": "recipe: [json-output]\n"}),
    Case("no-recipe-key", ("validate", "r.yaml"), ("recipe",), {"r.yaml": "lora: {r: 8}\n"}),
    Case("sexagesimal-epochs", ("validate", "json-output", "training.epochs=1:30"),
         ("training.epochs", "'1:30'"), {}),
    Case("word-as-epochs", ("validate", "domain-adaptation", "training.epochs=two"),
         ("training.epochs", "'two'", "a valid number", "e.g. 1.0"), {}),
    Case("builtin-name-and-a-file", ("validate", "json-output"), ("./json-output", "built-in"),
         {"json-output": "recipe: qlora-budget\n"}),
    Case("not-a-regular-file", ("validate", "/dev/null"), ("not a regular file",), {}),
    # --- show ---
    Case("show-unknown", ("show", "nope"), ("nope", "json-output"), {}),
    Case("show-bad-override", ("show", "json-output", "lora.r=0"), ("lora.r",), {}),
    Case("show-non-utf8", ("show", "r.yaml"), ("UTF-8",), {"r.yaml": b"recipe: \xff\n"}),
    # --- new: never overwrites, never writes half ---
    Case("new-exists", ("new", "mine.yaml"), ("mine.yaml", "exists"), {"mine.yaml": "mine\n"}),
    Case("new-onto-folder", ("new", "d"), ("d",), {"d/keep.txt": "keep"}),
    Case("new-parent-is-file", ("new", "f.txt/mine.yaml"), ("f.txt",), {"f.txt": "keep"}),
    Case("new-from-unknown", ("new", "mine.yaml", "--from", "nope"), ("nope",), {}),
    Case("new-from-bad-file", ("new", "mine.yaml", "--from", "bad.yaml"), ("recipe", "nope"),
         {"bad.yaml": "recipe: nope\n"}),
    Case("new-through-a-dangling-link", ("new", "link.yaml"), ("link.yaml", "exists"),
         setup=lambda folder: (folder / "link.yaml").symlink_to(folder / "gone" / "x.yaml")),
    Case("new-empty-name", ("new", ""), ("FILE", "empty"), {}),
    # --- the command line itself ---
    Case("unknown-command", ("valdate", "json-output"), ("valdate",), {}),
    Case("unknown-option", ("validate", "json-output", "--strict"), ("--strict",), {}),
    Case("missing-argument", ("validate",), ("Missing argument", "recipe"), {}),
]  # fmt: skip


@pytest.mark.parametrize("case", [c.param() for c in RECIPES])
def test_bad_recipe_input(case: Case, tmp_path: Path, monkeypatch, tiny_model_dir) -> None:
    run_case(case, tmp_path, monkeypatch, tiny_model_dir)


def test_yes_and_no_mean_what_the_user_wrote(tmp_path: Path) -> None:
    """``eval_strategy: no`` is the string "no" (YAML 1.1 would read False), and ``yes``/``no``
    still switch booleans."""
    from train_helpers import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(
        J + "training: {eval_strategy: no}\n"
        "callbacks: {early_stopping: {enabled: no}, overfit: {enabled: off}}\n"
        "lora: {use_rslora: yes, alpha: 8}\n"
    )
    recipe = load_recipe(path, [])
    assert recipe.training.eval_strategy == "no"
    assert recipe.callbacks.early_stopping.enabled is False
    assert recipe.callbacks.overfit.enabled is False
    assert recipe.lora.use_rslora is True
    again = load_recipe(
        "json-output",
        ["training.eval_strategy=no"]
        + [f"callbacks.{name}.enabled=no" for name in ("early_stopping", "overfit")],
    )
    assert again.training.eval_strategy == "no"


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    """``<<: *base`` followed by a key that overrides it is YAML's own way to share values."""
    from train_helpers import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text("recipe: json-output\nlora:\n  <<: {r: 8, alpha: 16}\n  r: 4\n")
    assert load_recipe(path, []).lora.r == 4


def test_numbers_are_read_as_yaml_1_2(tmp_path: Path) -> None:
    """YAML 1.1 reads 010 as octal 8: a user who writes max_steps: 010 means ten steps."""
    from train_helpers import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(J + "training: {max_steps: 010, learning_rate: 1e-4}\n")
    recipe = load_recipe(path, ["lora.r=016"])
    assert recipe.training.max_steps == 10
    assert recipe.training.learning_rate == 1e-4
    assert recipe.lora.r == 16


def test_new_suggests_a_command_that_works_for_any_name(tmp_path: Path, monkeypatch) -> None:
    """The suggested `peftkit validate ...` is a command line that works as written, even for
    a name a shell or the parser would misread (a leading dash, a space)."""
    import shlex

    from train_helpers import run_main

    monkeypatch.chdir(tmp_path)
    for name in ("-dash.yaml", "with space.yaml"):
        code, out, err = run_main(monkeypatch, "new", "--", name)
        assert code == 0, err
        suggested = shlex.split(out.split("check it with: ")[1])
        assert suggested[:2] == ["peftkit", "validate"]
        code, out, err = run_main(monkeypatch, *suggested[1:])
        assert code == 0 and "ok" in out, err
