"""Model tests run single-threaded: their tensors are tiny, and on a busy 2-core machine OpenMP's
thread hand-offs were measured to make a 32-wide forward ~40x slower (1.5 s vs 0.04 s)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
