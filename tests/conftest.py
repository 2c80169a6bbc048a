"""Suite-wide settings: no network downloads, a headless matplotlib backend, seeded torch per test."""
from __future__ import annotations

import os

import pytest
import torch

# A missing data set fails at once with the list of places searched instead of trying the network;
# tests of the download path remove this variable themselves.
os.environ.setdefault("PRUNEKIT_NO_DOWNLOAD", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Every test starts from the same torch RNG state, whatever ran before it."""
    torch.manual_seed(0)


@pytest.fixture
def single_thread():
    """Run a test on one torch thread (restored after): small ops on a busy 2-core machine otherwise spend
    most of their time in thread hand-offs. Opt in with `pytestmark = pytest.mark.usefixtures("single_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
