"""Draw the linear regions of a small ReLU encoder on 2-D data before and after NAC training.

    python experiments/linear_regions.py --out docs/figures/linear_regions.png

Each colour is one activation pattern (one linear region); the title gives the number of
regions the plotted window meets. Writes a PNG and prints the counts as JSON.
"""

from __future__ import annotations

import argparse
import json

import torch

from nacvae.eval.regions import ToyEncoder, activation_patterns, grid, region_ids, train_toy_nac, two_rings


def draw(ax, encoder, data, points, resolution, title):
    import numpy as np

    ids, count = region_ids(activation_patterns(encoder, points))
    # Shuffle colours so neighbouring regions differ.
    palette = np.random.default_rng(0).permutation(count)
    image = palette[ids.numpy()].reshape(resolution, resolution)
    lo, hi = float(points.min()), float(points.max())
    ax.imshow(image, origin="lower", extent=(lo, hi, lo, hi), cmap="tab20", interpolation="nearest")
    ax.scatter(data[:, 0], data[:, 1], s=1.5, c="black", alpha=0.6)
    ax.set_title(f"{title}: {count} regions")
    ax.set_xticks([])
    ax.set_yticks([])
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="linear_regions.png")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--resolution", type=int, default=400)
    parser.add_argument("--flip-prob", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    data = two_rings(2000, g)
    encoder = ToyEncoder()
    points = grid(-1.5, 1.5, args.resolution)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    before = draw(axes[0], encoder, data, points, args.resolution, "random init")
    losses = train_toy_nac(encoder, data, steps=args.steps, flip_prob=args.flip_prob, seed=args.seed)
    after = draw(axes[1], encoder, data, points, args.resolution, f"after NAC ({args.steps} steps)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(json.dumps({"regions_before": before, "regions_after": after, "final_loss": losses[-1], "out": args.out}))


if __name__ == "__main__":
    main()
