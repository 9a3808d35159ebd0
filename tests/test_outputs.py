"""Output folders on real files, without a run: what the marker records, what counts as a file
peftkit did not write, which outputs are refused, and a staging folder swapped in or thrown
away. (The same rules through ``peftkit train``/``merge``/``demo``:
tests/edge_cases/test_output_cases.py.)"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from peftkit.core.errors import RecipeError
from peftkit.core.folders import MARKER, exchange, foreign_files, inventory, swap_in
from peftkit.run.outputs import (
    NAME_MAX,
    OutputFolder,
    check_other_output,
    check_output,
    staging_of,
)

HASH_OF_BRACES = hashlib.sha256(b"{}").hexdigest()


def _written(folder: Path, files: dict[str, str]) -> Path:
    """``folder`` holding ``files`` and the marker that lists them, as peftkit leaves it."""
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    (folder / MARKER).write_text(json.dumps({"command": "train", "files": inventory(folder)}))
    return folder


# --- what peftkit wrote --------------------------------------------------------------------------


def test_the_inventory_records_every_files_size_and_content_hash(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("hello")
    (tmp_path / "b.bin").write_bytes(b"\x00" * 3)
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to("sub/a.txt")
    found = inventory(tmp_path)
    assert found == {
        "b.bin": [3, hashlib.sha256(b"\x00" * 3).hexdigest()],
        "link": [len("sub/a.txt"), hashlib.sha256(b"sub/a.txt").hexdigest()],  # the link itself
        "sub/a.txt": [5, hashlib.sha256(b"hello").hexdigest()],
    }
    assert list(found) == sorted(found)


def test_a_big_file_is_hashed_whole(tmp_path: Path) -> None:
    """Read in chunks of 1 MiB: a change after the first chunk still changes the hash."""
    data = bytearray(3 * 2**20 + 5)
    (tmp_path / "w.bin").write_bytes(bytes(data))
    before = inventory(tmp_path)["w.bin"]
    data[-1] = 1
    (tmp_path / "w.bin").write_bytes(bytes(data))
    after = inventory(tmp_path)["w.bin"]
    assert before[0] == after[0] and before[1] != after[1]
    assert after[1] == hashlib.sha256(bytes(data)).hexdigest()


def test_files_as_peftkit_wrote_them_are_not_foreign(tmp_path: Path) -> None:
    folder = _written(tmp_path, {"metrics.json": "{}", "adapter/config.json": "[1]"})
    assert foreign_files(folder) == []


@pytest.mark.parametrize(
    ("change", "foreign"),
    [
        pytest.param(lambda f: (f / "notes.txt").write_text("mine"), ["notes.txt"], id="added"),
        pytest.param(
            lambda f: (f / "adapter" / "x").write_text("x"),
            ["adapter/x"],
            id="added-in-a-subfolder",
        ),
        pytest.param(
            lambda f: (f / "metrics.json").write_text("{ }"),
            ["metrics.json"],
            id="edited-to-another-size",
        ),
        pytest.param(
            lambda f: (f / "metrics.json").write_text("[]"),
            ["metrics.json"],
            id="edited-to-the-same-size",
        ),
        pytest.param(lambda f: (f / "metrics.json").unlink(), [], id="removed"),
    ],
)
def test_what_changed_since_peftkit_wrote_it_is_foreign(tmp_path: Path, change, foreign) -> None:
    """A removed file loses nothing; anything added or edited (even to the same size, with
    its modification time put back) is the user's."""
    folder = _written(tmp_path, {"metrics.json": "{}", "adapter/config.json": "[1]"})
    times = (folder / "metrics.json").stat()
    change(folder)
    if (folder / "metrics.json").exists():
        os.utime(folder / "metrics.json", ns=(times.st_atime_ns, times.st_mtime_ns))
    assert foreign_files(folder) == foreign


@pytest.mark.parametrize(
    "marker",
    [None, "not json", '{"command": "train"}', '{"files": ["metrics.json"]}', "[1, 2]"],
    ids=["missing", "not-json", "no-files", "files-not-a-mapping", "not-an-object"],
)
def test_without_a_readable_marker_every_file_is_foreign(tmp_path: Path, marker) -> None:
    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b.txt").write_text("b")
    if marker is not None:
        (tmp_path / MARKER).write_text(marker)
    expected = ["a/b.txt", "metrics.json"] + ([] if marker is None else [MARKER])
    assert sorted(foreign_files(tmp_path)) == sorted(expected)


