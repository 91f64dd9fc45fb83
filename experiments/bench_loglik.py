"""Time the vectorised importance-weighted log-likelihood against a particle-by-particle loop
and against ``pyro.infer.Importance`` itself.

The loop draws one particle per pass the way ``pyro.infer.Importance`` does (trace the
guide, replay the model, for the whole batch of images) but keeps per-image weights.
It runs ``--loop-samples`` particles and its time is extrapolated linearly to
``--samples``. Agreement is checked at ``--loop-samples`` particles, where both
estimators run twice: with the same seed and a single chunk (torch's CPU sampler then
draws the same particles for one [K, B, L] call as for K [B, L] calls, so the
estimates match to rounding), and with independent particles, where the mean
|difference| per image is given in standard errors of the difference (delta-method
standard error of a log-mean-exp from the loop's weights; about 0.8 is expected, more
when the weights are heavy-tailed) and the signed mean difference as a t statistic.

Data: the 8x8 digits bundled with scikit-learn (levels 0..16 rescaled to 0..255),
a VAE with a small three-layer conv backbone, trained for ``--train-steps`` SVI steps.

    python experiments/bench_loglik.py --images 1000 --samples 1000 --threads 2
"""

from __future__ import annotations

import argparse
import math
import time

import pyro
import pyro.optim
import torch
from pyro import poutine
from pyro.infer import SVI, Importance, Trace_ELBO
from torch import nn

from nacvae.eval.loglik import importance_log_likelihood
from nacvae.models.vae import VAE


def digits(n: int) -> torch.Tensor:
    from sklearn.datasets import load_digits

    data = torch.as_tensor(load_digits().images, dtype=torch.float32)
    if n > data.shape[0]:
        raise SystemExit(f"--images must be at most {data.shape[0]} for the digits data.")
    return (data[:n] * (255.0 / 16.0)).round().unsqueeze(1)


def small_backbone() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 128, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


