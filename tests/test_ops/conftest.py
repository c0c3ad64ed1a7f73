"""Fixtures of the op tests."""
import pytest
import torch


@pytest.fixture
def two_threads():
    """Run the test with two intra-op threads, restoring the count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