def test_an_entry_in_another_form_is_not_taken_as_peftkits(tmp_path: Path) -> None:
    """An older marker's [size, mtime] or a malformed entry does not vouch for a file."""
    (tmp_path / "a.txt").write_text("a")
    size, digest = 1, hashlib.sha256(b"a").hexdigest()
    for entry in ([size, (tmp_path / "a.txt").stat().st_mtime_ns], [size], [size, digest, 0],
                  {"size": size}, digest, [2, digest], [size, digest.upper()]):  # fmt: skip
        (tmp_path / MARKER).write_text(json.dumps({"files": {"a.txt": entry}}))
        assert foreign_files(tmp_path) == ["a.txt"], entry
    (tmp_path / MARKER).write_text(json.dumps({"files": {"a.txt": [size, digest]}}))
    assert foreign_files(tmp_path) == []


def test_an_empty_folder_without_a_marker_names_its_folders(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    assert foreign_files(tmp_path) == ["x", "y"]


def test_another_marker_name(tmp_path: Path) -> None:
    """save_best_to's folder keeps its inventory in a marker of its own name."""
    (tmp_path / "adapter.bin").write_text("w")
    (tmp_path / "best.json").write_text(json.dumps({"files": inventory(tmp_path)}))
    assert foreign_files(tmp_path, "best.json") == []
    assert foreign_files(tmp_path) == ["adapter.bin", "best.json"]


# --- outputs refused -----------------------------------------------------------------------------


def _refused(output: Path | str, inputs=None, overwrite: bool = False) -> str:
    with pytest.raises(RecipeError) as info:
        check_output(output, inputs or {}, overwrite)
    return str(info.value)


def test_a_new_or_empty_output_is_accepted_as_an_absolute_path(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert check_output("runs/first", {}, False) == tmp_path / "runs" / "first"
    (tmp_path / "empty").mkdir()
    assert check_output(tmp_path / "empty", {}, False) == tmp_path / "empty"


def test_an_earlier_output_needs_overwrite(tmp_path: Path) -> None:
    out = _written(tmp_path / "out", {"metrics.json": "{}"})
    message = _refused(out)
    assert message == (
        f"--output {out}: the folder holds an earlier peftkit output. Fix: choose a new folder, "
        "or pass --overwrite to replace it."
    )
    assert check_output(out, {}, True) == out


def test_a_folder_with_foreign_files_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    out = _written(tmp_path / "out", {"metrics.json": "{}"})
    for i in range(7):
        (out / f"mine-{i}.txt").write_text("mine")
    message = _refused(out, overwrite=True)
    assert message.startswith(
        f"--output {out}: the folder holds mine-0.txt, mine-1.txt, mine-2.txt, mine-3.txt, "
        "mine-4.txt and 2 more, which peftkit did not write (or which changed since)"
    )
    assert message.endswith("Fix: choose a new folder, or move those files away first.")
    (out / "mine-6.txt").unlink()
    assert "mine-4.txt and 1 more, which" in _refused(out, overwrite=True)
    (out / "mine-5.txt").unlink()
    assert "holds mine-0.txt, mine-1.txt, mine-2.txt, mine-3.txt, mine-4.txt, which" in _refused(
        out, overwrite=True
    )
    for i in range(2, 5):
        (out / f"mine-{i}.txt").unlink()
    assert "holds mine-0.txt, mine-1.txt, which" in _refused(out, overwrite=True)


@pytest.mark.parametrize(
    ("output", "data", "clash"),
    [("d", "d", "is"), ("d", "d/t.jsonl", "holds"), ("d/run", "d", "lies inside")],
)
def test_an_output_touching_an_input_is_refused(tmp_path, output, data, clash) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "t.jsonl").write_text("{}\n")
    for overwrite in (False, True):
        message = _refused(tmp_path / output, {"--data": tmp_path / data}, overwrite)
        assert message.startswith(
            f"--output {tmp_path / output}: the output {clash} --data {tmp_path / data}, which "
            "the command reads; peftkit refuses it with or without --overwrite."
        )
    # inputs that are not local paths are not compared
    assert check_output(tmp_path / "o", {"--model": "org/model", "--eval-data": None}, False)


def test_the_working_folder_and_what_holds_it_are_refused(tmp_path, monkeypatch) -> None:
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert "the output is the folder you are working in" in _refused(".", overwrite=True)
    assert "the output holds the folder you are working in" in _refused("..", overwrite=True)


def test_names_files_and_folders_that_cannot_be_outputs(tmp_path: Path) -> None:
    assert _refused("  ") == "--output: empty. Fix: pass a folder name, e.g. --output runs/first."
    assert f"longer than {NAME_MAX} bytes" in _refused(tmp_path / ("x" * (NAME_MAX + 1)))
    assert check_output(tmp_path / ("x" * NAME_MAX), {}, False)
    (tmp_path / "f.txt").write_text("x")
    assert _refused(tmp_path / "f.txt") == f"--output {tmp_path / 'f.txt'}: a file, not a " + (
        "folder. Fix: choose a folder name."
    )
    assert _refused(tmp_path / "f.txt" / "run").startswith(
        f"--output {tmp_path / 'f.txt' / 'run'}: {tmp_path / 'f.txt'} is a file, not a folder."
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_a_folder_that_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "ro").mkdir(mode=0o555)
    assert "permission denied" in _refused(tmp_path / "ro" / "a" / "b")


def test_a_second_folder_must_not_lie_in_the_output_nor_touch_an_input(tmp_path: Path) -> None:
    out = tmp_path / "out"
    field = "callbacks.early_stopping.save_best_to"
    check_other_output(tmp_path / "best", field, out, {"--data": tmp_path / "missing.jsonl"})
    for inside in (out, out / "best"):
        with pytest.raises(RecipeError, match=f"^{field}: .* lies inside --output {out}, which"):
            check_other_output(inside, field, out, {})
    (tmp_path / "d").mkdir()
    with pytest.raises(RecipeError) as info:
        check_other_output(tmp_path / "d", field, out, {"--data": tmp_path / "d"})
    assert str(info.value) == (
        f"{field}: {tmp_path / 'd'} is --data {tmp_path / 'd'}, which the command reads. Fix: "
        f"set {field}=null, or a folder outside your inputs."
    )


# --- staging, swapping in, throwing away -------------------------------------------------------


def test_a_committed_output_replaces_the_earlier_one_with_its_marker(tmp_path: Path) -> None:
    target = _written(tmp_path / "runs" / "out", {"old.txt": "old"})
    with OutputFolder(target, "train") as folder:
        assert folder.replaces and folder.staging == staging_of(target)
        assert folder.staging == tmp_path / "runs" / ".out.peftkit-staging"
        (folder.staging / "metrics.json").write_text("{}")
        assert folder.commit({"seed": 1}) == target
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "metrics.json"]
    marker = json.loads((target / MARKER).read_text())
    assert marker == {"command": "train", "seed": 1, "files": {"metrics.json": [2, HASH_OF_BRACES]}}
    assert foreign_files(target) == []
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["out"]


