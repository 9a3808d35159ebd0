"""Importing peftkit, loading a recipe and `peftkit validate` never import the heavy HF stack.

Checked in fresh subprocesses, because this test process has long imported all of them.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "accelerate")


def test_import_and_load_import_nothing_heavy():
    code = (
        "import sys\n"
        "import peftkit\n"
        "from peftkit import recipes\n"
        "recipes.load('json-output', overrides=['lora.r=32'])\n"
        "for name in recipes.BUILTIN: recipes.load(name).to_yaml()\n"
        "recipes.json_schema()\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_cli_validate_imports_nothing_heavy():
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "peftkit", "validate", "json-output"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    imported = {
        line.rsplit("|", 1)[-1].strip().split(".")[0]
        for line in run.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "pydantic" in imported  # the probe does see imports
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))
