import pytest
import torch

from nacvae.train import precision
from nacvae.train.precision import has_native_bf16, resolve_amp, use_bf16


@pytest.mark.parametrize("device_type, requested, native, expected", [
    ("cuda", None, True, True),     # Ampere and newer: bf16 by default
    ("cuda", None, False, False),   # pre-Ampere: emulated bf16 is slower, so float32
    ("cuda", True, False, True),    # --amp asks for it anyway
    ("cuda", False, True, False),   # --no-amp
    ("cpu", None, True, False),     # CPUs: float32 unless asked
    ("cpu", True, False, True),
])
def test_bf16_decision(device_type, requested, native, expected):
    assert use_bf16(device_type, requested, native) is expected


class _FakeDevice:
    def __init__(self, device):
        self.device = device

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("major, expected", [(7, False), (8, True), (9, True)])
def test_default_follows_native_bf16_without_emulation(monkeypatch, major, expected):
    calls = []

    def is_bf16_supported(including_emulation=True):
        calls.append(including_emulation)
        return major >= 8 or including_emulation  # a Volta GPU "supports" bf16 only by emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "device", _FakeDevice)
    cuda = torch.device("cuda", 0)
    assert has_native_bf16(cuda) is expected
    assert resolve_amp(cuda, None) is expected
    assert resolve_amp(cuda, True) is True and resolve_amp(cuda, False) is False
    assert calls and all(flag is False for flag in calls)


def test_cpu_never_asks_cuda(monkeypatch):
    monkeypatch.setattr(precision, "has_native_bf16", lambda device: pytest.fail("queried CUDA for a CPU"))
    assert resolve_amp(torch.device("cpu"), None) is False
    assert resolve_amp(torch.device("cpu"), True) is True


@pytest.mark.parametrize("major, expected", [(7, False), (8, True)])
def test_older_pytorch_falls_back_to_the_compute_capability(monkeypatch, major, expected):
    def is_bf16_supported():  # no including_emulation argument before PyTorch 2.3
        return True

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, 0))
    monkeypatch.setattr(torch.cuda, "device", _FakeDevice)
    assert has_native_bf16(torch.device("cuda", 0)) is expected