def test_a_failed_command_leaves_the_earlier_output_and_no_folder_it_made(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out"
    with pytest.raises(KeyError), OutputFolder(target, "merge") as folder:
        assert not folder.replaces and folder.staging.is_dir()
        (folder.staging / "half.bin").write_text("x")
        raise KeyError("crash")
    assert not (tmp_path / "a").exists()  # the folders made for it are gone too
    earlier = _written(tmp_path / "out", {"m.json": "{}"})
    with pytest.raises(KeyError), OutputFolder(earlier, "train"):
        raise KeyError("crash")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert foreign_files(earlier) == [] and (earlier / "m.json").read_text() == "{}"


def test_a_run_with_checkpoints_keeps_its_staging_folder_for_resume(tmp_path, caplog) -> None:
    target = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt), OutputFolder(target, "train") as folder:
        checkpoint = folder.staging / "checkpoints" / "checkpoint-2"
        checkpoint.mkdir(parents=True)
        (checkpoint / "trainer_state.json").write_text("{}")
        raise KeyboardInterrupt
    assert (checkpoint / "trainer_state.json").is_file() and not target.exists()
    assert caplog.messages == [
        f"the run failed after checkpoint-2; its checkpoints are kept in {folder.staging}: add "
        "--resume auto to the same command to continue from there."
    ]
    with OutputFolder(target, "train", resume=True) as again:  # --resume continues in it
        assert (checkpoint / "trainer_state.json").is_file()
        again.commit()
    with OutputFolder(tmp_path / "other", "train") as fresh:
        (fresh.staging / "x").write_text("left by a killed run")
    with OutputFolder(tmp_path / "other", "train") as fresh:  # without --resume: started afresh
        assert list(fresh.staging.iterdir()) == []
        fresh.discard()


