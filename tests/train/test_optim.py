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


def _lars_reference_step(params, states, lr, momentum, weight_decay, eta, exclude=False):
    """LARS one tensor at a time, as a plain loop (the multi-tensor step must match it)."""
    for p in params:
        if p.grad is None:
            continue
        grad = p.grad.add(p, alpha=weight_decay) if weight_decay else p.grad.clone()
        if not exclude:
            w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(grad)
            ok = (w_norm > 0) & (g_norm > 0)
            grad.mul_(torch.where(ok, eta * w_norm / g_norm.clamp_min(1e-30), torch.ones_like(w_norm)))
        buf = states.setdefault(id(p), torch.zeros_like(p))
        buf.mul_(momentum).add_(grad, alpha=lr)
        p.sub_(buf)


@pytest.mark.parametrize("weight_decay", [0.0, 1e-4])
def test_lars_multi_tensor_step_equals_the_per_tensor_loop(weight_decay):
    g = torch.Generator().manual_seed(0)
    shapes = [(5, 3), (3,), (2, 3, 3, 3), (7,), (4,)]
    dtypes = [torch.float32, torch.float32, torch.float32, torch.float64, torch.float32]
    init = [torch.randn(s, generator=g, dtype=d) for s, d in zip(shapes, dtypes)]
    init[3].zero_()  # zero weights: trust ratio 1
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    ref = [t.clone() for t in init]
    opt = LARS([{"params": ours[:4]}, {"params": ours[4:], "lars_exclude": True}],
               lr=0.3, momentum=0.9, weight_decay=weight_decay, eta=0.02)
    states: dict = {}
    for step in range(4):
        grads = [torch.randn(s, generator=g, dtype=d) for s, d in zip(shapes, dtypes)]
        if step == 1:
            grads[1] = None  # a parameter without a gradient is left alone
        if step == 2:
            grads[0] = torch.zeros(shapes[0])  # zero gradient: trust ratio 1
        for p, r, gr in zip(ours, ref, grads):
            p.grad = None if gr is None else gr.clone()
            r.grad = None if gr is None else gr.clone()
        opt.step()
        assert all(gr is None or torch.equal(p.grad, gr) for p, gr in zip(ours, grads))  # gradients untouched
        _lars_reference_step(ref[:4], states, 0.3, 0.9, weight_decay, 0.02)
        _lars_reference_step(ref[4:], states, 0.3, 0.9, weight_decay, 0.02, exclude=True)
        for p, r in zip(ours, ref):
            assert torch.equal(p.detach(), r), step
        for p, r in zip(ours, ref):
            if id(r) in states:
                assert torch.equal(opt.state[p]["momentum_buffer"], states[id(r)])
