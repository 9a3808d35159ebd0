"""Shared fixtures: the tiny model (built once per session, from :mod:`peftkit.testing`) and
one torch thread for every test.

The machine the tests run on may have two busy cores: torch then spends most of its time
spinning its threads against each other (a forward pass of the tiny model goes from ~2 ms to
~200 ms), so every test runs on one thread; subprocesses get ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from peftkit.testing import build_tiny_model

KEEP_TINY_MODEL = "PEFTKIT_TEST_TINY_MODEL"
"""A folder to keep the tiny model in across test sessions (``make mutants`` runs thousands of
short sessions); unset, each session builds its own."""


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the tiny model and its tokenizer, built once per test session (or once in
    the folder ``$PEFTKIT_TEST_TINY_MODEL`` names)."""
    kept = os.environ.get(KEEP_TINY_MODEL)
    if kept and (Path(kept) / "config.json").is_file():
        return Path(kept)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))
    if not kept:
        return built
    Path(kept).parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(built, f"{kept}.{os.getpid()}")
    try:
        os.rename(f"{kept}.{os.getpid()}", kept)  # whole, or not at all
    except OSError:  # another session kept one first
        shutil.rmtree(f"{kept}.{os.getpid()}")
    return Path(kept)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
