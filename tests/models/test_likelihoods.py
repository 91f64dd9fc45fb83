import itertools

import mpmath
import pyro.distributions as dist
import pytest
import torch

from nacvae.errors import ConfigError
from nacvae.models.likelihoods import DiscretizedLogistic, binarize

LOCS = [-3.0, -1.2, -1.0, -0.5, -0.0123, 0.0, 0.37, 0.999, 1.0, 1.5, 4.0]
LOG_SCALES = [-14.0, -9.0, -7.0, -4.0, -2.0, 0.0, 2.0, 5.0, 12.0]
LEVELS = torch.arange(256)


def _grid(dtype):
    pairs = list(itertools.product(LOCS, LOG_SCALES))
    loc = torch.tensor([p[0] for p in pairs], dtype=dtype).unsqueeze(-1)
    log_scale = torch.tensor([p[1] for p in pairs], dtype=dtype).unsqueeze(-1)
    return pairs, DiscretizedLogistic(loc, log_scale)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sums_to_one_and_finite(dtype):
    _, d = _grid(dtype)
    lp = d.log_prob(LEVELS.to(dtype))
    assert lp.shape == (len(LOCS) * len(LOG_SCALES), 256)
    assert torch.isfinite(lp).all()
    assert (lp <= 1e-6).all()
    total = torch.logsumexp(lp.double(), dim=-1).exp()
    torch.testing.assert_close(total, torch.ones_like(total), atol=1e-5, rtol=0)


def _reference_log_prob(loc, log_scale, k):
    """Bin mass from the logistic CDF in 60-digit arithmetic."""
    with mpmath.workdps(60):
        s = mpmath.exp(mpmath.mpf(log_scale))
        h = mpmath.mpf(1) / 255
        centre = 2 * mpmath.mpf(k) / 255 - 1

        def cdf(t):
            return 1 / (1 + mpmath.exp(-(t - mpmath.mpf(loc)) / s))

        def survival(t):
            return 1 / (1 + mpmath.exp((t - mpmath.mpf(loc)) / s))

        if centre > loc:  # right of loc both CDF values are near 1: difference the tails
            hi = mpmath.mpf(1) if k == 0 else survival(centre - h)
            lo = mpmath.mpf(0) if k == 255 else survival(centre + h)
        else:
            hi = mpmath.mpf(1) if k == 255 else cdf(centre + h)
            lo = mpmath.mpf(0) if k == 0 else cdf(centre - h)
        return float(mpmath.log(hi - lo))


def test_matches_high_precision_reference():
    pairs, d = _grid(torch.float64)
    lp = d.log_prob(LEVELS.double())
    for row, (loc, log_scale) in enumerate(pairs):
        for k in (0, 1, 2, 60, 127, 128, 200, 254, 255):
            ref = _reference_log_prob(loc, log_scale, k)
            got = lp[row, k].item()
            assert got == pytest.approx(ref, rel=1e-9, abs=1e-9), (loc, log_scale, k)


def test_integer_and_float_levels_agree_and_expand():
    d = DiscretizedLogistic(torch.tensor([0.1, -0.4]), torch.tensor([-3.0, -1.0]))
    k = torch.tensor([[13, 250], [0, 255]])
    torch.testing.assert_close(d.log_prob(k), d.log_prob(k.float()))
    e = d.expand(torch.Size([3, 2]))
    assert e.batch_shape == (3, 2)
    torch.testing.assert_close(e.log_prob(k[0].float()), d.log_prob(k[0].float()).expand(3, 2))
    img = DiscretizedLogistic(torch.zeros(4, 1, 2, 2), torch.zeros(4, 1, 2, 2)).to_event(3)
    assert img.batch_shape == (4,) and img.event_shape == (1, 2, 2)


@pytest.mark.parametrize("loc,log_scale", [(0.1, -3.0), (0.95, -3.0)])
def test_sampling_frequencies_match_probabilities(loc, log_scale):
    n = 200_000
    d = DiscretizedLogistic(torch.tensor(loc), torch.tensor(log_scale))
    gen = torch.Generator().manual_seed(0)
    x = d.sample((n,), generator=gen)
    assert x.dtype == torch.float32
    assert ((x >= 0) & (x <= 255) & (x == x.round())).all()
    counts = torch.bincount(x.long(), minlength=256).double()
    expected = n * d.log_prob(LEVELS.float()).double().exp()
    keep = expected >= 5
    chi2 = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum().item()
    dof = int(keep.sum()) - 1
    assert chi2 < dof + 5 * (2 * dof) ** 0.5
    assert counts[~keep].sum() < 5 * max(expected[~keep].sum().item(), 1.0)


def test_mean_maps_clamped_loc_to_levels():
    d = DiscretizedLogistic(torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]), torch.zeros(5))
    torch.testing.assert_close(d.mean, torch.tensor([0.0, 0.0, 127.5, 255.0, 255.0]))


def test_gradients_finite_at_extremes():
    loc = torch.tensor([0.0, 5.0, -5.0, 0.3], requires_grad=True)
    log_scale = torch.tensor([-14.0, 14.0, 0.0, 20.0], requires_grad=True)
    lp = DiscretizedLogistic(loc, log_scale).log_prob(torch.tensor([[0.0], [1.0], [128.0], [255.0]]))
    lp.sum().backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(log_scale.grad).all()


def test_bad_num_levels():
    with pytest.raises(ConfigError):
        DiscretizedLogistic(torch.zeros(1), torch.zeros(1), num_levels=1)


def test_binarize():
    imgs = torch.tensor([0, 127, 128, 255], dtype=torch.uint8)
    torch.testing.assert_close(binarize(imgs), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    many = torch.full((100_000,), 64, dtype=torch.uint8)
    b = binarize(many, generator=torch.Generator().manual_seed(1), stochastic=True)
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    assert abs(b.mean().item() - 64 / 255) < 0.01
    assert dist.Bernoulli(logits=torch.zeros(4)).log_prob(binarize(imgs)).shape == (4,)
    with pytest.raises(ConfigError):
        binarize(imgs.float())
