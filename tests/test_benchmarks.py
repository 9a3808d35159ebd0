"""The benchmarks run end to end and writes its section of the benchmarks page.

Here on the tiny model with the script's ``--quick`` budgets, so the script cannot rot between
``make bench`` runs; the published figures come from ``make bench`` on SmolLM2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

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
    # The verdict table: every configuration, ranked at both budgets.
    for task in ("json", "docs"):
        table = section.split(f"### {task}:")[1].split("- **")[0]
        rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
        assert len(rows) == 11  # the recipe, 3 published configurations, 7 sweep points
        assert sum(" | baseline | " in row for row in rows) == 3
        assert sum(" | sweep | " in row for row in rows) == 7
        assert sorted(int(row.split("|")[5]) for row in rows) == list(range(1, 12))
        assert f"- **{task}, same examples**: the recipe ranks " in section
        assert f"- **{task}, same wall time**: the recipe ranks " in section
    # Three seeds for the recipe and the two best competitors, with their spread.
    seeded = [line for line in section.splitlines() if line.startswith("| same examples |")]
    assert sum("| **peftkit recipe** | 44 |" in line for line in seeded) == 2
    assert sum("| 44 |" in line for line in seeded) == 6
    assert section.count(" ± ") >= 2 * 2 * 3
    # Every published configuration is cited and read back from the objects it builds.
    for source in ("peft_integration.md", "Conversational.ipynb", "examples/llama-3/lora-1b.yml"):
        assert source in section
    assert "| peftkit recipe | 16 / 32 / 0.05 | all-linear |" in section
    assert "| peftkit recipe | 64 / 128 / 0.05 | all-linear |" in section
    assert "| TRL docs LoRA example | 32 / 16 / 0.05 | q_proj, v_proj | 0.0002 linear" in section
    assert "| Unsloth notebook | 16 / 16 / 0 | " in section and "adamw_8bit" in section
    assert "| axolotl lora-1b example | 16 / 32 / 0.05 | " in section


def test_short_runs_reads_early_stopping_off_the_curve(tmp_path: Path):
    """The longer-runs benchmark, --quick: json at the default epochs and one more, warmup 0.1,
    the rival, a stop for each relative min_delta, and the docs curves."""
    doc = tmp_path / "benchmarks.md"
    run = subprocess.run(
        [sys.executable, "short_runs.py", "--quick", "--doc", str(doc)],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    section = doc.read_text().split("<!-- begin short-runs -->")[1]
    json_rows = section.split("**json**")[1].split("**docs**")[0]
    # epochs (the recipe's default 2, and one more), optimizer steps; the rival standalone is
    # twice the recipe's learning rate
    assert "| peftkit recipe | 2 | 2 |" in json_rows and "| peftkit recipe | 3 | 3 |" in json_rows
    assert "| lr 0.0016 | 2 | 2 |" in json_rows and "| warmup 0.1 | 2 | 2 |" in json_rows
    assert section.count(" of best | ") == 4
    docs_rows = [line for line in section.split("**docs**")[1].splitlines() if "| 1 |" in line]
    assert [row.split(" | ")[0] for row in docs_rows] == ["| peftkit recipe", "| lr 0.0016"]


def test_verdict_counts_no_win_inside_the_spread(monkeypatch: pytest.MonkeyPatch):
    """A gap no larger than either side's seed spread is a tie; the goals are 2 points of
    schema-valid rate and 2% of held-out loss from the best."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from verdict import Entry, compare, goals

    recipe = Entry("recipe", True, 0.90, 0.04, 0.400, 0.010, 3)
    assert compare(recipe, Entry("a", True, 0.87, None, 0.405, None, 1)) == "tie"
    assert compare(recipe, Entry("b", True, 0.85, None, 0.380, None, 1)) == "ahead"
    assert compare(recipe, Entry("c", True, 0.90, 0.0, 0.385, 0.02, 3)) == "tie"
    assert compare(recipe, Entry("d", True, 0.90, 0.0, 0.385, 0.0, 3)) == "behind"
    docs = Entry("recipe", False, 0.0, None, 2.50, 0.02, 3)
    assert compare(docs, Entry("e", False, 0.0, None, 2.60, None, 1)) == "ahead"
    best = Entry("f", True, 0.93, None, 0.390, None, 1)
    said = goals(recipe, [recipe, best])
    assert said[0].endswith("**no** (-3 points)")
    assert said[1].endswith("**no** (+2.6%)")


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


