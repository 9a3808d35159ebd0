"""``training.png`` straight from a log history, without a training run (matplotlib alone): the
curves hold the logged losses at their steps, the marks stand at the steps given, and the PNG
is that figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from peftkit.run.plot import plot_training

HISTORY = [
    {"step": 1, "loss": 2.0},
    {"step": 2, "loss": 1.5, "eval_loss": 1.8},
    {"step": 3, "loss": 1.2},
    {"step": 4, "loss": 1.0, "eval_loss": 1.9},
    {"train_runtime": 1.0, "step": 4},
]


@pytest.fixture
def saved_figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every matplotlib figure saved during the test (the real savefig runs)."""
    from matplotlib.figure import Figure

    figures: list[Any] = []
    original = Figure.savefig

    def savefig(self: Any, *args: Any, **kwargs: Any) -> Any:
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures


def _lines(figure: Any) -> dict[str, tuple[list[float], list[float], str, str]]:
    """Each labelled line of the figure's one axes: its x and y data, colour and style."""
    from matplotlib.colors import to_hex

    (axes,) = figure.axes
    return {
        line.get_label(): (
            [float(x) for x in line.get_xdata()],
            [float(y) for y in line.get_ydata()],
            to_hex(line.get_color()),
            line.get_linestyle(),
        )
        for line in axes.get_lines()
    }


def test_the_curves_and_marks_are_the_runs(tmp_path: Path, saved_figures: list[Any]):
    import matplotlib.image

    path = plot_training(HISTORY, tmp_path / "training.png", 2, 4, 3, "json-output on tiny")
    (figure,) = saved_figures
    lines = _lines(figure)
    assert lines["training loss"][:2] == ([1, 2, 3, 4], [2.0, 1.5, 1.2, 1.0])
    assert lines["evaluation loss"][:2] == ([2, 4], [1.8, 1.9])
    marks = {label: (xs[0], colour, style) for label, (xs, _, colour, style) in lines.items()
             if "(step" in label}  # fmt: skip
    assert marks == {
        "best evaluation (step 2)": (2.0, "#2ca02c", "--"),
        "early stop (step 4)": (4.0, "#d62728", ":"),
        "overfitting detected (step 3)": (3.0, "#9467bd", "-."),
    }
    (axes,) = figure.axes
    assert axes.get_title() == "json-output on tiny"
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("optimizer step", "loss")
    assert [t.get_text() for t in axes.get_legend().get_texts()] == list(lines)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (450, 800)  # figsize (8, 4.5) at 100 dpi
    blue = (abs(image[..., 0] - 0x1F / 255) < 0.02) & (abs(image[..., 2] - 0xB4 / 255) < 0.02)
    assert blue.sum() > 200  # the training curve is drawn in the PNG, in its colour


def test_no_marks_without_steps_and_no_curve_without_losses(tmp_path, saved_figures):
    only_training = [h for h in HISTORY if "eval_loss" not in h]
    plot_training(only_training, tmp_path / "training.png", None, None, None, "t")
    (figure,) = saved_figures
    assert list(_lines(figure)) == ["training loss"]
    assert _lines(figure)["training loss"][:2] == ([1, 3], [2.0, 1.2])
