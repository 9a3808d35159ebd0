"""The recipe-quality benchmark runs end to end and writes its section of the benchmarks page.

Here on the tiny model with the script's ``--quick`` budgets, so the script cannot rot between
``make bench`` runs; the published figures come from ``make bench`` on SmolLM2.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_recipe_quality_writes_its_section_and_keeps_the_others(
    tiny_model_dir: Path, tmp_path: Path
):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- begin other -->\nkept\n<!-- end other -->\n")
    run = subprocess.run(
        [
            sys.executable,
            "recipe_quality.py",
            "--quick",
            "--model",
            str(tiny_model_dir),
            "--doc",
            str(doc),
        ],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    text = doc.read_text()
    assert "<!-- begin other -->\nkept\n<!-- end other -->" in text
    section = text.split("<!-- begin recipe-quality -->")[1].split("<!-- end recipe-quality -->")[0]
    assert "### json: `json-output` recipe" in section
    assert "### docs: `domain-adaptation` recipe" in section
    runs = [line for line in section.splitlines() if line.startswith("| same ")]
    assert len(runs) == 12  # 2 tasks x 2 budgets x 3 configurations
    assert sum("**peftkit recipe**" in line for line in runs) == 4
    assert section.count("At the same examples") == 2
    assert section.count("At the same wall time") == 2
    slower, fastest = "Per token the recipe is slower", "also trains the most tokens per second"
    assert section.count(slower) + section.count(fastest) == 2
    # The configurations are read back from the objects each one builds.
    assert "| peftkit recipe | 16 / 32 / 0.05 | all-linear |" in section
    assert "| peftkit recipe | 64 / 128 / 0.05 | all-linear |" in section
    assert "| classic PEFT/TRL example | 8 / 32 / 0.05 | q_proj, v_proj | 2e-05" in section
    assert "| TRL defaults | 8 / 8 / 0 | peft default (q_proj, v_proj) | 2e-05" in section


def test_callbacks_benchmark_compares_with_the_fair_baseline():
    """The callbacks benchmark, --quick on the tiny model: the overhead table for both models
    and the comparison with save_strategy="best" + load_best_model_at_end."""
    run = subprocess.run(
        [sys.executable, "callbacks.py", "--quick"],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| tiny Llama")]
    assert len(rows) == 2 and all("**" in row for row in rows)  # the ratios, in bold
    assert '`save_strategy="best"` + `load_best_model_at_end=True`' in run.stdout
