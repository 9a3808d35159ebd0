"""The best adapter is written atomically: a process killed mid-write leaves the previous
complete adapter (or none), never a half-written one. The crash is injected at exact points
of the save (a subprocess that exits abruptly there), not left to the timing of a signal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from peftkit.testing import peft_model

HERE = Path(__file__).resolve().parent

WRITER = """
import os, sys
from pathlib import Path

import torch

from peftkit.core import folders
from peftkit.callbacks import saving
from peftkit.testing import peft_model

model_dir, target, point, code = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
model = peft_model(model_dir)
if target.name != "first":  # a complete earlier save of step 0 exists
    saving.save_atomically(model, target, {"step": 0})


def crash(*args, **kwargs):
    os._exit(int(code))  # as abrupt as SIGKILL: no cleanup, no finally, no atexit


rename = os.rename
if point == "marker":  # the new weights are written, the marker file is not
    saving.json = type("json", (), {"dumps": staticmethod(crash)})  # the marker's json.dumps
elif point == "fsync":  # every file written, not yet flushed to disk
    folders.fsync_tree = crash  # inside folders.write_marker, which save_atomically calls
elif point == "swap":  # written and flushed; the swap into place has not happened
    folders.exchange = crash  # inside folders.swap_in, which save_atomically calls
    os.rename = lambda a, b: crash() if ".staging-" in str(a) else rename(a, b)
with torch.no_grad():  # step 1's weights differ from step 0's in every tensor
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.add_(1.0)
saving.save_atomically(model, target, {"step": 1})
sys.exit("not reached: the writer was to crash inside save_atomically")
"""
CRASHED = 17
"""The writer's exit code at the injected crash, so a crash anywhere else does not pass."""


