"""--sync-bn converts the trained encoder only; --compile with --sync-bn is refused."""

import torch
from torch import nn

from tests.clitools import assert_clean_failure, nacvae


class WrappedForTest(nn.Module):
    def __init__(self, module, **options):
        super().__init__()
        self.module = module


def batch_norms(module: nn.Module) -> tuple[int, int]:
    """(plain BatchNorm layers, SyncBatchNorm layers) in ``module``."""
    sync = sum(isinstance(m, nn.SyncBatchNorm) for m in module.modules())
    plain = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()) - sync
    return plain, sync


def test_sync_bn_converts_the_trained_encoder_not_the_key_encoder(monkeypatch):
    from nacvae import distributed
    from nacvae.models.backbones import build_backbone
    from nacvae.models.heads import PretrainEncoder
    from nacvae.methods.nac import NACMomentum
    from nacvae.train.methods import prepare_method

    torch.manual_seed(0)
    backbone, f = build_backbone("smallconv", 1, 8)
    method = NACMomentum(PretrainEncoder(backbone, f, 16), 0.1, queue_size=8)
    layers = batch_norms(method.encoder)[0]
    assert layers > 0 and batch_norms(method.key_encoder) == (layers, 0)
    keys = list(method.state_dict())
    params = list(method.encoder.parameters())
    # As under torchrun, but with a stand-in for DistributedDataParallel, which accepts
    # SyncBatchNorm layers only on GPUs (they are built here, never run).
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr("nacvae.train.methods.DistributedDataParallel", WrappedForTest)
    prepare_method(method, torch.device("cpu"), amp=False, sync_bn=True)
    assert batch_norms(method.encoder) == (0, layers)
    assert batch_norms(method.key_encoder) == (layers, 0)
    assert list(method.state_dict()) == keys  # checkpoints keep their keys
    assert all(a is b for a, b in zip(method.encoder.parameters(), params))  # an optimiser built earlier still works
    assert method.query_encoder.module is method.encoder


def test_compile_with_sync_bn_is_refused_in_one_sentence(tmp_path):
    result = nacvae("pretrain", "--compile", "--sync-bn", "--steps", "2", "--out", tmp_path / "run", "--quiet")
    assert_clean_failure(result, "--compile cannot be combined with --sync-bn")
    assert not (tmp_path / "run").exists()
