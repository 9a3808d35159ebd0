"""Generate the reference pages of the docs from the code itself, so they never drift:

- docs/reference/recipes.md: every field of every section, with type, default and description,
  from the recipes' JSON Schema;
- docs/recipes/<name>.md: one page per built-in recipe, from its class docstring (why its defaults
  are what they are, with sources) and its resolved YAML;
- docs/reference/cli.md: the help of every `peftkit` command, from the CLI.

Run by `make docs` before `mkdocs build --strict`; the generated files are not committed.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from peftkit.cli import app
from peftkit.recipes import BUILTIN, json_schema

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        return f"section `{prop['$ref'].rsplit('/', 1)[-1]}`"
    if "enum" in prop:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "anyOf" in prop:
        return " or ".join(_type(option, defs) for option in prop["anyOf"])
    if prop.get("type") == "array":
        return f"list of {_type(prop.get('items', {}), defs)}"
    return f"`{prop.get('type', 'any')}`"


def recipes_reference() -> str:
    schema = json_schema()
    defs = schema.get("$defs", {})
    lines = [
        "# Recipe fields",
        "",
        "Generated from the recipes' JSON Schema (`peftkit schema`). A recipe's own defaults are "
        "in its section models (for example `JsonOutputTraining`); `peftkit show NAME` prints "
        "them resolved.",
        "",
    ]
    for name in sorted(defs):
        model = defs[name]
        if model.get("type") != "object":
            continue
        lines += [f"## {name}", "", markdown_of((model.get("description") or "").strip()), ""]
        lines += ["| field | type | default | description |", "|---|---|---|---|"]
        for field, prop in model.get("properties", {}).items():
            target = defs.get(prop.get("$ref", "").rsplit("/", 1)[-1], {})
            if "default" in prop:
                default = f"`{json.dumps(prop['default'])}`"
            else:
                default = "its own defaults" if target else "(required)"
            description = prop.get("description") or target.get("description") or ""
            description = markdown_of(" ".join(description.split()))
            lines.append(f"| `{field}` | {_type(prop, defs)} | {default} | {description} |")
        lines.append("")
    return "\n".join(lines)


SPHINX_ROLE = re.compile(r":(?:meth|class|func|attr|mod|data):`~?([^`]+)`")


def markdown_of(docstring: str) -> str:
    """A docstring as Markdown: Sphinx roles (``:meth:`plan```) become code (`plan`)."""
    return SPHINX_ROLE.sub(lambda match: f"`{match.group(1).split('.')[-1]}`", docstring)


def recipe_page(name: str) -> str:
    kind = BUILTIN[name]
    from peftkit import recipes

    doc = markdown_of(inspect.cleandoc(kind.__doc__ or ""))
    title, _, body = doc.partition("\n")
    return "\n".join(
        [
            f"# {name}",
            "",
            f"**{title.strip()}**",
            "",
            body.strip(),
            "",
            "## The resolved recipe",
            "",
            f"`peftkit show {name}` (copy it with `peftkit new my.yaml --from {name}`):",
            "",
            "```yaml",
            recipes.load(name).to_yaml().rstrip(),
            "```",
            "",
        ]
    )


def cli_reference() -> str:
    """Each command's --help, as a user sees it (80 columns, no colour)."""
    command = typer.main.get_command(app)
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"}
    lines = ["# Command line", "", "Generated from `peftkit --help` and each command's help.", ""]
    for name in ["", *sorted(command.commands)]:  # type: ignore[attr-defined]
        args = [str(Path(sys.executable).parent / "peftkit"), *([name] if name else []), "--help"]
        text = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
        lines += [f"## peftkit {name}".rstrip(), "", "```text", text.rstrip(), "```", ""]
    return "\n".join(lines)


def main() -> None:
    (DOCS / "reference").mkdir(exist_ok=True)
    (DOCS / "recipes").mkdir(exist_ok=True)
    (DOCS / "reference" / "recipes.md").write_text(recipes_reference())
    (DOCS / "reference" / "cli.md").write_text(cli_reference())
    for name in BUILTIN:
        (DOCS / "recipes" / f"{name}.md").write_text(recipe_page(name))


if __name__ == "__main__":
    main()
