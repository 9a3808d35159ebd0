"""Shared fixtures: the tiny model (built once per session, from :mod:`peftkit.testing`) and
one torch thread for every test.

The machine the tests run on may have two busy cores: torch then spends most of its time
spinning its threads against each other (a forward pass of the tiny model goes from ~2 ms to
~200 ms), so every test runs on one thread; subprocesses get ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from peftkit.testing import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the tiny model and its tokenizer, built once per test session."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
