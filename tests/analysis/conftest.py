import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Eigensolvers on small matrices slow down badly when threads oversubscribe a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
