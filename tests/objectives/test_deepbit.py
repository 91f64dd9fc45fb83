"""DeepBit's loss against a float64 loop, and the image rotation it uses."""

import torch

from nacvae.objectives import deepbit_loss, rotate_images


def test_loss_matches_a_loop_in_values_and_gradients():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    ar = [torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    weights, (alpha, beta, gamma) = (0.7, 1.3), (1.5, 2.0, 0.25)
    loss = deepbit_loss(torch.sigmoid(a), [torch.sigmoid(t) for t in ar], weights, alpha, beta, gamma)
    loss.backward()

    a2 = a.detach().clone().requires_grad_(True)
    ar2 = [t.detach().clone().requires_grad_(True) for t in ar]
    sig = lambda x: 1 / (1 + torch.exp(-x))  # noqa: E731
    p, pr = sig(a2), [sig(t) for t in ar2]
    quant = bal = rot = 0.0
    for n in range(4):
        for k in range(3):
            bit = 1.0 if float(p[n, k].detach()) > 0.5 else 0.0
            quant = quant + (bit - p[n, k]) ** 2 / 4
    for k in range(3):
        bal = bal + (sum(p[n, k] for n in range(4)) / 4 - 0.5) ** 2
    for r in range(2):
        for n in range(4):
            for k in range(3):
                rot = rot + weights[r] * (pr[r][n, k] - p[n, k]) ** 2 / 4
    ref = alpha * quant + beta * bal + gamma * rot
    ref.backward()
    assert torch.allclose(loss, ref, rtol=1e-12)
    assert torch.allclose(a.grad, a2.grad, rtol=1e-10, atol=1e-14)
    for t, t2 in zip(ar, ar2):
        assert torch.allclose(t.grad, t2.grad, rtol=1e-10, atol=1e-14)


def test_rotation_by_zero_is_the_identity_and_by_90_degrees_a_quarter_turn():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float64).reshape(2, 1, 5, 5)
    assert torch.allclose(rotate_images(x, 0.0), x, atol=1e-12)
    # Counter-clockwise on the screen (rows grow downwards) is torch.rot90 with k = 1 on (H, W).
    assert torch.allclose(rotate_images(x, 90.0), torch.rot90(x, 1, dims=(2, 3)), atol=1e-9)
    small = rotate_images(x, 10.0)
    assert small.shape == x.shape and not torch.allclose(small, x)
