"""SimCLR and MoCo-v2 against hand-computed cases; the key queue's FIFO order."""

import math

import pytest
import torch
import torch.nn.functional as F

from nacvae.objectives import KeyQueue, info_nce, nt_xent


def test_nt_xent_hand_computed():
    # views: e1, e2 | e1, -e2 ; tau = 0.5 (see the derivation in the test body)
    p1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    p2 = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    # row e1: others (0, 1, 0)/tau -> -2 + log(2 + e^2); row e2: target -e2 has -1/tau:
    # 2 + log(2 + e^-2); rows 3 and 4 mirror rows 1 and 2.
    expected = (math.log(2 + math.e**2) + math.log(2 + math.e**-2)) / 2
    assert nt_xent(p1, p2, 0.5).item() == pytest.approx(expected, rel=1e-12)


def test_nt_xent_is_scale_invariant_and_matches_dense_reference():
    g = torch.Generator().manual_seed(0)
    p1, p2 = torch.randn(2, 5, 7, generator=g, dtype=torch.float64)
    z = F.normalize(torch.cat([p1, p2]), dim=1)
    sims = z @ z.T / 0.3
    total = 0.0
    for i in range(10):
        j = (i + 5) % 10
        others = [sims[i, k] for k in range(10) if k != i]
        total += -sims[i, j] + torch.logsumexp(torch.stack(others), 0)
    assert nt_xent(3 * p1, 0.5 * p2, 0.3).item() == pytest.approx((total / 10).item(), rel=1e-12)


def test_info_nce_hand_computed():
    q = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    k = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    # logits (1, 0, -1) / 0.2 with the positive first
    expected = -5.0 + math.log(math.exp(5.0) + 1.0 + math.exp(-5.0))
    assert info_nce(q, k, queue, 0.2).item() == pytest.approx(expected, rel=1e-12)


def test_queue_is_fifo_with_wraparound():
    q = KeyQueue(5, 1)
    for start in (0, 2, 4):
        q.enqueue(torch.tensor([[start + 1.0], [start + 2.0]]))
    # six keys into five slots: the oldest (1) is gone, order oldest -> newest
    assert q.ordered().squeeze(1).tolist() == [2.0, 3.0, 4.0, 5.0, 6.0]
    q.enqueue(torch.arange(10.0, 17.0).unsqueeze(1))  # more than the queue holds
    assert q.ordered().squeeze(1).tolist() == [12.0, 13.0, 14.0, 15.0, 16.0]
    assert not q.keys.requires_grad
