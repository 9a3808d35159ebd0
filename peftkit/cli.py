"""The ``peftkit`` command. Thin: it parses, calls the library and prints; no logic of its own.

User errors (a bad recipe, a missing file, bad YAML) print every problem without a traceback
and exit with code 2.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from peftkit.errors import MissingExtraError, PeftkitWarning, RecipeError, describe

USER_ERRORS = (ValidationError, RecipeError, MissingExtraError)
EXIT_USER_ERROR = 2

app = typer.Typer(
    name="peftkit",
    help="Validated LoRA/QLoRA fine-tuning recipes for the Hugging Face stack.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="Dotted overrides, e.g. training.learning_rate=1e-4 lora.r=32"),
]
RecipeArg = Annotated[str, typer.Argument(help="A built-in recipe name or a recipe YAML file.")]


@app.command("recipes")
def list_recipes() -> None:
    """List the built-in recipes."""
    from rich.console import Console
    from rich.table import Table

    from peftkit.recipes.registry import BUILTIN, summary

    table = Table("recipe", "method", "what it is for")
    for name, kind in BUILTIN.items():
        table.add_row(name, kind.model_fields["method"].default, summary(kind))
    Console().print(table)


@app.command()
def show(recipe: RecipeArg, overrides: Overrides = None) -> None:
    """Print a recipe, with every default resolved, as YAML."""
    from peftkit import recipes

    typer.echo(recipes.load(recipe, overrides or []).to_yaml(), nl=False)


@app.command()
def new(
    file: Annotated[Path, typer.Argument(help="The recipe file to create.")],
    from_: Annotated[str, typer.Option("--from", help="Built-in recipe to copy.")] = "json-output",
) -> None:
    """Copy a built-in recipe to FILE for editing. Never overwrites an existing file."""
    from peftkit import recipes

    if file.exists():
        raise RecipeError(
            f"{file} already exists; peftkit never overwrites a file you made. "
            "Fix: choose another name, or move the file away first."
        )
    text = recipes.load(from_).to_yaml()
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {file} (a copy of '{from_}'); check it with: peftkit validate {file}")


@app.command()
def validate(recipe: RecipeArg, overrides: Overrides = None) -> None:
    """Check a recipe; print every problem at once (exit 2) or 'ok' with any warnings."""
    from peftkit import recipes

    loaded = recipes.load(recipe, overrides or [])
    typer.echo(f"ok: {recipe} is a valid '{loaded.recipe}' recipe (method {loaded.method})")


@app.command()
def schema() -> None:
    """Print the JSON Schema of recipe files (for editor completion)."""
    from peftkit.recipes import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # type: ignore[no-untyped-def]
    """Print peftkit's warnings as one plain line each; others the usual way."""
    if issubclass(category, PeftkitWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main() -> None:
    """Console-script entry point."""
    warnings.showwarning = _show_warning
    try:
        app()
    except USER_ERRORS as error:
        print(f"error: {describe(error)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
