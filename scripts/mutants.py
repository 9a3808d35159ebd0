"""`make mutants`: mutation testing of peftkit's core, module by module, and its score.

mutmut 3 (configured in pyproject.toml, ``[tool.mutmut]``) changes one thing at a time in the
core modules (a comparison, a constant, an argument, a boolean) and runs the tests that call
the changed function; a mutant no test notices has "survived". This script runs it one module
at a time (``nice``: it is CPU-heavy) and prints, per module, the mutants killed and the score:
killed (or timed out) out of all mutants but the equivalent ones, those listed with the reason
in ``scripts/mutants_equivalent.json``. Every other survivor is printed with its diff.

    python scripts/mutants.py                  # every module, then the report
    python scripts/mutants.py outputs checkpoints
    python scripts/mutants.py --report         # the report of the last runs only
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EQUIVALENT = ROOT / "scripts" / "mutants_equivalent.json"
TARGET = 0.9
"""The share of non-equivalent mutants the tests must kill (issue 23)."""

MODULES = {
    "callbacks": "peftkit/callbacks/__init__.py",
    "monitor": "peftkit/callbacks/monitor.py",
    "stopping": "peftkit/callbacks/stopping.py",
    "early_stopping": "peftkit/callbacks/early_stopping.py",
    "gradients": "peftkit/callbacks/gradients.py",
    "overfit": "peftkit/callbacks/overfit.py",
    "base": "peftkit/callbacks/base.py",
    "saving": "peftkit/callbacks/saving.py",
    "distributed": "peftkit/callbacks/distributed.py",
    "json_answers": "peftkit/evaluation/json_answers.py",
    "evaluation_callback": "peftkit/evaluation/callback.py",
    "held_out": "peftkit/evaluation/held_out.py",
    "json_validity": "peftkit/evaluation/json_validity/json_validity.py",
    "folders": "peftkit/core/folders.py",
    "outputs": "peftkit/run/outputs.py",
    "checkpoints": "peftkit/run/checkpoints.py",
    "rules": "peftkit/recipes/rules.py",
    "measure": "peftkit/data/measure.py",
    "audit_checks": "peftkit/data/audit_checks.py",
    "estimate": "peftkit/memory/peak.py",
}
"""The core modules, by a short name: the order they are run in."""

CAUGHT = {"killed", "timeout", "caught by type check"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(MODULES))
    parser.add_argument("--report", action="store_true", help="only report the last runs")
    options = parser.parse_args()
    unknown = set(options.modules) - set(MODULES)
    if unknown:
        parser.error(f"unknown modules {sorted(unknown)}; choose from {', '.join(MODULES)}")
    chosen = options.modules or list(MODULES)
    if not options.report:
        for name in chosen:
            run(name)
    return report(chosen)


def run(name: str) -> None:
    """``mutmut run`` on one module's mutants (its stats and results are kept in mutants/)."""
    dotted = MODULES[name].removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    chosen = f"{dotted}.x*"  # the module's own mutants: a package's, not its modules'
    print(f"== {name}: mutmut run {chosen}", flush=True)
    mutmut = Path(sys.executable).with_name("mutmut")
    command = ["nice", "-n", "10", str(mutmut), "run", chosen]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PEFTKIT_TEST_TINY_MODEL"] = str(ROOT / "mutants" / "tiny-model")  # built once
    env["PEFTKIT_TEST_MEASURED"] = str(ROOT / "mutants" / "measured")  # measured once
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
        raise SystemExit(f"mutmut failed on {name} (exit {result.returncode})")


def results(path: str) -> dict[str, str]:
    """Each mutant of ``path`` and its status in the last run (mutmut's meta file)."""
    from mutmut.stats import status_by_exit_code

    meta = ROOT / "mutants" / f"{path}.meta"
    if not meta.is_file():
        return {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {name: status_by_exit_code[code] for name, code in codes.items()}


def report(chosen: list[str]) -> int:
    equivalent = json.loads(EQUIVALENT.read_text()) if EQUIVALENT.is_file() else {}
    rows, survivors, listed = [], [], []
    for name in chosen:
        statuses = results(MODULES[name])
        if not statuses:
            rows.append(f"{name:20} not run")
            continue
        counts = Counter(statuses.values())
        caught = sum(counts[s] for s in CAUGHT)
        uncaught = [m for m, s in statuses.items() if s not in CAUGHT and s != "not checked"]
        same = [m for m in uncaught if m in equivalent]
        missed = sorted(m for m in uncaught if m not in equivalent)
        unchecked = counts["not checked"]
        judged = len(statuses) - len(same) - unchecked
        score = f"{caught / judged:7.1%}" if judged else f"{'-':>7}"
        rows.append(
            f"{name:20} {len(statuses):5} {caught:7} {len(missed):9} {len(same):11} "
            f"{unchecked:8} {score}"
        )
        survivors += [(m, statuses[m]) for m in missed]
        listed += [(m, equivalent[m]) for m in same]
    print(f"\n{'module':20} {'all':>5} {'killed':>7} {'survived':>9} {'equivalent':>11} "
          f"{'unrun':>8} {'score':>7}")  # fmt: skip
    print("\n".join(rows))
    for mutant, why in listed:
        print(f"\nequivalent: {mutant}: {why}")
    for mutant, status in survivors:
        print(f"\n{status}: {mutant}\n{_diff(mutant)}")
    failing = [r for r in rows if r.endswith("%") and float(r.split()[-1][:-1]) < TARGET * 100]
    if failing:
        print(f"\nbelow the target of {TARGET:.0%}: " + ", ".join(r.split()[0] for r in failing))
    return 1 if failing else 0


def _diff(mutant: str) -> str:
    mutmut = Path(sys.executable).with_name("mutmut")
    shown = subprocess.run(
        [str(mutmut), "show", mutant], cwd=ROOT, capture_output=True, text=True, check=False
    )
    lines = shown.stdout.splitlines()
    return "\n".join(line for line in lines if line.startswith(("-", "+", "@@")))


if __name__ == "__main__":
    raise SystemExit(main())
