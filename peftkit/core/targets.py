"""Which modules a LoRA target list names: one rule for `peftkit estimate`, `peftkit plan` and
`peftkit train`.

PEFT attaches an adapter to every module whose full dotted name equals a listed target or ends
with ``"." + target``, and says nothing when a target matches no module: the run then trains
fewer layers than asked, or none. :func:`check_targets` refuses such a list before any time is
spent. It takes plain names (no torch), so the memory estimate checks a config's linear layers
and training checks the loaded model's modules with the same rule.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

from peftkit.core.errors import Problem, ProblemsError, RecipeError

ALL_LINEAR = "all-linear"
"""PEFT's shorthand for every linear layer but the output head; it always matches."""

FUSED = {
    "qkv_proj": ("q_proj", "k_proj", "v_proj"),
    "gate_up_proj": ("gate_proj", "up_proj"),
    "query_key_value": ("q_proj", "k_proj", "v_proj"),
    "c_attn": ("q_proj", "k_proj", "v_proj"),
    "Wqkv": ("q_proj", "k_proj", "v_proj"),
}
"""Projections some architectures fuse into one linear layer (Phi-3: qkv_proj and gate_up_proj;
BLOOM: query_key_value; GPT-2: c_attn; MPT: Wqkv), with the separate names they replace."""

HEAD_AND_EMBEDDINGS = {
    "lm_head": "the output head",
    "embed_out": "the output head",
    "embed_tokens": "the token embedding",
    "embed_in": "the token embedding",
    "wte": "the token embedding",
    "word_embeddings": "the token embedding",
    "embed_positions": "the position embedding",
    "wpe": "the position embedding",
}
"""The output heads and embeddings of causal LMs, by name: the loaded model lists them among
the modules LoRA can attach to, but they are no linear layers of the model, and PEFT's
all-linear (what TRL and peftkit use) leaves them out, so messages never list them as such."""

PATH = "lora.target_modules"


def parse_target_list(text: str) -> tuple[str, ...]:
    """The module names of a comma-separated list, as typed on a command line.

    Spaces around a name are dropped: ``"q_proj, v_proj"`` is two names, not ``q_proj`` and a
    name with a leading space that matches nothing.
    """
    names = tuple(name.strip() for name in text.split(","))
    kept = [name for name in names if name]
    if len(kept) < len(names):
        fix = f"--targets {','.join(kept)}" if kept else f"--targets {ALL_LINEAR}"
        raise RecipeError(
            f"--targets {text!r}: an empty module name (two commas in a row, or a comma at an "
            f"end). Fix: {fix}"
        )
    if ALL_LINEAR in names and len(names) > 1:
        raise RecipeError(
            f"--targets {text!r}: {ALL_LINEAR} already means every linear layer and cannot be "
            f"combined with names. Fix: --targets {ALL_LINEAR}"
        )
    return names


def matches(target: str, name: str) -> bool:
    """Whether PEFT attaches ``target`` to the module called ``name``.

    ``name`` is a module's full dotted name, or only its last component when that is all that
    is known (a config's layer names): then only the target's last component can be compared.
    """
    if name == target or name.endswith(f".{target}"):
        return True
    return "." not in name and target.rsplit(".", 1)[-1] == name


