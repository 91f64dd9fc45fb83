"""What DeepBit's training does to its starting hash layer (docs/results.md).

A DeepBit run on its own recipe starts from one linear layer with weights N(0, 0.01^2) and
bias 0 on its teacher's frozen backbone. This script scores, on the dataset's retrieval
split of the run's seed (Hamming ranking, mAP@all, as `eval retrieval --seed` scores it), the trained run's codes under its own binarisation
(sigmoid(a) above the training mean) and at sgn(a), and a fresh layer drawn as the recipe
draws it, binarised at its training mean: a random projection of the centred features, as
the authors' release is in effect (its quantisation and balance gradients cancel).

    python experiments/deepbit_start.py RUN [--seeds 3]
"""

from __future__ import annotations

import argparse
import json

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="A DeepBit pretraining run folder (or its checkpoint).")
    p.add_argument("--seeds", type=int, default=3, help="Fresh hash layers drawn, seeds 0..N-1.")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from pathlib import Path

    from nacvae.data.augment import normalize
    from nacvae.data.pool import retrieval_pool
    from nacvae.eval.retrieval import mean_average_precision
    from nacvae.runs import CHECKPOINT
    from nacvae.transfer import load_encoder

    path = Path(args.run)
    encoder, meta = load_encoder(path / CHECKPOINT if path.is_dir() else path)
    if meta["objective"] != "deepbit" or meta.get("binarisation", {}).get("rule") != "sigmoid-mean":
        raise SystemExit(f"{args.run} is not a DeepBit run on its own recipe.")
    seed = meta["config"]["seed"]  # the query/gallery split the study evaluates this seed's encoders on
    pool = retrieval_pool(meta["dataset"], None, None, download=False, seed=seed)
    split = pool.split

    @torch.no_grad()
    def outputs(idx):
        encoder.eval()
        hs, as_ = [], []
        for s in range(0, len(idx), 1000):
            h, a, _ = encoder(normalize(pool.images[idx[s:s + 1000]], meta["mean"], meta["std"]))
            hs.append(h)
            as_.append(a)
        return torch.cat(hs), torch.cat(as_)

    (hq, aq), (hg, ag), (ht, _) = (outputs(split[k]) for k in ("query", "gallery", "train"))
    lq, lg = pool.labels[split["query"]], pool.labels[split["gallery"]]

    def score(cq, cg):
        return 100 * mean_average_precision(cq, lq, cg, lg)

    threshold = torch.tensor(meta["binarisation"]["threshold"])
    result = {"run": str(args.run), "dataset": meta["dataset"], "bits": meta["code_dim"],
              "trained_training_mean": score(torch.sigmoid(aq) > threshold, torch.sigmoid(ag) > threshold),
              "trained_sign": score(aq > 0, ag > 0), "fresh_training_mean": []}
    for seed in range(args.seeds):
        w = torch.randn(hq.shape[1], meta["code_dim"], generator=torch.Generator().manual_seed(seed)) * 0.01
        mean = torch.sigmoid(ht @ w).mean(0)  # bias 0; binarised by the run's own rule
        result["fresh_training_mean"].append(score(torch.sigmoid(hq @ w) > mean, torch.sigmoid(hg @ w) > mean))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
