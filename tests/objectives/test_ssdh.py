"""SSDH's pseudo-similarities against brute force on a small feature matrix, and its loss."""

import math

import torch

from nacvae.objectives import cosine_distances, fit_half_gaussians, pair_distances, pseudo_similarity, ssdh_loss


def features(n=40, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def brute_force_distances(x):
    n = len(x)
    out = []
    for i in range(n):
        for j in range(i + 1, n):
            xi, xj = x[i].tolist(), x[j].tolist()
            dot = sum(a * b for a, b in zip(xi, xj))
            norm = math.sqrt(sum(a * a for a in xi)) * math.sqrt(sum(b * b for b in xj))
            out.append(1 - dot / norm)
    return out


def brute_force_half_gaussians(d, bins):
    lo, hi = min(d), max(d)
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in d:
        counts[min(int((v - lo) / width), bins - 1)] += 1
    best = max(range(bins), key=lambda b: (counts[b], -b))  # the first fullest bin
    mode = lo + (best + 0.5) * width
    left = [v for v in d if v <= mode]
    right = [v for v in d if v > mode]
    return mode, math.sqrt(sum((v - mode) ** 2 for v in left) / len(left)), \
        math.sqrt(sum((v - mode) ** 2 for v in right) / len(right))


def test_pair_distances_are_every_unordered_pair():
    x = features()
    assert torch.allclose(pair_distances(x), torch.tensor(brute_force_distances(x), dtype=torch.float64), atol=1e-12)


def test_thresholds_and_similarities_match_brute_force():
    x = features()
    d = brute_force_distances(x)
    for bins in (10, 25):
        mode, s_left, s_right = brute_force_half_gaussians(d, bins)
        fit = fit_half_gaussians(pair_distances(x), bins=bins)
        assert math.isclose(fit.mode, mode, abs_tol=1e-9)
        assert math.isclose(fit.sigma_left, s_left, rel_tol=1e-9)
        assert math.isclose(fit.sigma_right, s_right, rel_tol=1e-9)
        for alpha, beta in ((2.0, 0.0), (1.0, 1.0)):
            lo, hi = fit.thresholds(alpha, beta)
            assert math.isclose(lo, mode - alpha * s_left, abs_tol=1e-9)
            assert math.isclose(hi, mode + beta * s_right, abs_tol=1e-9)
            s = pseudo_similarity(cosine_distances(x), lo, hi)
            n = len(x)
            for i in range(n):
                for j in range(n):
                    dij = float(cosine_distances(x[i:i + 1], x[j:j + 1]))
                    want = 1.0 if dij <= lo else (-1.0 if dij >= hi else 0.0)
                    assert float(s[i, j]) == want
            assert (s == 1).any() and (s == -1).any()


def test_loss_matches_a_loop_in_values_and_gradients():
    g = torch.Generator().manual_seed(1)
    h = torch.tanh(torch.randn(5, 4, generator=g, dtype=torch.float64)).requires_grad_(True)
    s = torch.randint(-1, 2, (5, 5), generator=g).double()
    loss = ssdh_loss(h, s)
    loss.backward()
    h2 = h.detach().clone().requires_grad_(True)
    total, count = 0.0, 0
    for i in range(5):
        for j in range(5):
            if i != j:
                count += 1
                if s[i, j] != 0:  # unlabelled pairs carry no loss
                    total = total + (sum(h2[i, k] * h2[j, k] for k in range(4)) / 4 - s[i, j]) ** 2
    ref = total / count
    ref.backward()
    assert torch.allclose(loss, ref, rtol=1e-12)
    assert torch.allclose(h.grad, h2.grad, rtol=1e-10, atol=1e-14)
    assert (s == 0).any()  # the case covers unlabelled pairs