def check_targets(
    targets: str | Sequence[str], available: Iterable[str], where: str, path: str = PATH
) -> None:
    """Refuse a target list with a name that matches none of ``available`` (the adaptable
    modules of ``where``, e.g. "the model /path", as full names or last components).

    ``path`` is the recipe field of the list: LoRA adapters (lora.target_modules) go on linear
    layers, while modules trained in full (lora.modules_to_save) are often the output head or
    the embeddings, so the names offered and the fix depend on it.
    """
    if targets == ALL_LINEAR:
        return
    if isinstance(targets, str):
        raise RecipeError(
            f"{path} {targets!r}: a list of module names, or '{ALL_LINEAR}'. "
            f"Fix: {path}=[{targets}] or {path}={ALL_LINEAR}"
        )
    names = list(dict.fromkeys(available))
    missing = list(dict.fromkeys(t for t in targets if not any(matches(t, n) for n in names)))
    if not missing:
        return
    adapters = path == PATH
    short = list(dict.fromkeys(name.rsplit(".", 1)[-1] for name in names))
    offered = [name for name in short if name not in HEAD_AND_EMBEDDINGS] if adapters else short
    fused = {t: name for t in missing if (name := _fused(t, short)) is not None}
    kind = "layer" if adapters else "module"
    rule = (
        f"{', '.join(missing)} {'matches' if len(missing) == 1 else 'match'} no {kind} of "
        f"{where}, whose {'linear layers' if adapters else 'modules'} are "
        f"{', '.join(offered) or '(none)'}"
    )
    outside = {
        t: HEAD_AND_EMBEDDINGS[t.rsplit(".", 1)[-1]] for t in missing if adapters and _outside(t)
    }
    if outside:
        what = ", ".join(f"{t} is {kind}" for t, kind in outside.items())
        rule += (
            f"; {what}: TRL's SFTTrainer refuses a LoRA adapter on the output head, PEFT's "
            "all-linear leaves the embeddings out, and peftkit's estimate supports neither an "
            "adapter there nor training them in full (lora.modules_to_save): adapt the linear "
            "layers instead"
        )
    for name in dict.fromkeys(fused.values()):
        parts = FUSED[name]
        rule += (
            f"; it fuses {', '.join(parts[:-1])} and {parts[-1]} into one {name} "
            f"(an adapter on {name} covers {'both' if len(parts) == 2 else 'all three'})"
        )
    suggested = [_instead(t, fused, offered, t in outside) if t in missing else t for t in targets]
    kept = list(dict.fromkeys(name for name in suggested if name is not None))
    subject = f"with the LoRA targets of {where}" if adapters else f"with {path} of {where}"
    fix = _fix(kept) if adapters else _saved_fix(kept, path)
    raise ProblemsError(subject, [Problem(path, tuple(targets), rule, fix)])


def _instead(target: str, fused: dict[str, str], offered: list[str], drop: bool) -> str | None:
    """The name to use in place of the unmatched ``target``; None to drop it."""
    if drop:
        return None
    return fused.get(target) or _close(target, offered)


def _outside(target: str) -> bool:
    """Whether ``target`` names an output head or an embedding, not a layer inside the model."""
    return target.rsplit(".", 1)[-1] in HEAD_AND_EMBEDDINGS


def _fused(target: str, short: list[str]) -> str | None:
    """The model's fused projection that ``target`` is a part of, if any."""
    last = target.rsplit(".", 1)[-1]
    return next((name for name, parts in FUSED.items() if last in parts and name in short), None)


def _close(target: str, short: list[str]) -> str | None:
    """The model's module name that ``target`` most likely misspells, if any."""
    close = difflib.get_close_matches(target.rsplit(".", 1)[-1], short, n=1, cutoff=0.75)
    return close[0] if close else None


def _fix(names: list[str]) -> str:
    """The corrected list, written for each place a target list is given."""
    if not names:
        return (
            f"target every linear layer: --targets {ALL_LINEAR} (peftkit estimate), "
            f"{PATH}={ALL_LINEAR} (a recipe override), target_modules: {ALL_LINEAR} "
            "(a recipe file); or pick names from that list"
        )
    return (
        f"target {', '.join(names)}: --targets {','.join(names)} (peftkit estimate), "
        f"{PATH}=[{','.join(names)}] (a recipe override), "
        f"target_modules: [{', '.join(names)}] (a recipe file)"
    )


def _saved_fix(names: list[str], path: str) -> str:
    """The corrected list of modules trained in full, as an override and in a recipe file."""
    key = path.rsplit(".", 1)[-1]
    if not names:
        return f"save no module in full: {path}=[] (a recipe override), {key}: [] (a recipe file)"
    return (
        f"save {', '.join(names)}: {path}=[{','.join(names)}] (a recipe override), "
        f"{key}: [{', '.join(names)}] (a recipe file)"
    )
