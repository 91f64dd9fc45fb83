"""InsDis's losses and memory bank against float64 loops written from the paper's formulas."""

import math

import torch

from nacvae.objectives import (
    insdis_nce_loss, insdis_softmax_loss, memory_update, nce_normaliser, sample_noise_indices,
)

TAU = 0.07


def unit_rows(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def test_exact_softmax_matches_a_loop_in_values_and_gradients():
    bank = unit_rows(7, 5, 0)
    f = unit_rows(3, 5, 1).requires_grad_(True)
    index = torch.tensor([4, 0, 6])
    loss = insdis_softmax_loss(f, bank, index, TAU)
    loss.backward()

    f_ref = f.detach().clone().requires_grad_(True)
    total = 0.0
    for b in range(3):
        scores = [torch.dot(bank[j], f_ref[b]) / TAU for j in range(7)]
        log_z = torch.logsumexp(torch.stack(scores), dim=0)
        total = total - (scores[int(index[b])] - log_z)
    ref = total / 3
    ref.backward()
    assert torch.allclose(loss, ref, rtol=1e-12, atol=1e-12)
    assert torch.allclose(f.grad, f_ref.grad, rtol=1e-10, atol=1e-12)


def test_nce_loss_matches_the_papers_h_in_values_and_gradients():
    n, m = 50, 6
    bank = unit_rows(n, 4, 2)
    f = unit_rows(3, 4, 3).requires_grad_(True)
    index = torch.tensor([1, 17, 42])
    noise = bank[torch.tensor([3, 3, 9, 40, 0, 25])]
    z = 13.7
    loss = insdis_nce_loss(f, bank[index], noise, TAU, n, z)
    loss.backward()

    f_ref = f.detach().clone().requires_grad_(True)

    def h(v, x):  # h(i, v) = P(i|v) / (P(i|v) + m P_n(i)), P(i|v) = exp(v_i . v / tau) / Z, P_n = 1/n
        p = torch.exp(torch.dot(v, x) / TAU) / z
        return p / (p + m / n)

    total = 0.0
    for b in range(3):
        total = total - torch.log(h(bank[int(index[b])], f_ref[b]))
        for j in range(m):
            total = total - torch.log(1 - h(noise[j], f_ref[b]))
    ref = total / 3
    ref.backward()
    assert torch.allclose(loss, ref, rtol=1e-10)
    assert torch.allclose(f.grad, f_ref.grad, rtol=1e-8, atol=1e-12)
    assert bank.grad is None  # the bank is a constant


def test_normaliser_is_n_times_the_mean_exponentiated_score():
    f, noise = unit_rows(3, 4, 4), unit_rows(5, 4, 5)
    want = 20 * sum(math.exp(float(torch.dot(noise[j], f[b])) / TAU) for b in range(3) for j in range(5)) / 15
    assert math.isclose(float(nce_normaliser(f, noise, TAU, 20)), want, rel_tol=1e-12)


def test_memory_update_moves_only_the_given_rows_by_momentum_and_renormalises():
    bank = unit_rows(6, 3, 6)
    before = bank.clone()
    new = unit_rows(2, 3, 7)
    index = torch.tensor([4, 1])
    memory_update(bank, index, new, 0.5)
    for k, i in enumerate(index.tolist()):
        mixed = 0.5 * before[i] + 0.5 * new[k]
        assert torch.allclose(bank[i], mixed / mixed.norm(), atol=1e-15)
    untouched = [0, 2, 3, 5]
    assert torch.equal(bank[untouched], before[untouched])
    assert torch.allclose(bank.norm(dim=1), torch.ones(6, dtype=torch.float64))


def test_noise_indices_are_uniform_over_the_bank_and_repeat_with_the_generator():
    draw = lambda: sample_noise_indices(10, 50_000, torch.Generator().manual_seed(3), "cpu")  # noqa: E731
    a, b = draw(), draw()
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 9
    freq = torch.bincount(a, minlength=10).double() / len(a)
    assert torch.allclose(freq, torch.full((10,), 0.1, dtype=torch.float64), atol=0.01)
