"""The runnable examples in docs/callbacks/ run, on the tiny model, as a user would run them,
and print what the page says they print."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

from peftkit import callbacks

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted((DOCS / "callbacks").glob("*.md"))


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_every_callback_has_a_page_whose_example_uses_it():
    """A callback added to peftkit.callbacks without a page (or a page whose example does not
    use it) fails here."""
    exported = [
        name
        for name in callbacks.__all__
        if isinstance(getattr(callbacks, name), type)
        and issubclass(getattr(callbacks, name), callbacks.PeftkitCallback)
        and getattr(callbacks, name) is not callbacks.PeftkitCallback
    ]
    assert exported == ["EarlyStopping", "GradientCheck", "OverfitDetector"]
    for name in exported:
        used = [p.stem for p in PAGES if any(f"{name}(" in code for code in python_blocks(p))]
        assert used, f"no page in docs/callbacks has an example that builds {name}"


def _run(page: str, model: Path, folder: Path) -> tuple[str, Path]:
    (code,) = python_blocks(DOCS / "callbacks" / f"{page}.md")
    out = folder / "out"
    env = {**os.environ, "PEFTKIT_EXAMPLE_MODEL": str(model), "PEFTKIT_EXAMPLE_OUT": str(out)}
    env |= {"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    run = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=folder, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    noise = [line for line in run.stderr.splitlines() if re.search(r"[Ww]arn|ignored", line)]
    assert noise == [], "\n".join(noise)  # no warning the reader of the page cannot act on
    # The Trainer prints each log event first; what the example prints comes after them.
    printed = run.stdout.splitlines()
    train_end = max(i for i, line in enumerate(printed) if line.startswith("{'train_runtime'"))
    return "\n".join(printed[train_end + 1 :]), out


def test_the_early_stopping_example(tiny_model_dir: Path, tmp_path: Path):
    """It prints the best evaluation and saves that adapter to the folder it names."""
    stdout, out = _run("early-stopping", tiny_model_dir, tmp_path)
    found = re.fullmatch(r"best (\S+) at step (\d+) stop: (.*)", stdout)
    assert found, stdout
    best, step = float(found[1]), int(found[2])
    assert math.isfinite(best) and step in (3, 6, 9, 12)  # an evaluation, every 3 steps
    marker = json.loads((out / "best-adapter" / "peftkit_best.json").read_text())
    assert marker == {"metric": "eval_loss", "value": best, "step": step}
    assert (out / "best-adapter" / "adapter_model.safetensors").stat().st_size > 0


def test_the_gradient_checks_example(tiny_model_dir: Path, tmp_path: Path):
    """With the mixin every one of the 10 steps is checked; the largest norm is a norm."""
    stdout, _ = _run("gradient-checks", tiny_model_dir, tmp_path)
    found = re.fullmatch(r"(\d+) steps, (\d+)% clipped, largest norm (\S+), spikes (\d+)", stdout)
    assert found, stdout
    assert int(found[1]) == 10 and 0 <= int(found[2]) <= 100
    assert 0 < float(found[3]) < math.inf


def test_the_overfit_detection_example(tiny_model_dir: Path, tmp_path: Path):
    """Four texts, many steps: overfitting is detected and training stops there; the history
    printed after it ends at that step, its eval loss above its minimum."""
    stdout, _ = _run("overfit-detection", tiny_model_dir, tmp_path)
    first, *history = stdout.splitlines()
    found = re.fullmatch(r"overfitting detected at step (\d+)", first)
    assert found, stdout
    points = [json.loads(line.replace("'", '"')) for line in history]
    assert points and points[-1]["step"] == int(found[1]) < 60
    assert points[-1]["eval_loss"] > min(p["eval_loss"] for p in points)
