"""A quick evaluation imports only what it runs: not torchvision (its import brings in
torch._dynamo), not a torch optimiser (which does too), not scikit-learn (the digits are
read from its data file directly). Together they were most of `eval linear`'s start-up."""

import json
import subprocess
import sys

HEAVY = ("torch._dynamo", "torchvision", "sklearn")

SCRIPT = """
import json, sys
from nacvae.cli.main import cli
try:
    cli(["eval", "linear", "--init", "random", "--arch", "smallconv", "--data", "digits", "--protocol", "fast",
          "--epochs", "2", "--device", "cpu", "--json"], prog_name="nacvae")
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("torchvision", "sklearn")
                  or m.startswith("torch._dynamo"))}), file=sys.stderr)
"""


def test_eval_linear_on_digits_imports_nothing_it_does_not_run():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", **_python_env()})
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report["code"] in (0, None), done.stderr
    assert json.loads(done.stdout)["test_accuracy"] > 0.1
    assert report["loaded"] == [], report["loaded"]


def _python_env():
    import os

    return {k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "HOME", "NACVAE_DATA_DIR", "VIRTUAL_ENV")}
