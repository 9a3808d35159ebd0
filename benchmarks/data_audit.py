"""How long the data audit takes: 100,000 generated conversational rows of about 200 tokens,
and the demo's data, with SmolLM2's tokenizer (no model weights load). Target: under 30 s for
the 100,000 rows and under 1 s for the demo data on a 2-core machine.

Writes the ``data-audit`` section of docs/benchmarks.md. Run: ``python data_audit.py``
(``--rows N`` for a quicker look; only the full run writes the page).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from report import machine, write_section

from peftkit import recipes
from peftkit.data import prepare
from peftkit.data.audit import audit
from peftkit.testing import write_data

ROWS = 100_000
WORDS_PER_QUESTION = 30
KEYS_PER_ANSWER = 8


def conversations(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` conversational prompt/completion rows (the demo's format): a question of ~50
    tokens and a JSON answer of ~150, from the words of Python's reference documentation."""
    from pydoc_data.topics import topics

    words = " ".join(topics.values()).split()
    pick = random.Random(seed)
    rows = []
    for _ in range(count):
        question = " ".join(pick.choices(words, k=WORDS_PER_QUESTION))
        answer = {f"field_{k}": " ".join(pick.choices(words, k=5)) for k in range(KEYS_PER_ANSWER)}
        rows.append(
            {
                "prompt": [{"role": "user", "content": question}],
                "completion": [{"role": "assistant", "content": json.dumps(answer)}],
            }
        )
    return rows


def timed(recipe: recipes.Recipe, data: Path, eval_data: Path | None, tokenizer: Any) -> dict:
    started = time.perf_counter()
    splits = prepare(recipe, data, eval_data)
    prepared = time.perf_counter()
    found = audit(recipe, splits, tokenizer)
    done = time.perf_counter()
    tokens = found.stats["tokens"]["total"]
    return {
        "rows": len(splits.train),
        "median_tokens": tokens["median"],
        "read_s": prepared - started,
        "audit_s": done - prepared,
        "findings": sorted(f.code for f in found.findings),
    }


def demo_data(folder: Path, model: Path) -> tuple[recipes.Recipe, Path, Path]:
    from peftkit.demo import TASKS
    from peftkit.demo.tasks import json_task

    train_rows, eval_rows, schema = json_task()
    name, overrides = TASKS["json"]
    extra = [f"json_schema={json.dumps(schema)}", f"model.name={json.dumps(str(model))}"]
    recipe = recipes.load(name, [*overrides, *extra])
    return (
        recipe,
        write_data(folder / "demo-train.jsonl", train_rows),
        write_data(folder / "demo-eval.jsonl", eval_rows),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=ROWS)
    rows = parser.parse_args().rows
    from transformers import AutoTokenizer

    from peftkit.demo.pretrained import smollm2

    model = smollm2()
    tokenizer = AutoTokenizer.from_pretrained(model)
    with tempfile.TemporaryDirectory() as folder:
        data = write_data(Path(folder) / "chat.jsonl", conversations(rows))
        every_row = ["training.eval_fraction=0", "training.eval_strategy=no"]
        off = ["callbacks.early_stopping.enabled=false", "callbacks.overfit.enabled=false"]
        chat = recipes.load("json-output", [f"model.name={model}", *every_row, *off])
        large = timed(chat, data, None, tokenizer)
        small = timed(*demo_data(Path(folder), model), tokenizer)
    print(json.dumps({"large": large, "demo": small}, indent=2))
    if rows == ROWS:
        write_section("data-audit", _section(large, small))


def _section(large: dict, small: dict) -> str:
    missed = [
        name
        for name, seconds, goal in (
            ("the 100,000-row", large["audit_s"], 30),
            ("the demo", small["audit_s"], 1),
        )
        if seconds >= goal
    ]
    verdict = (
        "meets both"
        if not missed
        else "misses both"
        if len(missed) == 2
        else f"misses {missed[0]} target and meets the other"
    )
    return "\n".join(
        [
            "## Data audit",
            "",
            f"`benchmarks/data_audit.py` {machine()}; SmolLM2-135M-Instruct's tokenizer, no "
            "weights loaded.",
            "",
            "| data | training rows | median tokens per row | read and checked, s | audit, s |",
            "|---|---|---|---|---|",
            f"| generated conversational rows (JSON answers) | {large['rows']:,} | "
            f"{large['median_tokens']:g} | {large['read_s']:.1f} | **{large['audit_s']:.1f}** |",
            f"| the demo's json task | {small['rows']:,} | {small['median_tokens']:g} | "
            f"{small['read_s']:.2f} | **{small['audit_s']:.2f}** |",
            "",
            f"Targets: under 30 s for 100,000 rows and under 1 s for the demo data; this run "
            f"{verdict}. The audit is the tokenization as the trainer does it (batched, "
            "fast tokenizer) and the checks on its result; reading and checking the file is "
            "what `peftkit train` does anyway.",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
