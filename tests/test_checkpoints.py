"""Which checkpoint ``--resume`` continues from, on real folders: the last complete one, never
one cut short, and a killed run's checkpoints kept unless the user says otherwise. (Resuming a
real run from them: tests/test_run_lifecycle.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from peftkit.core.errors import RecipeError
from peftkit.run.checkpoints import CHECKPOINTS, check_unfinished, find_checkpoint, last_checkpoint


def _checkpoints(folder: Path, *steps: int, cut_short: tuple[int, ...] = ()) -> Path:
    """``folder/checkpoints`` with a checkpoint-N folder for each step; those in ``cut_short``
    lack the trainer_state.json the Trainer writes last."""
    for step in (*steps, *cut_short):
        checkpoint = folder / CHECKPOINTS / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True)
        (checkpoint / "adapter_model.safetensors").write_bytes(b"weights")
        if step not in cut_short:
            (checkpoint / "trainer_state.json").write_text("{}")
    return folder / CHECKPOINTS


def test_the_last_complete_checkpoint_by_step_not_by_name(tmp_path: Path) -> None:
    """checkpoint-10 comes after checkpoint-9 (numbers, not text); checkpoint-12 was cut short;
    other folders and files are not checkpoints."""
    folder = _checkpoints(tmp_path, 2, 9, 10, cut_short=(12,))
    (folder / "checkpoint-99.tmp").mkdir()
    (folder / "best-adapter").mkdir()
    (folder / "checkpoint-50").write_text("a file")
    assert last_checkpoint(folder) == folder / "checkpoint-10"
    assert (
        last_checkpoint(_checkpoints(tmp_path / "one", 3))
        == tmp_path / "one" / CHECKPOINTS / "checkpoint-3"
    )


def test_no_checkpoint(tmp_path: Path) -> None:
    assert last_checkpoint(tmp_path / "missing") is None
    assert last_checkpoint(_checkpoints(tmp_path, cut_short=(4,))) is None
    (tmp_path / "file").write_text("x")
    assert last_checkpoint(tmp_path / "file") is None


def test_resume_auto_takes_a_killed_run_first_then_the_output(tmp_path: Path) -> None:
    target, staging = tmp_path / "out", tmp_path / ".out.peftkit-staging"
    _checkpoints(target, 8)
    assert find_checkpoint("auto", target, staging) == target / CHECKPOINTS / "checkpoint-8"
    _checkpoints(staging, 4)  # a killed run of the same output: its work is the newer
    assert find_checkpoint("auto", target, staging) == staging / CHECKPOINTS / "checkpoint-4"


def test_resume_auto_without_a_checkpoint_says_how_to_get_one(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RecipeError) as info:
        find_checkpoint("auto", target, tmp_path / ".out.peftkit-staging")
    assert str(info.value) == (
        f"--resume auto: no checkpoint of --output {target} to continue. Fix: run without "
        "--resume (with training.save=steps a run writes checkpoints to resume from)."
    )


def test_resume_path_takes_a_checkpoint_or_a_folder_of_them(tmp_path: Path) -> None:
    """A checkpoint itself; a folder of checkpoints (its last one); a run's output (its
    checkpoints/ folder's last one); ``~`` expanded."""
    folder = _checkpoints(tmp_path / "run", 2, 4)
    other = tmp_path / "elsewhere"
    assert find_checkpoint(folder / "checkpoint-2", other, other) == folder / "checkpoint-2"
    assert find_checkpoint(folder, other, other) == folder / "checkpoint-4"
    assert find_checkpoint(tmp_path / "run", other, other) == folder / "checkpoint-4"
    assert find_checkpoint(str(tmp_path / "run"), other, other) == folder / "checkpoint-4"


def test_resume_path_that_holds_no_checkpoint(tmp_path: Path) -> None:
    _checkpoints(tmp_path / "run", cut_short=(4,))
    for path in (tmp_path / "run", tmp_path / "run" / CHECKPOINTS / "checkpoint-4", tmp_path / "x"):
        with pytest.raises(RecipeError) as info:
            find_checkpoint(path, tmp_path / "out", tmp_path / "staging")
        assert str(info.value).startswith(f"--resume {path}: not a checkpoint (a checkpoint-N ")
        assert "Fix: pass --resume auto, or the path of a checkpoint-N folder." in str(info.value)


def test_a_killed_runs_checkpoints_are_not_thrown_away_unasked(tmp_path: Path) -> None:
    target, staging = tmp_path / "out", tmp_path / ".out.peftkit-staging"
    check_unfinished(target, staging, overwrite=False)  # nothing to lose
    _checkpoints(staging, 2, 6)
    with pytest.raises(RecipeError) as info:
        check_unfinished(target, staging, overwrite=False)
    assert str(info.value) == (
        f"--output {target}: a run of this output was stopped after checkpoint-6 and can "
        "continue from there. Fix: add --resume auto to continue it, or --overwrite to start over."
    )
    check_unfinished(target, staging, overwrite=True)