def _crash_writer(model_dir: Path, target: Path, point: str) -> None:
    """Run WRITER in a subprocess and check that it died where it was told to."""
    writer = subprocess.run(
        [sys.executable, "-c", WRITER, str(model_dir), str(target), point, str(CRASHED)],
        env={**os.environ, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert writer.returncode == CRASHED, writer.stderr[-3000:]


@pytest.mark.parametrize("point", ["marker", "fsync", "swap"])
def test_a_writer_killed_mid_save_leaves_the_previous_adapter(
    tiny_model_dir: Path, tmp_path: Path, point: str
):
    """The writer dies (os._exit, no cleanup) at a chosen point of saving step 1 over a complete
    step 0: after the new weights are written but before the marker, before the flush, or
    before the swap. The target still holds step 0, byte for byte what step 0 wrote; the new
    weights exist only in a hidden staging folder, which no reader takes for the adapter."""
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file

    from peftkit.callbacks.saving import MARKER, check_target, save_atomically

    target = tmp_path / "best"
    _crash_writer(tiny_model_dir, target, point)
    step0 = {k: v.clone() for k, v in get_peft_model_state_dict(peft_model(tiny_model_dir)).items()}
    assert json.loads((target / MARKER).read_text()) == {"step": 0}
    on_disk = load_file(target / "adapter_model.safetensors")
    assert on_disk.keys() == step0.keys()
    assert all(torch.equal(on_disk[k], step0[k]) for k in step0)
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), target)
    assert all(torch.equal(v, step0[k]) for k, v in get_peft_model_state_dict(loaded).items())
    # What the crash left: one hidden staging folder holding step 1's (complete) weights.
    [staging] = [p for p in tmp_path.iterdir() if p.name != "best"]
    assert staging.name.startswith(".best.staging-")
    half = load_file(staging / "adapter_model.safetensors")
    assert all(torch.equal(half[k], step0[k] + 1) for k in step0)
    assert (staging / MARKER).is_file() == (point != "marker")
    check_target(target)  # the adapter folder is still peftkit's, so the next save may replace it
    save_atomically(peft_model(tiny_model_dir), target, {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]  # the leftover is cleared
    assert json.loads((target / MARKER).read_text()) == {"step": 2}


def test_a_writer_killed_before_its_first_swap_leaves_no_adapter(
    tiny_model_dir: Path, tmp_path: Path
):
    """No earlier save: a writer killed before its rename leaves no ``first`` folder at all
    (the staging folder is hidden), so nothing half-written can be loaded as the adapter."""
    target = tmp_path / "first"
    _crash_writer(tiny_model_dir, target, "swap")
    assert not target.exists()
    [staging] = list(tmp_path.iterdir())
    assert staging.name.startswith(".first.staging-")


def test_a_later_save_clears_what_a_killed_writer_left(tiny_model_dir: Path, tmp_path: Path):

    from peftkit.callbacks.saving import save_atomically

    stale = tmp_path / ".best.staging-killed"
    stale.mkdir()
    (stale / "adapter_model.safetensors").write_bytes(b"half")
    save_atomically(peft_model(tiny_model_dir), tmp_path / "best", {"step": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_the_saved_folder_and_its_marker(tiny_model_dir: Path, tmp_path: Path):
    """The folder (and the folders above it) are made, readable as the umask allows (not
    mkdtemp's private 0700); it holds the adapter and the marker, whose text is the info as
    indented JSON; a second save replaces it."""
    from peftkit.callbacks.saving import MARKER, save_atomically
    from peftkit.core.folders import MARKER as FOLDER_MARKER

    model = peft_model(tiny_model_dir)
    before = os.umask(0o027)
    try:
        target = save_atomically(model, tmp_path / "a" / "b" / "best", {"metric": "eval_loss"})
    finally:
        os.umask(before)
    assert target == tmp_path / "a" / "b" / "best"
    assert target.stat().st_mode & 0o777 == 0o750
    assert (target / MARKER).read_text() == '{\n  "metric": "eval_loss"\n}'
    assert (target / "adapter_model.safetensors").is_file()
    marker = json.loads((target / FOLDER_MARKER).read_text())  # what lets a later save replace it
    assert marker["command"] == "save_best" and marker["metric"] == "eval_loss"
    assert {"adapter_model.safetensors", MARKER} <= set(marker["files"])
    save_atomically(model, str(target), {"step": 2})
    assert json.loads((target / MARKER).read_text()) == {"step": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["best"]


def test_a_failed_save_leaves_the_previous_folder_and_no_staging(
    tiny_model_dir: Path, tmp_path: Path
):
    """save_pretrained raising (a full disk, say): the error reaches the caller, the earlier
    save is untouched, and the staging folder is gone."""
    from peftkit.callbacks.saving import MARKER, save_atomically

    model = peft_model(tiny_model_dir)
    target = save_atomically(model, tmp_path / "best", {"step": 1})

    class DiskFull:
        def save_pretrained(self, folder: Path) -> None:
            (Path(folder) / "adapter_model.safetensors").write_bytes(b"half")
            raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        save_atomically(DiskFull(), target, {"step": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
    assert json.loads((target / MARKER).read_text()) == {"step": 1}


def test_a_target_that_is_a_file_is_refused_naming_the_setting(tmp_path: Path):
    from peftkit.callbacks.saving import check_target
    from peftkit.core.errors import RecipeError

    target = tmp_path / "best"
    target.write_text("mine")
    with pytest.raises(RecipeError) as info:
        check_target(target)
    assert (
        str(info.value)
        == f"save_best_to: {target}: a file, not a folder. Fix: choose a folder name."
    )
    with pytest.raises(RecipeError, match=r"^output_dir: "):
        check_target(target, "output_dir")


def test_a_leftover_that_cannot_be_removed_does_not_stop_a_save(tiny_model_dir: Path, tmp_path):
    """Clearing what a killed writer left is best effort: a leftover that is not a folder (so
    it cannot be removed as one) stays, and the save goes ahead."""
    from peftkit.callbacks.saving import MARKER, save_atomically

    (tmp_path / ".best.staging-odd").write_text("not a folder")
    save_atomically(peft_model(tiny_model_dir), tmp_path / "best", {"step": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".best.staging-odd", "best"]
    assert json.loads((tmp_path / "best" / MARKER).read_text()) == {"step": 1}


def test_the_folder_lists_what_peftkit_wrote_in_it(tiny_model_dir: Path, tmp_path: Path):
    """The inventory every folder peftkit writes carries: the command that wrote it, the info,
    and every file, which is what lets the next save replace the folder."""
    from peftkit.callbacks.saving import save_atomically
    from peftkit.core.folders import MARKER as INVENTORY

    target = save_atomically(peft_model(tiny_model_dir), tmp_path / "best", {"step": 3})
    inventory = json.loads((target / INVENTORY).read_text())
    assert (inventory["command"], inventory["step"]) == ("save_best", 3)
    assert sorted(inventory["files"]) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "peftkit_best.json",
    ]


def test_a_swap_that_fails_midway_reports_its_own_error(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A swap that dies after moving the staging folder (a real one cannot be made to): the
    caller gets the swap's error, not one from clearing a staging folder that is gone."""
    from peftkit.callbacks import saving

    def broken_swap(staging: Path, target: Path) -> None:
        os.rename(staging, target)
        raise OSError("the disk went away")

    monkeypatch.setattr(saving, "swap_in", broken_swap)
    with pytest.raises(OSError, match=r"^the disk went away$"):
        saving.save_atomically(peft_model(tiny_model_dir), tmp_path / "best", {"step": 1})
