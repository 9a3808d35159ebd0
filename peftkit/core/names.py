"""Whether a model's name is a folder on this machine or a Hugging Face Hub id: one rule for
loading, the memory planner's config lookup, the model card and ``peftkit import``.

A Hub id is ``org/name``: one slash between names of letters, digits, ``.``, ``-`` and ``_``
(what the Hub takes). Anything else, a path starting with ``.``, ``/`` or ``~``, and any name
that exists here, is local; a missing ``dir/name`` therefore still reads as a Hub id, which
loading then names as neither a folder here nor a model it can reach.
"""

from __future__ import annotations

import re
from pathlib import Path

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def is_hub_id(name: str) -> bool:
    """Whether ``name`` is an ``org/name`` Hub id and not a path on this machine."""
    return (
        HUB_ID.match(name) is not None
        and not name.startswith((".", "~"))
        and not Path(name).expanduser().exists()
    )


def is_local(name: str) -> bool:
    """Whether ``name`` is a path on this machine rather than a Hub id."""
    return not is_hub_id(name)
