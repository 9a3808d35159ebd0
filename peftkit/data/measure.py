"""Each training row's lengths as the trainer sees them, for the data audit, split between the
CPUs for large data.

The fast tokenizer keeps to one core here, so rows are measured in forked worker processes
(a fork needs no imports and shares the rows; only batch numbers go in and a few numbers per
row come back). Small data stays in this process: starting workers costs more than it saves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from contextlib import contextmanager
from multiprocessing import get_all_start_methods, get_context
from typing import Any

from peftkit.data.tokens import BATCH, batch_tokens

PARALLEL_ROWS = 20_000
"""From this many rows on, the rows are measured in worker processes."""
MAX_WORKERS = 8
TAIL = 2
"""A stop token among a row's last trained tokens counts as its end: chat templates put a
newline after the end-of-turn token (SmolLM2's ``<|im_end|>\\n``), and it is trained too."""
Measured = tuple[int, int, int, bool, int]
"""A row's total tokens, trained tokens, trained tokens within max_length, whether its trained
tokens end with a stop token, and the hash of its normalized text (workers share the parent's
hash seed: they are forked)."""

_JOB: dict[str, Any] = {}
"""The rows and settings of the measurement under way, inherited by forked workers."""


def measure(
    rows: list[dict[str, Any]],
    fmt: str,
    tokenizer: Any,
    masked: bool,
    max_length: int,
    stops: set[int],
) -> list[Measured]:
    """Every row of ``rows`` measured; ``stops`` are the token ids that end an answer."""
    _JOB.update(rows=rows, fmt=fmt, tokenizer=tokenizer, masked=masked, limit=max_length)
    _JOB["stops"] = frozenset(stops)
    starts = range(0, len(rows), BATCH)
    workers = min(os.cpu_count() or 1, MAX_WORKERS)
    try:
        if len(rows) < PARALLEL_ROWS or workers < 2 or "fork" not in get_all_start_methods():
            parts: Iterable[list[Measured]] = map(_measure_batch, starts)
            return [row for part in parts for row in part]
        with _serial_tokenizer(), get_context("fork").Pool(workers) as pool:
            return [row for part in pool.map(_measure_batch, starts) for row in part]
    finally:
        _JOB.clear()


def _measure_batch(start: int) -> list[Measured]:
    job = _JOB
    batch = job["rows"][start : start + BATCH]
    ids, masks = batch_tokens(batch, job["fmt"], job["tokenizer"], job["masked"])
    limit, stops = job["limit"], job["stops"]
    measured = zip(batch, ids, masks, strict=True)
    return [_measured(row, i, mask, limit, stops) for row, i, mask in measured]


def _measured(
    row: dict[str, Any], ids: list[int], mask: list[int], limit: int, stops: frozenset[int]
) -> Measured:
    last = len(mask) - 1 - mask[::-1].index(1) if 1 in mask else -1
    ends = any(mask[i] and ids[i] in stops for i in range(max(last - TAIL, 0), last + 1))
    return len(ids), sum(mask), sum(mask[:limit]), ends, hash(normalized(row))


def normalized(row: Any) -> str:
    """A row for comparing rows: its JSON with whitespace (escaped or not) collapsed, the space
    at either end of each text dropped, and case folded, so that a copy differing only in
    spacing or case is found too. String methods only: this runs on every row."""
    text = json.dumps(row, sort_keys=True, ensure_ascii=False)
    for escaped in ("\\n", "\\t", "\\r"):
        text = text.replace(escaped, " ")
    text = " ".join(text.split())
    return text.replace('" ', '"').replace(' "', '"').casefold()


@contextmanager
def _serial_tokenizer() -> Any:
    """The tokenizers library warns in every forked child when its own threads were used
    before the fork; each worker tokenizes on one core anyway."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if before is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before
