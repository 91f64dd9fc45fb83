"""Linear accuracy and retrieval mAP of NAC encoders against the channel flip probability p.

    python experiments/noise_sweep.py --data digits --out runs/sweep
    python experiments/noise_sweep.py --data digits --out runs/sweep --variants momentum   # one variant per process

Pretrains one NAC encoder per (variant, p) on the dataset's default schedule (the same
number of steps for every p), evaluates each with the fast linear probe and retrieval
(Hamming ranking and the paper code's ranking), and records the final code magnitude and
whether the run collapsed. Each variant's results go to sweep-<variant>.json as every run
finishes, so processes running different variants can share --out; sweep.png and the
table are drawn from every sweep-*.json found there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

VARIANTS = {"plain": False, "momentum": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--ps", default="0.05,0.1,0.2,0.3,0.4,0.45")
    parser.add_argument("--variants", default="plain,momentum", help="plain (non-momentum) and/or momentum")
    parser.add_argument("--steps", type=int, default=None, help="[the dataset's default schedule]")
    parser.add_argument("--warmup-steps", type=int, default=None)
    parser.add_argument("--l2-weight", type=float, default=None,
                        help="momentum variant's L2 penalty [0.1]; 0 is the authors' hashing setting. "
                             "Given, the variant is labelled e.g. momentum-l2-0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from nacvae.eval.encoders import resolve_encoder
    from nacvae.eval.linear_eval import evaluate_linear
    from nacvae.eval.retrieval_eval import evaluate_retrieval
    from nacvae.runs import read_config, read_metrics
    from nacvae.devices import resolve_device
    from nacvae.train.config import resolve_config
    from nacvae.train.pretrain import pretrain

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(args.device)
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        label = variant if args.l2_weight is None else f"{variant}-l2-{args.l2_weight:g}"
        results = []
        for p in [float(v) for v in args.ps.split(",")]:
            cfg = resolve_config(args.data, flip_prob=p, momentum=VARIANTS[variant], steps=args.steps,
                                 warmup_steps=args.warmup_steps, seed=args.seed, data_dir=args.data_dir,
                                 device=args.device, l2_weight=args.l2_weight)
            run = pretrain(cfg, out / f"nac-{label}-p{p}", progress=False)
            encoder, _, data, ddir = resolve_encoder(run=run)
            linear = evaluate_linear(encoder, data, ddir, seed=args.seed, device=device)
            hamming = evaluate_retrieval(encoder, data, ddir, seed=args.seed, device=device)
            paper = evaluate_retrieval(encoder, data, ddir, seed=args.seed, device=device, ranking="paper")
            train = [r for r in read_metrics(run) if r.get("event") == "train"]
            config = read_config(run)
            results.append({
                "variant": label, "p": p, "l2_weight": cfg.l2_weight if cfg.momentum else None, "steps": config["total_steps"], "warmup_steps": config["warmup_steps"],
                "linear_test_accuracy": linear["test_accuracy"], "map": hamming["map"],
                "map_paper_ranking": paper["map"], "final_code_abs_mean": train[-1]["code_abs_mean"],
                "final_loss_minus_log2b": train[-1]["loss_minus_log2b"], "collapsed": config.get("collapsed", False),
                "curve": [(r["step"], r["code_abs_mean"]) for r in train],
            })
            print(json.dumps({k: v for k, v in results[-1].items() if k != "curve"}), flush=True)
            (out / f"sweep-{label}.json").write_text(json.dumps(results, indent=1) + "\n")
    plot(out, args.data)


def plot(out: Path, data: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = {p.stem.split("-", 1)[1]: json.loads(p.read_text()) for p in sorted(out.glob("sweep-*.json"))}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    styles = {"plain": ("o-", "#d62728"), "momentum": ("s--", "#1f77b4"), "momentum-l2-0": ("^:", "#2ca02c")}
    for variant, rows in sweeps.items():
        style, colour = styles.get(variant, ("^:", "#2ca02c"))
        ps = [r["p"] for r in rows]
        axes[0].plot(ps, [100 * r["linear_test_accuracy"] for r in rows], style, color=colour, label=variant)
        axes[1].plot(ps, [100 * r["map"] for r in rows], style, color=colour, label=f"{variant}, Hamming")
        axes[1].plot(ps, [100 * r["map_paper_ranking"] for r in rows], style, color=colour, alpha=0.4,
                     label=f"{variant}, paper's ranking")
        axes[2].plot(ps, [r["final_code_abs_mean"] for r in rows], style, color=colour, label=variant)
    for ax, title in zip(axes, ["linear top-1 (%)", "retrieval mAP@all (%)", "final mean |tanh a|"]):
        ax.set_xlabel("flip probability p")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"NAC on {data}: noise-level sweep, both variants, equal steps")
    fig.tight_layout()
    fig.savefig(out / "sweep.png", dpi=110)
    print("| variant | p | linear top-1 (%) | mAP@all (%) | mAP@all, paper's ranking (%) | final mean abs(tanh a) | collapsed |")
    print("|---|---|---|---|---|---|---|")
    for variant, rows in sweeps.items():
        for r in rows:
            print(f"| {variant} | {r['p']} | {100 * r['linear_test_accuracy']:.1f} | {100 * r['map']:.1f} | "
                  f"{100 * r['map_paper_ranking']:.1f} | {r['final_code_abs_mean']:.3f} | "
                  f"{'yes' if r['collapsed'] else 'no'} |")


if __name__ == "__main__":
    main()
