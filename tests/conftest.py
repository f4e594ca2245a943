"""Shared fixtures: every test gets its own archive cache, and the sample's location."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "engine" / "data" / "sample"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Keep the columnar archive cache out of the user's home directory."""
    monkeypatch.setenv("PAPERTAPE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def sample_files() -> list[Path]:
    return sorted(SAMPLE_DIR.glob("BTCUSDT*.csv.gz"))


def _torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    """Tiny models run fastest on one thread, and do not fight other work for the cores."""
    yield from _torch_threads(1)


@pytest.fixture
def two_torch_threads():
    """Two OpenMP threads, as a live forward on this machine runs."""
    yield from _torch_threads(2)
