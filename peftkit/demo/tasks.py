"""The demo's tasks, built from real records that ship with Python (nothing written by hand).

- ``json_task``: "what is the MIME type of .ext?" answered as a JSON object, from the table
  compiled into the standard library's ``mimetypes`` module (not /etc/mime.types, so every
  machine gets the same data). Held out by MIME type: no evaluation record shares its type with
  a training record, so the evaluation prompts are unseen.
- ``docs_task``: the Python reference documentation in ``pydoc_data.topics`` as raw text, held
  out by topic, for domain adaptation.
"""

from __future__ import annotations

import json
import mimetypes
import random
from typing import Any


def mime_records() -> list[dict[str, str]]:
    table = mimetypes.MimeTypes().types_map[True]  # only the built-in table
    return [
        {"extension": ext, "mime_type": mime, "category": mime.split("/")[0]}
        for ext, mime in sorted(table.items())
    ]


def mime_schema(records: list[dict[str, str]]) -> dict[str, Any]:
    categories = sorted({r["category"] for r in records})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "extension": {"type": "string", "pattern": r"^\.[a-z0-9]+$"},
            "mime_type": {
                "type": "string",
                "pattern": r"^(" + "|".join(categories) + r")/[a-z0-9][a-z0-9.+-]*$",
            },
            "category": {"enum": categories},
        },
        "required": ["extension", "mime_type", "category"],
        "additionalProperties": False,
    }


def _example(record: dict[str, str]) -> dict[str, Any]:
    question = (
        f"What is the MIME type of files ending in {record['extension']}? Answer with a JSON "
        "object with keys extension, mime_type and category."
    )
    return {
        "prompt": [{"role": "user", "content": question}],
        "completion": [{"role": "assistant", "content": json.dumps(record)}],
    }


def json_task(eval_size: int = 64, seed: int = 0) -> tuple[list, list, dict[str, Any]]:
    """(train rows, eval rows, schema) in TRL's conversational prompt/completion format."""
    records = mime_records()
    by_type: dict[str, list[dict[str, str]]] = {}
    for record in records:
        by_type.setdefault(record["mime_type"], []).append(record)
    types = sorted(by_type)
    random.Random(seed).shuffle(types)
    held_out: list[dict[str, str]] = []
    train: list[dict[str, str]] = []
    for mime in types:
        (held_out if len(held_out) < eval_size else train).extend(by_type[mime])
    return (
        [_example(r) for r in train],
        [_example(r) for r in held_out[:eval_size]],
        mime_schema(records),
    )


def docs_task(eval_topics: int = 8, chunk_chars: int = 1200, seed: int = 0) -> tuple[list, list]:
    """(train rows, eval rows) of raw text: Python's reference docs, held out by topic, in
    chunks of at most ``chunk_chars`` characters (paragraphs kept whole where they fit), each
    chunk once: repeated boilerplate would weigh double, and leak into the held-out topics."""
    from pydoc_data.topics import topics

    from peftkit.data.measure import normalized

    names = sorted(topics)
    random.Random(seed).shuffle(names)
    seen: set[str] = set()

    def unseen(name: str) -> list[dict[str, str]]:
        rows = []
        for piece in _chunks(topics[name], chunk_chars):
            key = normalized({"text": piece})
            if key not in seen:
                seen.add(key)
                rows.append({"text": piece})
        return rows

    train = [row for name in names[eval_topics:] for row in unseen(name)]
    held_out = [row for name in names[:eval_topics] for row in unseen(name)]
    return train, held_out


def _chunks(text: str, size: int) -> list[str]:
    """``text`` in pieces of at most ``size`` characters, cut between paragraphs, else between
    lines, else between words."""
    pieces, current = [], ""
    for part in _parts(text, size):
        if current and len(current) + len(part) > size:
            pieces.append(current.strip())
            current = ""
        current += part
    if current.strip():
        pieces.append(current.strip())
    return [piece for piece in pieces if piece]


def _parts(text: str, size: int) -> list[str]:
    parts = []
    for paragraph in text.split("\n\n"):
        if len(paragraph) < size:
            parts.append(paragraph + "\n\n")
            continue
        for line in paragraph.split("\n"):
            words = line.split(" ")
            while words:
                taken = []
                while words and len(" ".join([*taken, words[0]])) < size:
                    taken.append(words.pop(0))
                parts.append(" ".join(taken or [words.pop(0)[: size - 1]]) + "\n")
        parts[-1] += "\n"
    return parts
