"""Reading the fix of an error message the way a user does, to apply it in a test exactly as
written: ``set training.eval_strategy=no`` is the dotted override ``training.eval_strategy=no``
(what ``peftkit validate FILE training.eval_strategy=no`` takes; a value in double quotes may
hold spaces), ``--base model`` is that option, and "set A, or B" offers two alternatives."""

from __future__ import annotations

import re

ASSIGNMENT = re.compile(r"(?<![\w.-])([a-z_]+(?:\.[a-z_0-9]+)*)=(\[[^\]]*\]|\"[^\"]*\"|[^\s,;()]+)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)(?: (?!--)([^\s,;()]+))?")
ALTERNATIVES = re.compile(r",? or,? ")


def fix_of(message: str) -> str:
    """The text after the last "Fix:" (or "fix:") of a message."""
    return re.split(r"\b[Ff]ix:\s*", message)[-1].strip()


def overrides(fix: str) -> list[list[str]]:
    """Each alternative of ``fix`` as the dotted overrides it sets (alternatives without any
    are left out)."""
    found = []
    for alternative in ALTERNATIVES.split(fix):
        pairs = ASSIGNMENT.findall(alternative)
        if pairs:
            found.append([f"{key}={value.rstrip('.')}" for key, value in pairs])
    return found


def options(fix: str) -> list[list[str]]:
    """Each alternative of ``fix`` as the command-line options it names (``--overwrite``,
    ``--base model``); an option that is a flag in ``peftkit --help`` takes no value."""
    flags = _flags()
    found = []
    for alternative in ALTERNATIVES.split(fix):
        named = []
        for option, value in OPTION.findall(alternative):
            named += [option] if option in flags or not value else [option, value.rstrip(".")]
        if named:
            found.append(named)
    return found


def _flags() -> set[str]:
    """The options of every peftkit command that take no value (``--overwrite``, ``--json``)."""
    import typer

    from peftkit.cli import app

    group = typer.main.get_command(app)
    return {
        name
        for command in group.commands.values()  # type: ignore[attr-defined]
        for param in command.params
        if getattr(param, "is_flag", False)
        for name in param.opts
    }
