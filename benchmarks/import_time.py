"""Import-and-validate time of peftkit against importing TRL's SFTConfig, in one run.

Each measurement is a fresh interpreter (what a user's script or `peftkit validate` pays). The
two commands alternate so that machine load affects both alike; the median of the runs is
reported. Writes the "import-time" section of docs/benchmarks.md.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from calibration.published import LLAMA_7B
from report import git_revision, machine, write_section

CONFIG = Path(tempfile.mkdtemp()) / "config.json"
PLAN = (
    "import sys; from peftkit.cli import main; "
    f"sys.argv = ['peftkit', 'plan', 'qlora-budget', '--model', {str(CONFIG)!r}, "
    "'--gpu-memory', '16', '--json']; main()"
)
COMMANDS = {
    "`from peftkit import recipes; recipes.load('json-output')`": (
        "from peftkit import recipes; recipes.load('json-output')"
    ),
    "`peftkit plan qlora-budget --model config.json --gpu-memory 16 --json` (7B)": PLAN,
    "`from trl import SFTConfig`": "from trl import SFTConfig",
    "`python -c pass` (interpreter start)": "pass",
}


def wall_time(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


def main(runs: int = 7) -> None:
    CONFIG.write_text(json.dumps(LLAMA_7B))
    for code in COMMANDS.values():  # warm the file cache and .pyc files; not measured
        wall_time(code)
    times: dict[str, list[float]] = {label: [] for label in COMMANDS}
    for _ in range(runs):
        for label, code in COMMANDS.items():
            times[label].append(wall_time(code))
    medians = {label: statistics.median(values) for label, values in times.items()}
    peftkit_label, plan_label, trl_label = list(COMMANDS)[:3]
    rows = "\n".join(
        f"| {label} | {medians[label]:.3f} | {min(times[label]):.3f} | {max(times[label]):.3f} |"
        for label in COMMANDS
    )
    body = (
        "## Import and validate time\n\n"
        f"Fresh interpreter per run, {runs} runs each, alternating; `benchmarks/import_time.py` "
        f"at {git_revision()} on {machine()}.\n\n"
        "| command | median s | min s | max s |\n|---|---|---|---|\n"
        f"{rows}\n\n"
        f"Loading and validating a recipe takes {medians[peftkit_label]:.2f} s, "
        f"{medians[trl_label] / medians[peftkit_label]:.0f}x less than importing SFTConfig "
        f"({medians[trl_label]:.2f} s). `peftkit plan` answers in {medians[plan_label]:.2f} s "
        "without importing torch.\n"
    )
    write_section("import-time", body)
    print(body)


if __name__ == "__main__":
    main()
