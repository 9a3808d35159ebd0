"""The ``peftkit`` command, run as a real subprocess the way users run it.

User errors must print "error: ..." on stderr, never a traceback, and exit with code 2; the bad
recipes are the very table of tests/test_validation.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_validation import RECIPE_FILE, YAML_ERRORS
from train_helpers import peftkit_cli

from peftkit import recipes

EXIT_USER_ERROR = 2


def assert_user_error(result: subprocess.CompletedProcess[str], *mentions: str) -> None:
    """Exit code 2 and a plain "error:" message on stderr that names ``mentions``."""
    assert result.returncode == EXIT_USER_ERROR, result.stderr
    assert "error:" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for text in mentions:
        assert text in result.stderr


# --- commands that succeed ----------------------------------------------------------------------


def test_recipes_lists_the_builtins(tmp_path: Path) -> None:
    """`peftkit recipes` names every built-in recipe."""
    result = peftkit_cli("recipes", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in recipes.BUILTIN:
        assert name in result.stdout


def test_show_prints_yaml_that_loads_back_equal(tmp_path: Path) -> None:
    """`peftkit show NAME` prints a complete recipe file: saved and loaded, it is the built-in."""
    result = peftkit_cli("show", "json-output", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "shown.yaml"
    path.write_text(result.stdout, encoding="utf-8")
    assert recipes.load(path) == recipes.load("json-output")


def test_show_applies_overrides(tmp_path: Path) -> None:
    """`peftkit show NAME lora.r=32` shows the overridden value."""
    result = peftkit_cli("show", "json-output", "lora.r=32", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["lora"]["r"] == 32
    assert "  r: 32\n" in result.stdout


def test_schema_is_json_with_a_description_for_every_field(tmp_path: Path) -> None:
    """`peftkit schema` prints JSON Schema in which every field of every object is described
    (on the property itself or, for a section, on the definition its $ref points to)."""
    result = peftkit_cli("schema", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    defs: dict[str, Any] = schema["$defs"]
    assert {"JsonOutput", "QLoRABudget", "DomainAdaptation", "LoraSection"} <= set(defs)

    def described(prop: dict[str, Any]) -> bool:
        if "description" in prop:
            return True
        ref = prop.get("$ref", "")
        return ref.startswith("#/$defs/") and "description" in defs[ref.removeprefix("#/$defs/")]

    undescribed = [
        f"{name}.{field}"
        for name, definition in defs.items()
        for field, prop in definition.get("properties", {}).items()
        if not described(prop)
    ]
    assert undescribed == []
    assert sum(len(d.get("properties", {})) for d in defs.values()) > 50


def test_new_writes_a_valid_recipe_and_never_overwrites(tmp_path: Path) -> None:
    """`peftkit new FILE --from NAME` writes a file that validates; a second `new` on the same
    path is a user error and leaves the file exactly as it was."""
    created = peftkit_cli("new", "my.yaml", "--from", "qlora-budget", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    path = tmp_path / "my.yaml"
    assert recipes.load(path) == recipes.load("qlora-budget")
    assert peftkit_cli("validate", "my.yaml", cwd=tmp_path).returncode == 0

    path.write_text(path.read_text(encoding="utf-8") + "# my own edit\n", encoding="utf-8")
    before = path.read_bytes()
    again = peftkit_cli("new", "my.yaml", "--from", "qlora-budget", cwd=tmp_path)
    assert_user_error(again, "my.yaml")
    assert path.read_bytes() == before


def test_validate_ok(tmp_path: Path) -> None:
    """`peftkit validate` on a valid file exits 0, says ok and warns about nothing."""
    (tmp_path / "good.yaml").write_text(recipes.load("json-output").to_yaml(), encoding="utf-8")
    result = peftkit_cli("validate", "good.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout
    assert result.stderr == ""


def test_validate_prints_warnings_and_succeeds(tmp_path: Path) -> None:
    """Doubtful choices are one "warning:" line each on stderr; the recipe is still valid."""
    (tmp_path / "doubtful.yaml").write_text(
        "recipe: json-output\ntraining: {learning_rate: 1.0e-5, epochs: 5}\n", encoding="utf-8"
    )
    result = peftkit_cli("validate", "doubtful.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(lines) == 2
    assert any("learning_rate" in line for line in lines)
    assert any("epochs" in line for line in lines)
    assert "Traceback" not in result.stderr


# --- user errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "overrides", "names"), YAML_ERRORS)
def test_validate_reports_file_and_override_errors(
    text: str | None, overrides: tuple[str, ...], names: str, tmp_path: Path
) -> None:
    """Bad YAML, empty or missing files and malformed overrides exit 2 naming the file or
    override, with no traceback."""
    if text is not None:
        (tmp_path / RECIPE_FILE).write_text(text, encoding="utf-8")
    assert_user_error(peftkit_cli("validate", RECIPE_FILE, *overrides, cwd=tmp_path), names)


def test_validate_reports_a_bad_override_value(tmp_path: Path) -> None:
    """An override with a bad value is reported at its field, like a bad value in the file."""
    result = peftkit_cli(
        "validate", "json-output", "lora.r=0", "training.packing=maybe", cwd=tmp_path
    )
    assert_user_error(result, "lora.r", "training.packing")


def test_unparseable_recipe_key_is_a_user_error(tmp_path: Path) -> None:
    """`recipe: [json-output]` (a list where a name belongs) is an error message, not a crash."""
    (tmp_path / RECIPE_FILE).write_text("recipe: [json-output]\n", encoding="utf-8")
    assert_user_error(peftkit_cli("validate", RECIPE_FILE, cwd=tmp_path), "recipe")
