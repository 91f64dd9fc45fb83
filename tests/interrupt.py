"""Killing a training subprocess mid-way, for the exact-resume tests."""

import signal
import subprocess
import time

from nacvae.checkpoint import load_checkpoint
from nacvae.runs import CHECKPOINT, read_metrics


def kill_mid_run(command, run, env, records=4, timeout=120.0) -> int:
    """Start ``command``, SIGKILL it once ``run`` holds ``records`` metric records, and
    return the step of the checkpoint it left behind."""
    proc = subprocess.Popen(command, env=env)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (run / "metrics.jsonl").exists() and len(read_metrics(run)) >= records:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return load_checkpoint(run / CHECKPOINT)["step"]