def test_memory_table_reports_the_judged_error_apart_from_the_calibration():
    """The published-figures table (pure arithmetic) says which rows the overhead was fitted to,
    and gives the error on the judged rows only, computed as the tests judge them."""
    from peftkit.memory.published import agrees, calibration_rows, error, judged_rows

    run = subprocess.run(
        [sys.executable, "-c", "import memory_tables; print(memory_tables.published_table())"],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    for row in calibration_rows():
        [line] = [x for x in lines if x.startswith(f"| {row.label} |")]
        assert "| calibration |" in line and "fitted to it (not evidence)" in line
    judged = [r for r in judged_rows() if not r.miss and r.kind in ("measured", "rule of thumb")]
    mean = sum(abs(error(r)) for r in judged) / len(judged)
    [summary] = [x for x in lines if x.startswith("- Judged within")]
    assert f"({len(judged)} rows): mean |error| {mean:.1%}" in summary
    assert f"{len(judged)} of {len(judged)} agree" in summary
    assert all(agrees(r) for r in judged_rows())
    [calibration] = [x for x in lines if x.startswith("- Calibration (")]
    assert "not evidence" in calibration


def test_gpu_check_without_a_gpu_says_so_and_writes_nothing():
    """On a machine without CUDA (this one, and CI) the GPU check exits 0 with one clear line,
    and leaves docs/benchmarks.md and its JSON alone."""
    doc = BENCHMARKS.parent / "docs" / "benchmarks.md"
    before = doc.read_bytes()
    json_out = BENCHMARKS / "gpu_check.json"
    existed = json_out.exists()
    run = subprocess.run(
        [sys.executable, "gpu_check.py"],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "gpu_check: no CUDA GPU on this machine " + (
        "(torch.cuda.is_available() is False): nothing measured, nothing written."
    )
    assert doc.read_bytes() == before
    assert json_out.exists() == existed


@pytest.fixture
def gpu_check(monkeypatch: pytest.MonkeyPatch) -> Any:
    """benchmarks/gpu_check.py as a module (it imports its neighbour report.py)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import gpu_check

    return gpu_check


def test_gpu_check_points_cover_each_model_and_method_and_fit_an_h200(gpu_check):
    """Each model with LoRA with and without checkpointing and with QLoRA, at lengths its
    context allows, smallest first, and every estimate well inside an H200's 139 GiB."""
    from peftkit.memory import estimate, shape_of

    points = gpu_check.points()
    for model in gpu_check.MODELS:
        mine = [p.setup for p in points if p.model == model]
        assert {(s.method, s.activation_checkpointing) for s in mine} >= {
            ("lora", False),
            ("lora", True),
            ("qlora", True),
        }
        context = gpu_check.MODELS[model]["max_position_embeddings"]
        assert all(s.seq_len <= context for s in mine)
    totals = [estimate(shape_of(gpu_check.MODELS[p.model]), p.setup).total for p in points]
    assert max(totals) < 0.8 * 139 * 2**30
    sizes = [shape_of(gpu_check.MODELS[p.model]).total_params for p in points]
    assert sizes == sorted(sizes)
    assert len({p.label for p in points}) == len(points)


def test_gpu_check_verdict_is_plus_minus_15_percent_of_a_measured_peak(gpu_check):
    assert gpu_check.error(100.0, 115.0) == pytest.approx(0.15)
    assert gpu_check.within(100.0, 115.0) and gpu_check.within(100.0, 85.0)
    assert not gpu_check.within(100.0, 116.0) and not gpu_check.within(100.0, 84.0)
    assert not gpu_check.within(0.0, 0.0)  # nothing measured never agrees


def _run(gpu_check: Any) -> Any:
    """A run as the GPU would leave it: one point that agrees, one that does not (its device
    peak is 30% under the estimate), one cut by the time box, and the recipe check."""
    point = gpu_check.points()[0]
    allocated, total = gpu_check.expected(point)
    good = gpu_check.Result(
        point.label,
        point.model,
        {},
        allocated,
        total,
        allocated * 1.05,
        total * 0.9,
        total * 0.1,
        12.0,
    )
    bad = gpu_check.Result(
        "bad", point.model, {}, allocated, total, allocated, total * 1.2, total * 0.23, 3.0
    )
    cut = gpu_check.Result("cut", point.model, {}, allocated, total, skipped="time box of 240 s")
    recipe = {
        "model": "SmolLM2",
        "precision": "bf16",
        "global_step": 6,
        "stop_reason": "max_steps",
        "callbacks": ["EarlyStopping", "OverfitDetector", "GradientCheck"],
        "peak_memory_gb": 1.2,
        "estimate_gb": 1.1,
    }
    return gpu_check.Run([good, bad, cut], recipe, "H200", "abc1234")


def test_gpu_check_table_and_summary_give_each_error_and_the_goal(gpu_check):
    run = _run(gpu_check)
    good, bad, _ = run.results
    assert gpu_check.agrees(good) and not gpu_check.agrees(bad)
    rows = gpu_check.table(run.results).splitlines()
    assert rows[0].startswith("| point | allocated GB | estimate GB | error |")
    assert rows[2].startswith(f"| {good.label} | ") and rows[2].endswith("| yes | 12 |")
    assert f"| {gpu_check.error(good.allocated, good.estimate_allocated):+.1%} |" in rows[2]
    assert (
        f"| {gpu_check.error(bad.device_peak, bad.estimate_total):+.1%} | **no** | 3 |" in rows[3]
    )
    assert "not run: time box of 240 s" in rows[4]
    summary = gpu_check.summary(run)
    assert summary[0] == (
        "Goal: every measured peak within +-15% of the estimate. 1 of 2 measured points "
        "meet it; 1 not run."
    )
    assert "precision `bf16` (bf16 as expected)" in summary[1]
    assert "EarlyStopping, OverfitDetector, GradientCheck" in summary[1]


def test_gpu_check_rewrites_its_section_from_a_saved_run(gpu_check, tmp_path: Path):
    """The JSON of a GPU run, brought back, writes the section here without a GPU; the exit
    code says whether every point agreed."""
    saved, doc = tmp_path / "gpu_check.json", tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- begin other -->\nkept\n<!-- end other -->\n")
    gpu_check.save(_run(gpu_check), saved)
    assert gpu_check.load_run(saved) == _run(gpu_check)
    assert gpu_check.main(["--from-json", str(saved), "--doc", str(doc)]) == 1  # "bad" fails
    text = doc.read_text()
    assert "<!-- begin other -->\nkept\n<!-- end other -->" in text
    section = text.split("<!-- begin gpu -->")[1].split("<!-- end gpu -->")[0]
    assert "## Peak GPU memory against the estimator" in section
    assert "at abc1234 on H200" in section and "| bad |" in section


def test_gpu_check_quantizes_in_memory_as_from_pretrained_and_trains(gpu_check):
    """The 4-bit model built without a checkpoint stores what the estimator counts (checked
    against from_pretrained's storage in test_memory.py), and trains a few steps (on the CPU
    here: the same code the GPU runs, less the peak readings)."""
    import bitsandbytes as bnb

    from peftkit.memory import shape_of
    from peftkit.memory.estimate import quantized_bytes

    config = {
        **gpu_check.SMOLLM2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": 512,
    }
    setup = replace(gpu_check.QLORA, optimizer="adamw_torch", batch_size=2, seq_len=32)
    model = gpu_check.build(config, setup, device="cpu")
    packed = constants = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            state = module.weight.quant_state
            packed += module.weight.numel() * module.weight.element_size()
            tensors = [
                state.absmax,
                state.code,
                state.offset,
                state.state2.absmax,
                state.state2.code,
            ]
            constants += sum(t.numel() * t.element_size() for t in tensors)
    assert (packed, constants) == quantized_bytes(shape_of(config), setup)
    optimizer = gpu_check.train_steps(model, setup, steps=2)
    assert len(optimizer.state) == sum(p.requires_grad for p in model.parameters())
