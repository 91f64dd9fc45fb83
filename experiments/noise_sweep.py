"""Linear accuracy and retrieval mAP of NAC encoders against the channel flip probability p.

    python experiments/noise_sweep.py --data digits --out runs/sweep

Pretrains one NAC encoder per p, evaluates each with the fast linear probe and Hamming
retrieval, writes sweep.json and sweep.png into --out and prints the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--ps", default="0.05,0.1,0.2,0.3,0.4")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nacvae.eval.downstream import evaluate_linear, evaluate_retrieval, resolve_encoder
    from nacvae.train.config import resolve_config, resolve_device
    from nacvae.train.pretrain import pretrain

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)
    results = []
    for p in [float(v) for v in args.ps.split(",")]:
        cfg = resolve_config(args.data, flip_prob=p, epochs=args.epochs, seed=args.seed, data_dir=args.data_dir,
                             device=args.device)
        run = pretrain(cfg, out / f"nac-p{p}", progress=False)
        encoder, _, data, ddir = resolve_encoder(run=run)
        linear = evaluate_linear(encoder, data, ddir, seed=args.seed, device=device)
        retrieval = evaluate_retrieval(encoder, data, ddir, seed=args.seed, device=device)
        results.append({"p": p, "linear_test_accuracy": linear["test_accuracy"], "map": retrieval["map"]})
        print(json.dumps(results[-1]), flush=True)
    (out / "sweep.json").write_text(json.dumps(results, indent=2) + "\n")

    fig, ax1 = plt.subplots(figsize=(6, 4))
    ps = [r["p"] for r in results]
    ax1.plot(ps, [100 * r["linear_test_accuracy"] for r in results], "o-", color="#d62728", label="linear top-1")
    ax1.set_xlabel("flip probability p")
    ax1.set_ylabel("linear top-1 (%)", color="#d62728")
    ax2 = ax1.twinx()
    ax2.plot(ps, [100 * r["map"] for r in results], "s--", color="#1f77b4", label="mAP@all")
    ax2.set_ylabel("retrieval mAP@all (%)", color="#1f77b4")
    ax1.set_title(f"NAC on {args.data}: noise level sweep")
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=110)
    print("| p | linear top-1 (%) | mAP@all (%) |\n|---|---|---|")
    for r in results:
        print(f"| {r['p']} | {100 * r['linear_test_accuracy']:.1f} | {100 * r['map']:.1f} |")


if __name__ == "__main__":
    main()
