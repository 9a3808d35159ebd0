"""The runnable examples in docs/callbacks/ run, on the tiny model, as a user would run them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted((DOCS / "callbacks").glob("*.md"))


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_every_callback_page_has_an_example():
    assert len(PAGES) == 3
    assert all(python_blocks(page) for page in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_example_runs(page: Path, tiny_model_dir: Path, tmp_path: Path):
    (code,) = python_blocks(page)
    env = {
        **os.environ,
        "PEFTKIT_EXAMPLE_MODEL": str(tiny_model_dir),
        "PEFTKIT_EXAMPLE_OUT": str(tmp_path / "out"),
    }
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    if page.stem == "overfit-detection":
        assert "overfitting detected at step None" not in run.stdout
