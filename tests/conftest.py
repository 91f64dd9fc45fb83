import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny tensors: on a shared 2-core machine, thread hand-offs cost more than the maths."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


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