def loop_log_weights(model, guide, x, num: int) -> torch.Tensor:
    """[num, B] log weights, one traced guide + replayed model per particle."""
    rows = []
    for _ in range(num):
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
        model_trace.compute_log_prob()
        guide_trace.compute_log_prob()
        rows.append(
            model_trace.nodes["z"]["log_prob"] + model_trace.nodes["x"]["log_prob"] - guide_trace.nodes["z"]["log_prob"]
        )
    return torch.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000, help="particles K of the vectorised estimate")
    parser.add_argument("--loop-samples", type=int, default=50, help="particles actually run by the loop")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--importance-images", type=int, default=5,
                        help="images run through pyro.infer.Importance itself (one run per image)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pyro.set_rng_seed(args.seed)
    pyro.clear_param_store()

    x = digits(args.images)
    vae = VAE(small_backbone(), 128, (1, 8, 8), latent_dim=16, likelihood="logistic")
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 2e-3}), Trace_ELBO())
    t0 = time.perf_counter()
    for _ in range(args.train_steps):
        idx = torch.randint(0, x.shape[0], (128,))
        loss = svi.step(x[idx]) / 128
    train_s = time.perf_counter() - t0
    vae.eval()
    trained = f"trained {args.train_steps} steps in {train_s:.1f} s" if args.train_steps else "untrained"
    if args.train_steps:
        trained += f", last loss/image {loss:.1f} nats"
    print(f"images {x.shape[0]} (digits 8x8), threads {args.threads}, {trained}")

    k, k_loop = args.samples, min(args.loop_samples, args.samples)
    with torch.no_grad():
        t0, c0 = time.perf_counter(), time.process_time()
        vec = importance_log_likelihood(vae.model, vae.guide, x, k, chunk_size=args.chunk_size)
        vec_s, vec_cpu = time.perf_counter() - t0, time.process_time() - c0

        pyro.set_rng_seed(args.seed + 1)
        t0, c0 = time.perf_counter(), time.process_time()
        log_w = loop_log_weights(vae.model, vae.guide, x, k_loop)
        loop_s, loop_cpu = time.perf_counter() - t0, time.process_time() - c0
        loop_est = torch.logsumexp(log_w, 0) - math.log(k_loop)
        # same seed, one chunk: the same particles as the loop (see the module docstring)
        pyro.set_rng_seed(args.seed + 1)
        vec_same = importance_log_likelihood(vae.model, vae.guide, x, k_loop, chunk_size=k_loop)
        vec_small = importance_log_likelihood(vae.model, vae.guide, x, k_loop, chunk_size=args.chunk_size)

        # pyro.infer.Importance itself: its log normaliser sums the log weights over the
        # whole batch, so a per-image log p(x) needs one run per image.
        n_imp = min(args.importance_images, x.shape[0])
        pyro.set_rng_seed(args.seed + 2)
        t0, c0 = time.perf_counter(), time.process_time()
        imp_est = []
        for i in range(n_imp):
            posterior = Importance(vae.model, guide=vae.guide, num_samples=k_loop).run(x[i : i + 1])
            imp_est.append(float(posterior.get_log_normalizer()))
        imp_s, imp_cpu = time.perf_counter() - t0, time.process_time() - c0

    w = torch.exp(log_w.double() - log_w.double().max(0).values)
    se = w.std(0) / (math.sqrt(k_loop) * w.mean(0))
    signed = vec_small.double() - loop_est.double()
    diff = signed.abs()
    # the signed mean difference against its empirical standard error (no delta method)
    t_stat = signed.mean() / (signed.std() / math.sqrt(signed.numel()))
    scale = k / k_loop
    print(f"vectorised  K={k}: wall {vec_s:8.2f} s, CPU {vec_cpu:8.2f} s   mean log p(x) {vec.mean().item():.3f} nats")
    print(f"loop        K={k_loop}: wall {loop_s:8.2f} s, CPU {loop_cpu:8.2f} s  -> K={k}"
          + ("" if k_loop == k else " extrapolated linearly")
          + f": wall {loop_s * scale:.2f} s, CPU {loop_cpu * scale:.2f} s")
    print(f"speed-up at K={k}: wall {loop_s * scale / vec_s:.1f}x, CPU {loop_cpu * scale / vec_cpu:.1f}x")
    imp_scale = scale * x.shape[0] / n_imp
    print(f"pyro.infer.Importance, {n_imp} images x K={k_loop}: wall {imp_s:.2f} s, CPU {imp_cpu:.2f} s  -> "
          f"{x.shape[0]} images x K={k} extrapolated linearly: wall {imp_s * imp_scale:.1f} s")
    print(f"speed-up over pyro.infer.Importance at K={k}: wall {imp_s * imp_scale / vec_s:.1f}x, "
          f"CPU {imp_cpu * imp_scale / vec_cpu:.1f}x")
    imp_diff = [abs(a - float(b)) for a, b in zip(imp_est, vec[:n_imp])]
    print(f"Importance (K={k_loop}) vs vectorised (K={k}) on those images: mean |diff| "
          f"{sum(imp_diff) / n_imp:.3f} nats")
    same = (vec_same.double() - loop_est.double()).abs().max().item()
    print(f"same particles at K={k_loop}: max |vectorised - loop| over images {same:.2e} nats")
    print(f"independent particles at K={k_loop}: vectorised {vec_small.mean().item():.3f}, loop {loop_est.mean().item():.3f} nats; "
          f"mean |diff| {diff.mean().item():.4f} nats = {(diff / (math.sqrt(2) * se)).mean().item():.2f} "
          f"standard errors of the difference (about 0.8 expected)")
    print(f"mean signed difference {signed.mean().item():+.4f} nats, t = {t_stat.item():+.2f} "
          "(|t| < 2 expected without a systematic difference)")


if __name__ == "__main__":
    main()
