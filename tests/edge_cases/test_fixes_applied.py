"""The fix a command's error suggests, applied exactly as written, makes the command work.

Each case is a corpus case (it fails cleanly first, with nothing touched); then every
alternative of the message's fix is applied on its own, as the overrides or options it names,
and the command is run again: it must succeed. Recipe validation has the same test for its whole
table (tests/test_fixes.py); this one covers what only a run can find.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus import Case, run_case
from fix_reader import applied, fix_of, options, overrides
from test_model_cases import MODELS, ROWS, train
from test_output_cases import previous_run
from train_helpers import run_main

BY_ID = {case.id: case for case in MODELS}
CASES = [
    (BY_ID["metric-never-produced"], overrides),
    (BY_ID["json-rate-without-generation"], overrides),
    (BY_ID["max-length-beyond-context"], overrides),
    (BY_ID["targets-match-nothing"], overrides),
    (BY_ID["one-target-matches-nothing"], overrides),
    (BY_ID["merge-base-of-another-size"], options),
    (BY_ID["merge-an-8-bit-adapter"], options),
    (
        Case("evaluation-without-data", train("training.eval_fraction=0"),
             ("training.eval_strategy",), ROWS, model=True),
        overrides,
    ),
    (
        Case("output-holds-an-earlier-run", train(), ("--overwrite",),
             ROWS, previous_run,
             model=True),
        options,
    ),
]  # fmt: skip


@pytest.mark.parametrize(("case", "read"), [pytest.param(c, r, id=c.id) for c, r in CASES])
def test_the_suggested_fix_makes_the_command_work(
    case: Case, read, tmp_path: Path, monkeypatch, tiny_model_dir: Path
) -> None:
    message = run_case(case, tmp_path, monkeypatch, tiny_model_dir)
    alternatives = read(fix_of(message))
    assert alternatives, f"nothing to apply in: {message}"
    for number, extra in enumerate(alternatives):
        args = applied(case.args, extra)
        if "--output" in args and "--overwrite" not in extra:  # each try writes a new folder
            args[args.index("--output") + 1] = f"fixed-{number}"
        code, _, err = run_main(monkeypatch, *args)
        assert code == 0, f"{' '.join(extra)} did not fix it:\n{err[-3000:]}"
