"""Reward tests run torch single-threaded: the tensors are tiny and the 2 CI cores are shared."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread_torch():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
