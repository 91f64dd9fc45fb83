"""DistillHash's distilled pairs against brute force, and its likelihood loss against a loop."""

import math

import torch

from nacvae.objectives import cosine_distances, distill_thresholds, distilled_pairs, distillhash_loss, pair_distances


def test_thresholds_are_the_quantiles_of_the_sorted_distances():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    d = sorted(pair_distances(x).tolist())
    lo, hi = distill_thresholds(pair_distances(x), 0.05, 0.5)

    def quantile(q):  # linear interpolation between order statistics
        pos = q * (len(d) - 1)
        k = math.floor(pos)
        return d[k] + (pos - k) * (d[min(k + 1, len(d) - 1)] - d[k])

    assert math.isclose(lo, quantile(0.05), rel_tol=1e-12) and math.isclose(hi, quantile(0.5), rel_tol=1e-12)
    labels, mask = distilled_pairs(cosine_distances(x), lo, hi)
    dist = cosine_distances(x)
    for i in range(30):
        for j in range(30):
            similar, dissimilar = float(dist[i, j]) <= lo, float(dist[i, j]) >= hi
            assert bool(mask[i, j]) == (similar or dissimilar)
            assert float(labels[i, j]) == (1.0 if similar else 0.0)
    off = ~torch.eye(30, dtype=torch.bool)
    share = mask[off].double().mean()
    assert 0.5 < share < 0.6  # about 5% + 50% of the pairs are kept


def test_loss_matches_a_loop_in_values_and_gradients():
    g = torch.Generator().manual_seed(2)
    h = torch.tanh(torch.randn(5, 6, generator=g, dtype=torch.float64)).requires_grad_(True)
    labels = torch.randint(0, 2, (5, 5), generator=g).double()
    mask = torch.rand(5, 5, generator=g) < 0.6
    loss = distillhash_loss(h, labels, mask)
    loss.backward()
    h2 = h.detach().clone().requires_grad_(True)
    total, count = 0.0, 0
    for i in range(5):
        for j in range(5):
            if i != j and mask[i, j]:
                omega = 0.5 * sum(h2[i, k] * h2[j, k] for k in range(6))
                p = 1 / (1 + torch.exp(-omega))  # sigmoid
                total = total - (labels[i, j] * torch.log(p) + (1 - labels[i, j]) * torch.log(1 - p))
                count += 1
    ref = total / count
    ref.backward()
    assert torch.allclose(loss, ref, rtol=1e-12)
    assert torch.allclose(h.grad, h2.grad, rtol=1e-10, atol=1e-14)


def test_no_distilled_pair_gives_zero_loss_and_zero_gradient():
    h = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True)
    loss = distillhash_loss(h, torch.zeros(3, 3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.bool))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(h.grad, torch.zeros_like(h))
