"""NAC against an independent float64 computation written from method.md §3."""

import math

import numpy as np
import pytest
import torch

from nacvae.errors import ConfigError
from nacvae.objectives import channel_beta, code_log_likelihood, log_cosh, nac_loss, nac_momentum_loss, sample_channel_signs


def reference_nac(a, l, m, p):
    """Loop-by-loop float64 NAC loss; a, l, m: [2B, D] numpy arrays, view-1 rows first."""
    n, _ = a.shape
    b = n // 2
    beta = 0.5 * math.log((1 - p) / p)
    z = np.tanh(a)
    total = 0.0
    for k in range(n):
        partner = (k + b) % n
        c_hat = m[k] * z[k]
        lp = l[partner]
        pos = np.sum(0.5 * c_hat * lp - np.log(np.cosh(0.5 * lp)))
        scores = np.array([beta * c_hat @ z[j] for j in range(n)])
        neg = np.log(np.sum(np.exp(scores)))
        total += neg - pos
    return total / n


def random_case(b=3, d=5, p=0.2, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(2 * b, d)) * 1.5
    l = rng.normal(size=(2 * b, d)) * 2.0
    m = np.where(rng.random((2 * b, d)) < p, -1.0, 1.0)
    return a, l, m


def torch_loss(a, l, m, p):
    b = a.shape[0] // 2
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    return nac_loss(t(a[:b]), t(a[b:]), t(l[:b]), t(l[b:]), p, signs=t(m))


@pytest.mark.parametrize("p", [0.05, 0.1, 0.25, 0.4])
def test_value_matches_reference(p):
    a, l, m = random_case(p=p, seed=int(p * 100))
    assert torch_loss(a, l, m, p).item() == pytest.approx(reference_nac(a, l, m, p), rel=1e-12, abs=1e-12)


def test_gradients_match_finite_differences_of_reference():
    p = 0.1
    a, l, m = random_case(b=2, d=3, p=p, seed=3)
    ta = torch.tensor(a, requires_grad=True)
    tl = torch.tensor(l, requires_grad=True)
    loss = nac_loss(ta[:2], ta[2:], tl[:2], tl[2:], p, signs=torch.tensor(m))
    ga, gl = torch.autograd.grad(loss, (ta, tl))
    eps = 1e-6
    for arr, grad in ((a, ga), (l, gl)):
        num = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            arr[idx] += eps
            up = reference_nac(a, l, m, p)
            arr[idx] -= 2 * eps
            down = reference_nac(a, l, m, p)
            arr[idx] += eps
            num[idx] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad.numpy(), num, rtol=1e-6, atol=1e-8)


def test_negative_term_tends_to_log_2b_as_p_tends_to_half():
    b = 4
    a, l, m = random_case(b=b, d=6, p=0.3, seed=7)
    p = 0.5 - 1e-12
    # With beta -> 0 every score is 0, so the negative term is log(2B) and the loss is
    # log(2B) minus the mean positive term.
    z = np.tanh(a)
    partner = np.roll(np.arange(2 * b), b)
    pos = np.sum(0.5 * m * z * l[partner] - np.log(np.cosh(0.5 * l[partner])), axis=1)
    expected = math.log(2 * b) - pos.mean()
    assert torch_loss(a, l, m, p).item() == pytest.approx(expected, abs=1e-9)


def test_positive_term_equals_public_codes_bernoulli_form():
    # 1/2 sum_d [c l + log(q(1-q)) - log 1/4], q = sigmoid(l), for any real c (relaxed codes).
    rng = np.random.default_rng(0)
    c = np.tanh(rng.normal(size=(4, 7))) * np.where(rng.random((4, 7)) < 0.3, -1, 1)
    l = rng.normal(size=(4, 7)) * 3
    q = 1 / (1 + np.exp(-l))
    public = 0.5 * np.sum(c * l + np.log(q * (1 - q)) - np.log(0.25), axis=1)
    ours = code_log_likelihood(torch.tensor(c), torch.tensor(l)).numpy()
    np.testing.assert_allclose(ours, public, rtol=1e-12)
    # ... and it equals sum log sigmoid(c l) + D log 2 only for c in {-1, +1}.
    cb = np.sign(c)
    ours_b = code_log_likelihood(torch.tensor(cb), torch.tensor(l)).numpy()
    np.testing.assert_allclose(ours_b, np.sum(-np.log1p(np.exp(-cb * l)) + np.log(2), axis=1), rtol=1e-12)


def test_log_cosh_is_stable():
    u = torch.tensor([-1e4, -30.0, -1.0, 0.0, 0.5, 30.0, 1e4], dtype=torch.float64)
    expected = [1e4 - math.log(2), 30 - math.log(2) + math.log1p(math.exp(-60)), math.log(math.cosh(1.0)), 0.0,
                math.log(math.cosh(0.5)), 30 - math.log(2) + math.log1p(math.exp(-60)), 1e4 - math.log(2)]
    np.testing.assert_allclose(log_cosh(u).numpy(), expected, rtol=1e-14)
    assert torch.isfinite(log_cosh(torch.tensor([1e30], dtype=torch.float32))).all()


def test_beta_values_and_validation():
    assert channel_beta(0.1) == pytest.approx(1.0986, abs=1e-4)
    assert channel_beta(0.4) == pytest.approx(0.2027, abs=1e-4)
    for bad in (0.0, 0.5, -0.1, 0.7):
        with pytest.raises(ConfigError):
            channel_beta(bad)


def test_sampled_signs_have_the_flip_rate_and_follow_the_generator():
    g = torch.Generator().manual_seed(0)
    m = sample_channel_signs((400, 500), 0.1, g)
    assert set(m.unique().tolist()) == {-1.0, 1.0}
    assert (m == -1).float().mean().item() == pytest.approx(0.1, abs=0.005)
    a = sample_channel_signs((5, 5), 0.3, torch.Generator().manual_seed(1))
    b = sample_channel_signs((5, 5), 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_nac_loss_draws_signs_from_generator():
    a1, a2, l1, l2 = torch.randn(4, 3, 8).unbind(0)
    x = nac_loss(a1, a2, l1, l2, 0.2, generator=torch.Generator().manual_seed(5))
    y = nac_loss(a1, a2, l1, l2, 0.2, generator=torch.Generator().manual_seed(5))
    assert x.item() == y.item()


def test_momentum_loss_matches_reference():
    rng = np.random.default_rng(11)
    n, d, k, p, lam = 6, 4, 9, 0.3, 0.1
    a = rng.normal(size=(n, d))
    m = np.where(rng.random((n, d)) < p, -1.0, 1.0)
    lk = rng.normal(size=(n, d))
    queue = np.tanh(rng.normal(size=(k, d)))
    beta = 0.5 * math.log((1 - p) / p)
    c = m * np.tanh(a)
    expected = 0.0
    for i in range(n):
        neg = math.log(sum(math.exp(beta * c[i] @ queue[j]) for j in range(k)))
        pos = np.sum(0.5 * c[i] * lk[i] - np.log(np.cosh(0.5 * lk[i])))
        expected += (neg - pos + lam * np.sum(np.tanh(a[i]) ** 2)) / n
    t = lambda x: torch.tensor(x)  # noqa: E731
    got = nac_momentum_loss(t(a), t(c), t(lk), t(queue), p, lam)
    assert got.item() == pytest.approx(expected, rel=1e-12)
