"""``training.png``: training and evaluation loss, with the best step, the early stop and any
overfitting warning marked, so the run can be judged at a glance."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_training(
    log_history: list[dict[str, Any]],
    path: Path,
    best_step: int | None,
    stop_step: int | None,
    overfit_step: int | None,
    title: str,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and "step" in h]
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    if train:
        axes.plot(*zip(*train, strict=True), label="training loss", color="tab:blue")
    if evals:
        axes.plot(*zip(*evals, strict=True), "o-", label="evaluation loss", color="tab:orange")
    marks = [
        (best_step, "best evaluation", "tab:green", "--"),
        (stop_step, "early stop", "tab:red", ":"),
        (overfit_step, "overfitting detected", "tab:purple", "-."),
    ]
    for step, label, color, style in marks:
        if step is not None:
            axes.axvline(step, color=color, linestyle=style, label=f"{label} (step {step})")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
