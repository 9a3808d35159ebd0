"""The benchmarks' own logic and the pages they write, in seconds: the sections are rendered
from results made up here (the published figures come from ``make bench`` on SmolLM2, which
runs them for real), and the cheap scripts run end to end."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


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


def test_memory_table_reports_the_judged_error_apart_from_the_calibration():
    """The published-figures table (pure arithmetic) says which rows the overhead was fitted to,
    and gives the error on the judged rows only, computed as the tests judge them."""
    from calibration.published import agrees, calibration_rows, error, judged_rows

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
    from peftkit.memory.peak import quantized_bytes

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


# --- the pages the benchmarks write, from results made up here (seconds, no training) ----------


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The benchmarks folder importable (its scripts import their neighbours)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import recipe_quality
    import short_runs

    return SimpleNamespace(recipe_quality=recipe_quality, short_runs=short_runs)


def _made_up_runs(bench: Any, task: Any, model: Path) -> list[Any]:
    """Every contender once (seed 42), the recipe and the two best competitors with seeds 43
    and 44, and each run standing for the same wall time too: the recipe best, then the
    contenders in the order they are listed (each a little worse)."""
    from sft_runs import RECIPE, SEEDS, Run

    names = [c.name for c in bench.recipe_quality.contenders(task, model)]
    seeded = {RECIPE, names[1], names[2]}

    def run(rank: int, name: str, seed: int) -> Any:
        loss = 1.0 + rank / 10 + (seed - 42) / 1000
        scores = {"eval_loss": loss, "perplexity": math.exp(loss)}
        if task.schema is not None:
            scores |= {"schema_valid_rate": 0.9 - rank / 20, "json_valid_rate": 0.95 - rank / 20}
        return Run(name, "same examples", seed, 10, 60.0 + rank, 1000, scores)

    runs = [
        run(rank, name, seed)
        for rank, name in enumerate(names)
        for seed in (SEEDS if name in seeded else SEEDS[:1])
    ]
    return runs + [replace(r, budget="same wall time", copied=True) for r in runs]


def test_recipe_quality_page_ranks_every_configuration(bench: Any, tiny_model_dir: Path, tmp_path):
    """The section of one task: all 11 configurations ranked at both budgets in the order of
    their scores, seeds with their spread, every run, and what each configuration sets (read
    back from the objects it builds); written into the page without touching the others."""
    from report import write_section
    from sft_runs import tasks

    sections = []
    for task in tasks(quick=True):
        runs = _made_up_runs(bench, task, tiny_model_dir)
        base = {"eval_loss": 3.0, "schema_valid_rate": 0.0, "perplexity": 20.1}
        section, verdicts = bench.recipe_quality.task_section(task, base, runs, tiny_model_dir)
        assert section.startswith(f"### {task.name}: `{task.recipe}` recipe")
        assert "Untrained model: held-out loss 3.000, " in section
        table = section.split("- **")[0]
        rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
        assert len(rows) == 11  # the recipe, 3 published configurations, 7 sweep points
        assert sum(" | baseline | " in row for row in rows) == 3
        assert sum(" | sweep | " in row for row in rows) == 7
        assert [int(row.split("|")[5]) for row in rows] == list(range(1, 12))  # as made up
        assert "peftkit recipe" in rows[0]
        assert f"- **{task.name}, same examples**: the recipe ranks 1 of 11" in section
        assert f"- **{task.name}, same wall time**: the recipe ranks 1 of 11" in section
        seeded = [line for line in section.splitlines() if line.startswith("| same examples |")]
        assert sum("| **peftkit recipe** | 44 |" in line for line in seeded) == 1
        assert sum("| 44 |" in line for line in seeded) == 3
        assert len(seeded) == 11 + 2 * 3  # every same-examples run; the copies are not repeated
        assert section.count(" ± ") >= 2 * 3  # the three seeded configurations at both budgets
        assert verdicts and all(v.startswith("- **") for v in verdicts)
        sections.append(section)
    both = "\n\n".join(sections)
    assert "| peftkit recipe | 16 / 32 / 0.05 | all-linear |" in both
    assert "| peftkit recipe | 64 / 128 / 0.05 | all-linear |" in both
    assert "| TRL docs LoRA example | 32 / 16 / 0.05 | q_proj, v_proj | 0.0002 linear" in both
    assert "| Unsloth notebook | 16 / 16 / 0 | " in both and "adamw_8bit" in both
    assert "| axolotl lora-1b example | 16 / 32 / 0.05 | " in both
    cited = "\n".join(bench.recipe_quality.sources())
    for source in ("peft_integration.md", "Conversational.ipynb", "examples/llama-3/lora-1b.yml"):
        assert source in cited
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- begin other -->\nkept\n<!-- end other -->\n")
    write_section("recipe-quality", "first", doc)
    write_section("recipe-quality", both, doc)
    text = doc.read_text()
    assert "<!-- begin other -->\nkept\n<!-- end other -->" in text and "first" not in text
    assert text.count("<!-- begin recipe-quality -->") == 1 and both in text


def test_short_runs_page_reads_early_stopping_off_the_curve(bench: Any):
    """The longer-runs section from made-up curves: one row per run, the recipe's curve by
    step, where early stopping stops for each relative min_delta, and the docs runs."""
    from sft_runs import RECIPE, tasks

    short_runs = bench.short_runs
    json_task, docs_task = tasks(quick=True)
    scores = {"eval_loss": 0.5, "schema_valid_rate": 0.75, "json_valid_rate": 1.0}
    curve = [(3, 1.0), (6, 0.8), (9, 0.795), (12, 0.79), (15, 0.9), (18, 0.95), (21, 0.97)]
    json_runs = [
        short_runs.Curve(RECIPE, 2, curve, 30.0, 21, scores),
        short_runs.Curve(RECIPE, 3, [], 45.0, 32, scores),
        short_runs.Curve("warmup 0.1", 2, [], 31.0, 21, scores),
        short_runs.Curve("lr 0.0016", 2, [], 29.0, 21, scores),
    ]
    docs_runs = [
        short_runs.Curve(RECIPE, 1, [(3, 2.5), (6, 2.4)], 10.0, 6, {"perplexity": 11.0}),
        short_runs.Curve("lr 0.0016", 1, [(3, 2.6), (6, 2.3)], 10.0, 6, {"perplexity": 10.0}),
    ]
    text = short_runs.section(json_task, json_runs, docs_task, docs_runs, 1.0)
    json_rows = text.split("**json**")[1].split("**docs**")[0]
    assert "| peftkit recipe | 2 | 21 | 30 | 0.500 | 75% (100%) | 12: 0.790 |" in json_rows
    assert "| peftkit recipe | 3 | 32 | 45 | 0.500 | 75% (100%) | - |" in json_rows
    assert (
        "| warmup 0.1 | 2 | 21 | 31 |" in json_rows and "| lr 0.0016 | 2 | 21 | 29 |" in json_rows
    )
    assert "by step: 3: 1.000, 6: 0.800, 9: 0.795, 12: 0.790, 15: 0.900" in json_rows
    stops = [line for line in json_rows.splitlines() if " of best | " in line]
    assert len(stops) == len(short_runs.RELATIVE_DELTAS)
    for share, line in zip(short_runs.RELATIVE_DELTAS, stops, strict=True):
        at, best_step, best = short_runs.stop(curve, share)
        assert line == f"| {share:.1%} of best | {at} | {at / 21:.0%} | {best_step} | {best:.3f} |"
    docs_rows = [line for line in text.split("**docs**")[1].splitlines() if "| 6 |" in line]
    assert docs_rows == [
        "| peftkit recipe | 6 | 10 | 11.00 | 3: 2.500, 6: 2.400 |",
        "| lr 0.0016 | 6 | 10 | 10.00 | 3: 2.600, 6: 2.300 |",
    ]


def test_early_stopping_on_a_curve_stops_after_patience_evaluations(bench: Any):
    """min_delta as a share of the best loss: a gain smaller than that share is no gain."""
    stop = bench.short_runs.stop
    curve = [(3, 1.0), (6, 0.8), (9, 0.795), (12, 0.79), (15, 0.9), (18, 0.95), (21, 0.97)]
    assert stop(curve, 0.0) == (21, 12, 0.79)  # three evaluations without a new best
    assert stop(curve, 0.01) == (21, 12, 0.79)  # 0.79 gains more than 1% of 0.8
    assert stop(curve, 0.02) == (15, 6, 0.8)  # 0.795 and 0.79 gain less than 2% of 0.8
    assert stop([(3, 1.0), (6, 0.9)], 0.0) == (6, 6, 0.9)  # never stops: its last evaluation


def test_callbacks_page_reports_the_overhead_and_the_fair_baseline(monkeypatch):
    """The callbacks section from made-up timings: the ratio in bold, its spread, the share
    inside the callbacks, and what each way of keeping the best adapter cost."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from callbacks import section

    cost = {"plain": 1.0, "checked": 1.01, "cpu": 1.012, "cpu_spread": 0.004, "wall": 1.02,
            "wall_spread": 0.01, "inside": 0.0031}  # fmt: skip
    best = {"ours": (2.5, 2_100_000), "theirs": (5.0, 63_000_000)}
    text = section("SmolLM2-135M-Instruct", 5, cost, 24, cost, 200, best, 40)
    assert "| SmolLM2-135M-Instruct | 24 | 1.00 | 1.01 | **1.012** (spread 0.004) | " in text
    assert "| tiny Llama (ms steps) | 200 | " in text and "| 0.31% |" in text
    assert "| `EarlyStopping(restore_best=True)` | 2.50 | 2.10 |" in text
    assert '`save_strategy="best"` + `load_best_model_at_end=True`' in text
    assert "wrote 2.10 MB where the Trainer wrote 63 MB, in 0.50x the time" in text
