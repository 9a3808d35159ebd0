"""The best adapter is written atomically: a process killed mid-write leaves the previous
complete adapter (or none), never a half-written one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peftkit.testing import peft_model

HERE = Path(__file__).resolve().parent

WRITER = """
import sys, itertools
from pathlib import Path

from peftkit.testing import peft_model
from peftkit.callbacks.saving import save_atomically
model = peft_model(Path(sys.argv[1]))
target = Path(sys.argv[2])
for step in itertools.count():
    save_atomically(model, target, {"step": step})
    print(step, flush=True)
"""


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.5])
def test_killed_writer_never_leaves_a_partial_adapter(tiny_model_dir: Path, tmp_path, delay):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    target = tmp_path / "best"
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tiny_model_dir), str(target)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert writer.stdout.readline().strip() == "0"  # one complete save exists
    time.sleep(delay)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert (target / "peftkit_best.json").is_file()
    json.loads((target / "peftkit_best.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    PeftModel.from_pretrained(base, target)  # loads: config and weights are complete


def test_a_later_save_clears_what_a_killed_writer_left(tiny_model_dir: Path, tmp_path: Path):

    from peftkit.callbacks.saving import save_atomically

    stale = tmp_path / ".best.staging-killed"
    stale.mkdir()
    (stale / "adapter_model.safetensors").write_bytes(b"half")
    save_atomically(peft_model(tiny_model_dir), tmp_path / "best", {"step": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
