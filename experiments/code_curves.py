"""Mean |tanh a| and the loss minus log 2B against step, for NAC pretraining runs.

    python experiments/code_curves.py --out docs/figures/nac_code_magnitude.png \
        runs/study-digits/seed-*/pretrain-nac runs/study-digits/seed-*/pretrain-nac-retrieval

Reads each run's metrics.jsonl (the ``code_abs_mean`` and ``loss_minus_log2b`` telemetry
of NAC runs) and draws one line per run, labelled by its folder, so a reader can see
whether the code magnitude has flattened by the end of the schedule. Also prints, per run,
the magnitude at 2/3 of the run and at its end.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nacvae.train.config import PretrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAC pretraining run folders")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--title", default="NAC code magnitude during pretraining")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    print("| run | steps | warm-up | mean abs(tanh a) at 2/3 | at the end | loss − log 2B at the end |")
    print("|---|---|---|---|---|---|")
    for folder in map(Path, args.runs):
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r.get("event") == "train" and "code_abs_mean" in r]
        config = json.loads((folder / "config.json").read_text())
        p = PretrainConfig.from_dict(config["pretrain"]).options["flip_prob"]  # old and new config.json alike
        label = f"{folder.parent.name}/{folder.name} (p = {p:g})"
        steps = [r["step"] for r in rows]
        ax1.plot(steps, [r["code_abs_mean"] for r in rows], lw=1, label=label)
        ax2.plot(steps, [r["loss_minus_log2b"] for r in rows], lw=1, label=label)
        two_thirds = min(rows, key=lambda r: abs(r["step"] - 2 * steps[-1] / 3))
        print(f"| {label} | {config['total_steps']} | {config.get('warmup_steps', '?')} | "
              f"{two_thirds['code_abs_mean']:.3f} | {rows[-1]['code_abs_mean']:.3f} | {rows[-1]['loss_minus_log2b']:.3f} |")
    ax1.set_ylabel("mean |tanh a| over the batch")
    ax2.set_ylabel("loss − log 2B (0 = trivial solution)")
    for ax in (ax1, ax2):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=7)
    fig.suptitle(args.title)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)


if __name__ == "__main__":
    main()
