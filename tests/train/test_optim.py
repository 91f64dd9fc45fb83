import math

import pytest
import torch

from nacvae.train.optim import LARS, warmup_cosine


def test_lars_step_matches_hand_computation():
    w0 = torch.tensor([3.0, 4.0], dtype=torch.float64)  # ||w|| = 5
    grad = torch.tensor([0.6, 0.8], dtype=torch.float64)
    p = torch.nn.Parameter(w0.clone())
    opt = LARS([p], lr=2.0, momentum=0.9, weight_decay=0.1, eta=0.01)
    p.grad = grad.clone()
    opt.step()
    g = grad + 0.1 * w0
    trust = 0.01 * 5.0 / torch.linalg.vector_norm(g)
    v1 = 2.0 * trust * g
    torch.testing.assert_close(p.detach(), w0 - v1)
    # second step uses the momentum buffer
    p.grad = grad.clone()
    w1 = p.detach().clone()
    opt.step()
    g2 = grad + 0.1 * w1
    v2 = 0.9 * v1 + 2.0 * (0.01 * torch.linalg.vector_norm(w1) / torch.linalg.vector_norm(g2)) * g2
    torch.testing.assert_close(p.detach(), w1 - v2)


def test_lars_zero_weights_use_plain_step():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = LARS([p], lr=0.5, momentum=0.0, weight_decay=0.0)
    p.grad = torch.ones(3)
    opt.step()
    torch.testing.assert_close(p.detach(), -0.5 * torch.ones(3))


def test_warmup_then_cosine():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(3, 10, 0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.3)))


def test_schedules_in_steps_and_epochs():
    from nacvae.train.config import resolve_config, schedule_steps

    # The digits default states both lengths in steps; epochs given by the user replace them.
    assert schedule_steps(resolve_config("digits"), 11) == (1500, 500)
    assert schedule_steps(resolve_config("digits", epochs=3), 11) == (33, 500)
    assert schedule_steps(resolve_config("digits", epochs=3, warmup_epochs=1), 11) == (33, 11)
    assert schedule_steps(resolve_config("digits", steps=40, warmup_steps=0), 11) == (40, 0)
    # The paper's CIFAR-10 schedule: 1000 epochs of 50 steps, 500 warm-up steps (10 epochs).
    assert schedule_steps(resolve_config("cifar10"), 50) == (50_000, 500)
