import pytest
import torch


def _torch_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def one_thread():
    """Tiny tensors: on a shared 2-core machine, thread hand-offs cost more than the maths."""
    yield from _torch_threads(1)


@pytest.fixture
def two_threads():
    """torch on two threads, as a 2-core machine gives it (what the background views need)."""
    yield from _torch_threads(2)


@pytest.fixture(autouse=True, scope="session")
def float32_by_default():
    """The tests' trajectories are pinned in float32; on a CPU with native bf16 the default
    would time both precisions and could choose either. Tests of that rule unset this."""
    import os

    old = os.environ.get("NACVAE_AMP")
    os.environ["NACVAE_AMP"] = "off"
    yield
    if old is None:
        os.environ.pop("NACVAE_AMP", None)
    else:
        os.environ["NACVAE_AMP"] = old
