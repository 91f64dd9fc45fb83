"""One table across several VAE-study folders (variants of `nacvae reproduce --preset
fashion-mnist-vae`: likelihood, latent size, VAE steps), per backbone mode and init.

    python experiments/vae_variants.py runs/vae-main runs/vae-long runs/vae-bernoulli ... [--out table.md]

Each folder's results.json gives the mean ± sd over the seeds it holds. log p(x) is only
comparable within a likelihood: the Bernoulli VAEs model binarised pixels, the logistic
ones 8-bit levels.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nacvae.studies.vae_report import summary_text

COLUMNS = [("loglik_nats", "log p(x)", 1), ("kl", "KL", 1), ("active_units", "active units", 0),
           ("approximation_gap", "approximation gap", 1), ("amortisation_gap", "amortisation gap", 1),
           ("steps_to_random_final", "steps to random's final ELBO", 0)]
LABELS = {"random": "random", "nac": "NAC", "simclr": "SimCLR", "moco": "MoCo-v2"}


def variant_name(results: dict) -> str:
    vae = results.get("vae", {})
    return f"{vae.get('likelihood', 'logistic')}, {vae.get('latent_dim')}-d, {vae.get('steps')} steps"


def table(folders: list[Path]) -> str:
    lines = ["| variant (seeds) | backbone | encoder | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 3) + "|"]
    for folder in folders:
        results = json.loads((folder / "results.json").read_text())
        name = f"{variant_name(results)} ({results.get('seeds')})"
        for mode, cells in results["table"].items():
            for init in sorted(cells, key=lambda i: list(LABELS).index(i) if i in LABELS else len(LABELS)):
                values = cells[init]
                row = [summary_text(values.get(key), lambda v, d=digits: f"{v:.{d}f}") for key, _, digits in COLUMNS]
                if values.get("reached") is not None:
                    row[-1] += f" ({values['reached']}/{values['seeds']})"
                lines.append(f"| {name} | {mode} | {LABELS.get(init, init)} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="VAE-study folders (each with results.json)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()
    missing = [str(f) for f in args.folders if not (f / "results.json").is_file()]
    if missing:
        parser.error(f"{missing[0]} has no results.json; is it a VAE-study folder?")
    text = table(args.folders)
    print(text, end="")
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
