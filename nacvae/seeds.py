"""Seeds of the random streams of both training stages: every draw is a function of
(run seed, step, stream, process rank), so a resumed run replays exactly."""

from __future__ import annotations

# The streams besides each step's own (0: augmentation, channel noise, a VAE's sampling).
SHUFFLE_STREAM = 1          # the epochs' shuffles
RANDOM_BACKBONE_STREAM = 3  # a VAE's random encoder
PICTURES_STREAM = 4         # the prior samples a VAE run shows in TensorBoard
TEST_STREAM = 5             # a VAE's test-split binarisation and importance samples


def step_seed(seed: int, step: int, stream: int = 0, rank: int = 0) -> int:
    """A distinct 63-bit seed per (run seed, step, stream, process rank), stable across runs."""
    mixed = seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + stream * 0x94D049BB133111EB
    return (mixed + rank * 0xD6E8FEB86659FD93) % (2**63 - 1)
