"""Output folders that would lose something: ``train``, ``merge`` and ``demo`` refuse them before
anything is loaded or written, with or without ``--overwrite``; and runs that fail after the
output was accepted leave an earlier output exactly as it was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from corpus import Case, run_case, snapshot
from train_helpers import SHORT_GENERATION, SHORT_RUN, assert_user_error, earlier_output, run_main

from peftkit.core.folders import MARKER
from peftkit.testing import prompt_completion_rows

ROWS = prompt_completion_rows(12)
TRAIN = ("train", "json-output", "--model", "{model}", *SHORT_RUN, *SHORT_GENERATION)


def previous_run(folder: Path, *extra: str) -> None:
    """What an earlier `peftkit train --output out` left (its marker lists what it wrote), then
    ``extra`` files a user added inside it afterwards."""
    earlier_output(folder / "out", {"adapter/adapter_config.json": "{}", "metrics.json": "{}"})
    for name in extra:
        (folder / "out" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "out" / name).write_text("mine")


def with_previous_run(*extra: str):
    return lambda folder: previous_run(folder, *extra)


def previous_run_edited_in_place(folder: Path) -> None:
    """An earlier run whose metrics.json the user then edited to text of the same size, its
    modification time put back (as an editor or a copy that keeps times can leave it)."""
    previous_run(folder)
    edited = folder / "out" / "metrics.json"
    times = edited.stat()
    edited.write_text("[]")  # "{}" before: same size
    os.utime(edited, ns=(times.st_atime_ns, times.st_mtime_ns))


FAKE_ADAPTER = {
    "adapter/adapter_config.json": {"base_model_name_or_path": "base", "peft_type": "LORA"},
    "adapter/adapter_model.safetensors": b"not really",
}


def train(*args: str) -> tuple[str, ...]:
    return (*TRAIN, *args)


OUTPUTS = [
    # --- train: the output must not be, hold or lie inside an input ---
    Case("output-is-the-data-folder", train("--data", "d/t.jsonl", "--output", "d"),
         ("--output d", "holds", "--data"), {"d/t.jsonl": ROWS}, model=True),
    Case("output-is-the-data-folder-overwrite",
         train("--data", "d/t.jsonl", "--output", "d", "--overwrite"),
         ("holds", "--data"), {"d/t.jsonl": ROWS}, model=True),
    Case("output-is-the-data-file", train("--data", "t.jsonl", "--output", "t.jsonl"),
         ("is", "--data"), {"t.jsonl": ROWS}, model=True),
    Case("output-inside-a-saved-dataset",
         train("--data", "ds", "--output", "ds/run"), ("lies inside", "--data"),
         {"ds": ROWS}, model=True),
    Case("output-holds-the-eval-data",
         train("--data", "t.jsonl", "--eval-data", "e/held.jsonl", "--output", "e"),
         ("holds", "--eval-data"), {"t.jsonl": ROWS, "e/held.jsonl": ROWS}, model=True),
    Case("output-is-the-model", train("--data", "t.jsonl", "--output", "model", "--overwrite"),
         ("is", "--model"), {"t.jsonl": ROWS}, model=True),
    Case("output-inside-the-model",
         train("--data", "t.jsonl", "--output", "model/run"), ("lies inside", "--model"),
         {"t.jsonl": ROWS}, model=True),
    Case("output-holds-the-model",
         ("train", "json-output", "--model", "runs/model", "--data", "t.jsonl",
          "--output", "runs", *SHORT_RUN), ("holds", "--model"),
         {"t.jsonl": ROWS, "runs/model/config.json": {"model_type": "llama"}}),
    Case("output-holds-the-recipe-file",
         ("train", "cfg/mine.yaml", "--model", "{model}", "--data", "t.jsonl",
          "--output", "cfg", "--overwrite", *SHORT_RUN),
         ("holds", "recipe file"),
         {"t.jsonl": ROWS, "cfg/mine.yaml": "recipe: json-output\n"}, model=True),
    Case("output-is-the-working-folder", train("--data", "t.jsonl", "--output", "."),
         ("working in",), {"t.jsonl": ROWS}, model=True),
    Case("output-is-the-working-folder-overwrite",
         train("--data", "t.jsonl", "--output", ".", "--overwrite"), ("working in",),
         {"t.jsonl": ROWS}, model=True),
    Case("output-holds-the-working-folder", train("--data", "t.jsonl", "--output", ".."),
         ("working in",), {"t.jsonl": ROWS}, model=True),
    # --- train: what is there already ---
    Case("output-not-empty", train("--data", "t.jsonl", "--output", "out"),
         ("notes.txt", "did not write"), {"t.jsonl": ROWS, "out/notes.txt": "mine"}, model=True),
    Case("output-holds-an-earlier-run", train("--data", "t.jsonl", "--output", "out"),
         ("earlier peftkit output", "--overwrite"), {"t.jsonl": ROWS}, previous_run, True),
    Case("overwrite-a-folder-peftkit-did-not-write",
         train("--data", "t.jsonl", "--output", "out", "--overwrite"),
         ("notes.txt", "did not write"), {"t.jsonl": ROWS, "out/notes.txt": "mine"}, model=True),
    Case("overwrite-a-run-with-a-file-added",
         train("--data", "t.jsonl", "--output", "out", "--overwrite"),
         ("notes.txt", "did not write"), {"t.jsonl": ROWS}, with_previous_run("notes.txt"), True),
    Case("overwrite-a-run-with-a-file-added-in-a-subfolder",
         train("--data", "t.jsonl", "--output", "out", "--overwrite"),
         ("adapter/MY-NOTES.txt", "did not write"), {"t.jsonl": ROWS},
         with_previous_run("adapter/MY-NOTES.txt"), True),
    Case("overwrite-a-run-with-a-new-subfolder",
         train("--data", "t.jsonl", "--output", "out", "--overwrite"),
         ("checkpoints/my-eval/result.txt",), {"t.jsonl": ROWS},
         with_previous_run("checkpoints/my-eval/result.txt"), True),
    Case("overwrite-a-run-whose-file-was-edited",
         train("--data", "t.jsonl", "--output", "out", "--overwrite"),
         ("metrics.json", "changed"), {"t.jsonl": ROWS}, with_previous_run("metrics.json"), True),
    Case("overwrite-a-run-whose-file-was-edited-keeping-its-size-and-time",
         train("--data", "t.jsonl", "--output", "out", "--overwrite"),
         ("metrics.json", "changed"), {"t.jsonl": ROWS}, previous_run_edited_in_place, True),
    Case("overwrite-a-run-with-data-that-is-refused",
         train("--data", "bad.jsonl", "--output", "out", "--overwrite"), ("bad.jsonl",),
         {"bad.jsonl": [{"prompt": "p", "completion": None}] * 4}, previous_run, True),
    Case("overwrite-a-run-with-a-model-that-is-refused",
         ("train", "json-output", "--model", "nomodel", "--data", "t.jsonl", "--output", "out",
          "--overwrite", *SHORT_RUN), ("nomodel",), {"t.jsonl": ROWS}, previous_run),
    Case("overwrite-a-run-with-a-recipe-that-is-refused",
         train("--data", "t.jsonl", "--output", "out", "--overwrite", "lora.r=0"), ("lora.r",),
         {"t.jsonl": ROWS}, previous_run, True),
    Case("output-is-a-file", train("--data", "t.jsonl", "--output", "out.txt"),
         ("out.txt", "file"), {"t.jsonl": ROWS, "out.txt": "mine"}, model=True),
    Case("output-under-a-file", train("--data", "t.jsonl", "--output", "f.txt/run"),
         ("f.txt", "file"), {"t.jsonl": ROWS, "f.txt": "mine"}, model=True),
    Case("output-name-too-long", train("--data", "t.jsonl", "--output", "x" * 245),
         ("longer than", "shorter name"), {"t.jsonl": ROWS}, model=True),
    Case("output-name-far-too-long", train("--data", "t.jsonl", "--output", "y" * 300),
         ("longer than",), {"t.jsonl": ROWS}, model=True),
    Case("output-empty", train("--data", "t.jsonl", "--output", ""), ("--output", "empty"),
         {"t.jsonl": ROWS}, model=True),
    # --- a second folder the run writes: early stopping's save_best_to ---
    Case("save-best-to-inside-the-output",
         train("--data", "t.jsonl", "--output", "out",
               "callbacks.early_stopping.save_best_to=out/mybest"),
         ("callbacks.early_stopping.save_best_to", "lies inside --output"), {"t.jsonl": ROWS},
         model=True),
    Case("save-best-to-is-the-output",
         train("--data", "t.jsonl", "--output", "out", "callbacks.early_stopping.save_best_to=out"),
         ("callbacks.early_stopping.save_best_to", "replaced"), {"t.jsonl": ROWS}, model=True),
    Case("save-best-to-is-the-data-folder",
         train("--data", "d/t.jsonl", "--output", "out",
               "callbacks.early_stopping.save_best_to=d"),
         ("save_best_to", "--data"), {"d/t.jsonl": ROWS}, model=True),
    Case("save-best-to-a-folder-peftkit-did-not-write",
         train("--data", "t.jsonl", "--output", "out",
               "callbacks.early_stopping.save_best_to=mine"),
         ("callbacks.early_stopping.save_best_to", "notes.txt", "did not write"),
         {"t.jsonl": ROWS, "mine/notes.txt": "mine"}, model=True),
    Case("fsdp-in-one-process",
         train("--data", "t.jsonl", "--output", "out", "distributed.strategy=fsdp"),
         ("distributed.strategy", "torchrun", "distributed.strategy=none"), {"t.jsonl": ROWS},
         model=True),
    # --- merge ---
    Case("merge-output-is-the-adapter", ("merge", "adapter", "--output", "adapter"),
         ("is", "adapter"), FAKE_ADAPTER),
    Case("merge-output-is-the-adapter-overwrite",
         ("merge", "adapter", "--output", "adapter", "--overwrite"), ("is", "adapter"),
         FAKE_ADAPTER),
    Case("merge-output-inside-the-adapter", ("merge", "adapter", "--output", "adapter/merged"),
         ("lies inside", "adapter"), FAKE_ADAPTER),
    Case("merge-output-holds-the-adapter", ("merge", "run/adapter", "--output", "run"),
         ("holds", "adapter"), {f"run/{k}": v for k, v in FAKE_ADAPTER.items()}),
    Case("merge-output-is-the-base", ("merge", "adapter", "--output", "base", "--base", "base"),
         ("is", "--base"), {**FAKE_ADAPTER, "base/config.json": {"model_type": "llama"}}),
    Case("merge-output-not-empty", ("merge", "adapter", "--output", "m"), ("did not write",),
         {**FAKE_ADAPTER, "m/mine.txt": "mine"}),
    Case("merge-overwrite-foreign", ("merge", "adapter", "--output", "m", "--overwrite"),
         ("mine.txt", "did not write"), {**FAKE_ADAPTER, "m/mine.txt": "mine"}),
    Case("merge-output-is-the-working-folder", ("merge", "adapter", "--output", "."),
         ("working in",), FAKE_ADAPTER),
    # --- demo ---
    Case("demo-output-not-empty", ("demo", "--output", "d"), ("did not write",), {"d/x.txt": "x"}),
    Case("demo-overwrite-foreign", ("demo", "--output", "d", "--overwrite"),
         ("x.txt", "did not write"), {"d/x.txt": "x"}),
    Case("demo-output-is-a-file", ("demo", "--output", "d.txt"), ("file",), {"d.txt": "x"}),
    Case("demo-output-is-the-working-folder", ("demo", "--output", "."), ("working in",), {}),
    Case("demo-unknown-task", ("demo", "--task", "poems"), ("poems", "json"), {}),
]  # fmt: skip


@pytest.mark.parametrize("case", [c.param() for c in OUTPUTS])
def test_output_that_would_lose_something(case: Case, tmp_path, monkeypatch, tiny_model_dir):
    run_case(case, tmp_path, monkeypatch, tiny_model_dir)


def test_a_folder_peftkit_wrote_is_replaced_and_its_marker_lists_what_it_holds(
    tmp_path: Path, monkeypatch, tiny_model_dir: Path
) -> None:
    """--overwrite onto an earlier run: the new results replace it, and nothing else is left
    beside it (no staging folder)."""
    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    args = [a.replace("{model}", str(tiny_model_dir)) for a in TRAIN]
    out = tmp_path / "out"
    first = run_main(monkeypatch, *args, "--data", str(data), "--output", str(out))
    assert first[0] == 0, first[2]
    marker = json.loads((out / MARKER).read_text())
    assert marker["command"] == "train"
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert set(marker["files"]) == written - {MARKER}
    before = (out / "metrics.json").read_bytes()
    code, _, err = run_main(
        monkeypatch, *args, "training.seed=7", "--data", str(data), "--output", str(out),
        "--overwrite",
    )  # fmt: skip
    assert code == 0, err
    assert (out / "metrics.json").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "t.jsonl"]


def test_a_crash_after_the_checks_leaves_the_earlier_run_untouched(
    tmp_path: Path, monkeypatch, tiny_model_dir: Path
) -> None:
    """A failure once training has started (here: the trainer's own error, raised from a
    callback) ends with the earlier output as it was and no half-written folder beside it."""
    from corpus import write_files

    write_files(tmp_path, {"t.jsonl": ROWS})
    previous_run(tmp_path)
    before = snapshot(tmp_path)
    import transformers

    def explode(*_args, **_kwargs):
        raise RuntimeError("simulated crash in the middle of training")

    monkeypatch.setattr(transformers.Trainer, "training_step", explode)
    args = [a.replace("{model}", str(tiny_model_dir)) for a in TRAIN]
    with pytest.raises(RuntimeError, match="simulated crash"):
        from peftkit.cli import main

        monkeypatch.setattr(
            "sys.argv",
            [
                "peftkit",
                *args,
                "--data",
                str(tmp_path / "t.jsonl"),
                "--output",
                str(tmp_path / "out"),
                "--overwrite",
            ],
        )
        main()
    assert snapshot(tmp_path) == before


def test_an_output_that_cannot_be_written_is_a_user_error(
    tmp_path: Path, monkeypatch, tiny_model_dir: Path
) -> None:
    """A parent folder the process cannot write to (immutable, so that even root is refused):
    exit 2 naming it, before training."""
    import shutil
    import subprocess

    locked = tmp_path / "locked"
    locked.mkdir()
    if (
        shutil.which("chattr") is None
        or subprocess.run(
            ["chattr", "+i", str(locked)], capture_output=True, check=False
        ).returncode
    ):
        pytest.skip("chattr +i is not available on this file system")
    try:
        data = tmp_path / "t.jsonl"
        data.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
        args = [a.replace("{model}", str(tiny_model_dir)) for a in TRAIN]
        code, _, err = run_main(
            monkeypatch, *args, "--data", str(data), "--output", str(locked / "run")
        )
        assert_user_error(code, err, "locked", "Fix:")
        assert list(locked.iterdir()) == []
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