def test_other_processes_write_nothing(tmp_path: Path, caplog) -> None:
    target = tmp_path / "out"
    with OutputFolder(target, "train", main_process=False) as folder:
        assert not folder.staging.exists()
        assert folder.commit() == target
        folder.discard()
    assert list(tmp_path.iterdir()) == []
    checkpoint = staging_of(target) / "checkpoints" / "checkpoint-2"  # the main process's
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    with pytest.raises(KeyError), OutputFolder(target, "train", main_process=False):
        raise KeyError("crash on every rank")
    assert caplog.messages == [] and (checkpoint / "trainer_state.json").is_file()


def test_discarding_removes_only_the_empty_folders_it_made(tmp_path: Path) -> None:
    folder = OutputFolder(tmp_path / "a" / "b" / "out", "train").__enter__()
    (tmp_path / "a" / "mine.txt").write_text("written meanwhile")
    folder.discard()
    folder.discard()  # a second time changes nothing
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["mine.txt"]


def test_a_folder_that_cannot_be_made_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("a file")
    with pytest.raises(RecipeError, match=r"--output .*cannot write beside it"):
        OutputFolder(tmp_path / "f" / "out", "train").__enter__()
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_swapping_in_and_exchanging(tmp_path: Path) -> None:
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "n").write_text("new")
    swap_in(tmp_path / "new", tmp_path / "target")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
    (tmp_path / "newer").mkdir()
    (tmp_path / "newer" / "m").write_text("newer")
    swap_in(tmp_path / "newer", tmp_path / "target")
    assert [p.name for p in (tmp_path / "target").iterdir()] == ["m"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1").write_text("a")
    exchange(tmp_path / "a", tmp_path / "target")
    assert (tmp_path / "a" / "m").is_file() and (tmp_path / "target" / "1").is_file()


def test_folders_are_exchanged_in_one_step_where_the_system_can(tmp_path, monkeypatch) -> None:
    """On Linux one renameat2(RENAME_EXCHANGE) swaps the two folders: no rename happens, so
    there is no moment without the target. Where there is none (macOS, Windows: injected
    here), two renames do it, leaving nothing beside."""
    import sys

    from peftkit.core import folders

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.txt").write_text(name)

    def no_rename(*args: object) -> None:
        raise AssertionError(f"os.rename{args}: not one step")

    one_step = sys.platform == "linux"  # glibc (2.28 on) and musl (1.2.3 on) have renameat2
    assert (folders._renameat2() is not None) is one_step
    if one_step:
        with monkeypatch.context() as patched:
            patched.setattr(os, "rename", no_rename)
            patched.chdir(tmp_path)  # relative paths too, as save_best_to may be
            exchange(Path("a"), Path("b"))
        assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.txt"]
        assert [p.name for p in (tmp_path / "b").iterdir()] == ["a.txt"]
    monkeypatch.setattr(folders, "_renameat2", lambda: None)
    exchange(tmp_path / "a", tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["a.txt" if one_step else "b.txt"]
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["b.txt" if one_step else "a.txt"]


def test_a_resumed_output_carries_over_its_checkpoints_and_logs(tmp_path: Path) -> None:
    """Resuming a finished output copies its checkpoints and logs into the staging folder (links
    stay links), leaves alone what is missing or already there, and only on the main process."""
    earlier = _written(tmp_path / "out", {"checkpoints/checkpoint-2/w.bin": "w", "logs/a": "log"})
    (earlier / "checkpoints" / "latest").symlink_to("checkpoint-2")
    with OutputFolder(earlier, "train", main_process=False) as other_rank:
        other_rank.carry_over(earlier, "checkpoints")
        assert not other_rank.staging.exists()
    with OutputFolder(earlier, "train") as folder:
        (folder.staging / "logs").mkdir()
        (folder.staging / "logs" / "b").write_text("this run's")
        folder.carry_over(earlier, "checkpoints", "logs", "runs")
        copied = folder.staging / "checkpoints"
        assert (copied / "checkpoint-2" / "w.bin").read_text() == "w"
        assert (copied / "latest").is_symlink() and os.readlink(copied / "latest") == "checkpoint-2"
        assert sorted(p.name for p in (folder.staging / "logs").iterdir()) == ["b"]
        assert not (folder.staging / "runs").exists()
        folder.discard()
