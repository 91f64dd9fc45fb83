"""What a VAE observes: its images as the likelihood sees them, in training and in evaluation.

The logistic likelihood models the pixel levels 0..255 as floats; the Bernoulli one
models {0, 1} pixels, thresholded or stochastically binarised. Training
(``nacvae.train.vae``) and the evaluation of a trained VAE (``nacvae.eval.vae_runs``)
both import from here, so the test split an evaluation scores is the very one training
recorded its test ELBO on, and evaluation does not import the training loop to get it.
"""

from __future__ import annotations

import torch

from nacvae.models.likelihoods import binarize
from nacvae.seeds import TEST_STREAM, step_seed

__all__ = ["observed_test_images", "vae_observations"]


def vae_observations(images: torch.Tensor, likelihood: str, mode: str = "threshold",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """What the model observes: float levels 0..255 (logistic) or {0, 1} pixels (bernoulli)."""
    if likelihood == "logistic":
        return images.float()
    return binarize(images, generator=generator, stochastic=mode == "stochastic")


def observed_test_images(images: torch.Tensor, likelihood: str, mode: str, seed: int) -> torch.Tensor:
    """The test split as observed, on the CPU: stochastic binarisation is drawn once, from the
    run's seed, so training's test records and ``evaluate_run`` see the same pixels."""
    gen = torch.Generator().manual_seed(step_seed(seed, 0, stream=TEST_STREAM))
    return vae_observations(images.cpu(), likelihood, mode, gen)
