"""experiments/vae_variants.py: one table across VAE-study folders."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "vae_variants.py"


def _study(folder: Path, likelihood: str, kl: float) -> Path:
    folder.mkdir()
    s = lambda v: {"mean": v, "std": 1.0, "n": 2}  # noqa: E731
    cells = {init: {"seeds": 2, "reached": 1, "loglik_nats": s(-100.0), "kl": s(kl), "amortisation_gap": s(5.0)}
             for init in ("moco", "nac", "random")}
    results = {"seeds": 2, "vae": {"likelihood": likelihood, "latent_dim": 16, "steps": 150},
               "table": {"frozen": cells}}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_table_lists_every_variant_in_init_order(tmp_path):
    a, b = _study(tmp_path / "a", "logistic", 3.0), _study(tmp_path / "b", "bernoulli", 7.5)
    out = subprocess.run([sys.executable, str(SCRIPT), str(a), str(b), "--out", str(tmp_path / "t.md")],
                         capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| logistic") or line.startswith("| bernoulli")]
    assert [r.split(" | ")[2] for r in rows] == ["random", "NAC", "MoCo-v2"] * 2
    assert "| logistic, 16-d, 150 steps (2) | frozen | random | -100.0 ± 1.0 | 3.0 ± 1.0 | – |" in out
    assert "7.5 ± 1.0" in rows[3] and rows[3].endswith("| – (1/2) |")
    assert (tmp_path / "t.md").read_text() == out


def test_a_folder_without_results_is_refused(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "has no results.json" in result.stderr
