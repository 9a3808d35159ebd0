"""``training.png`` straight from a log history, without a training run (matplotlib alone)."""

from __future__ import annotations

from pathlib import Path

from peftkit.plot import plot_training

HISTORY = [
    {"step": 1, "loss": 2.0},
    {"step": 2, "loss": 1.5, "eval_loss": 1.8},
    {"step": 3, "loss": 1.2},
    {"step": 4, "loss": 1.0, "eval_loss": 1.9},
    {"train_runtime": 1.0, "step": 4},
]


def test_plot_is_a_png_of_the_configured_size(tmp_path: Path):
    import matplotlib.image

    path = plot_training(HISTORY, tmp_path / "training.png", 2, 4, 4, "json-output on tiny")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (450, 800)  # figsize (8, 4.5) at 100 dpi
    assert image.std() > 0  # something was drawn
