"""Does bf16 change any conclusion of a study? Two study folders, same preset and seeds, one
run in bf16 and one in float32 (``NACVAE_AMP=on`` / ``off``), side by side.

For every encoder and column of the study (linear top-1, mAP@all, distinct codes, the VAE's
log p(x) and KL) it prints both means ± sds over the seeds and whether the difference of
the means is within one seed-sd (the larger of the two); then, for every pretraining run,
the training loss of bf16 against float32 at every logged step: the largest absolute
difference, and the largest relative to the loss's own change over the run. With ``--json``
the comparison is also written as JSON.

    NACVAE_AMP=on  nacvae reproduce --seeds 5 --threads 2 --jobs 2 --out S/digits-amp-on
    NACVAE_AMP=off nacvae reproduce --seeds 5 --threads 2 --jobs 2 --out S/digits-amp-off
    python experiments/bf16_equivalence.py S/digits-amp-on S/digits-amp-off --json docs/results/bf16-digits/comparison.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

COLUMNS = [("linear_test_accuracy", "linear top-1 %", 100), ("retrieval_map", "mAP@all %", 100),
           ("distinct_codes", "distinct codes", 1), ("vae_loglik_nats", "VAE log p(x) nats", 1),
           ("vae_kl", "VAE KL nats", 1)]


def rows(study: Path) -> dict[str, dict[int, dict]]:
    """init -> seed -> row."""
    out: dict[str, dict[int, dict]] = {}
    for f in sorted(study.glob("seed-*/rows.json")):
        for r in json.loads(f.read_text()):
            out.setdefault(r["init"], {})[r["seed"]] = r
    return out


def losses(run: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r["loss"] for r in records if r.get("event") == "train"}


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bf16", type=Path)
    ap.add_argument("float32", type=Path)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    a, b = rows(args.bf16), rows(args.float32)
    report = {"columns": [], "trajectories": []}
    print(f"{'encoder':14s} {'column':18s} {'bf16':>16s} {'float32':>16s} {'|diff|':>7s} {'sd':>6s}  within 1 sd")
    for init in a:
        for key, label, scale in COLUMNS:
            seeds = sorted(s for s in a[init] if s in b.get(init, {}) and a[init][s].get(key) is not None)
            if not seeds:
                continue
            ma, sa = mean_sd([scale * a[init][s][key] for s in seeds])
            mb, sb = mean_sd([scale * b[init][s][key] for s in seeds])
            sd = max(sa, sb)
            within = abs(ma - mb) <= sd
            report["columns"].append({"init": init, "column": key, "seeds": seeds, "bf16": [ma, sa],
                                      "float32": [mb, sb], "within_one_sd": within})
            print(f"{init:14s} {label:18s} {ma:9.2f} ± {sa:4.2f} {mb:9.2f} ± {sb:4.2f} {abs(ma - mb):7.2f} "
                  f"{sd:6.2f}  {'yes' if within else 'NO'}")
    print(f"\n{'pretraining run':28s} {'steps':>6s} {'max |loss diff|':>16s} {'/ loss change':>14s}")
    for run in sorted(args.bf16.glob("seed-*/pretrain-*")):
        other = args.float32 / run.relative_to(args.bf16)
        if not (other / "metrics.jsonl").is_file():
            continue
        la, lb = losses(run), losses(other)
        steps = sorted(set(la) & set(lb))
        diff = max(abs(la[s] - lb[s]) for s in steps)
        change = max(lb.values()) - min(lb.values())
        name = str(run.relative_to(args.bf16))
        report["trajectories"].append({"run": name, "steps": len(steps), "max_abs_diff": diff,
                                       "loss_change": change, "relative": diff / change})
        print(f"{name:28s} {len(steps):6d} {diff:16.4f} {diff / change:14.3f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
