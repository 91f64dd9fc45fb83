"""One rule for progress: a bar only when stderr is a terminal. Training redirected to a log
file writes one plain line per log step instead (no carriage-return redraws), and the
evaluations draw nothing there, nor with --quiet or --json."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nacvae import progress
from nacvae.runs import read_metrics
from nacvae.train import loop
from nacvae.train.loop import StepProgress
from tests.clitools import nacvae
from tests.faults.conftest import PRETRAIN_TINY, ROOT, VAE_TINY
from tests.faults.test_unrecorded import GAP_TINY, LOGLIK_TINY


def _drive(p: StepProgress) -> None:
    for done in range(1, 5):
        if done % 2 == 0:
            p.logged(done, loss="1.0000", img_s="100")
        p.update(1)
    p.close()


@pytest.mark.parametrize("terminal", [False, True])
def test_step_progress_draws_a_bar_only_on_a_terminal(monkeypatch, capsys, terminal):
    monkeypatch.setattr(loop, "on_terminal", lambda: terminal)
    _drive(StepProgress(4, 0, enabled=True))
    err = capsys.readouterr().err
    if terminal:
        assert "\r" in err and "step 2/4" not in err
    else:
        assert err == "step 2/4  loss 1.0000  images/s 100\nstep 4/4  loss 1.0000  images/s 100\n"


@pytest.mark.parametrize("terminal", [False, True])
def test_step_progress_off_prints_only_messages(monkeypatch, capsys, terminal):
    monkeypatch.setattr(loop, "on_terminal", lambda: terminal)
    p = StepProgress(4, 0, enabled=False)
    p.write("A warning.")
    _drive(p)
    assert capsys.readouterr().err == "A warning.\n"


def _logged_steps(run) -> list[int]:
    return [r["step"] for r in read_metrics(run) if r["event"] == "train"]


def _line_steps(lines: list[str]) -> list[int]:
    return [int(line.split()[1].split("/")[0]) for line in lines]


def test_pretrain_into_a_log_file_writes_one_line_per_log_step(tmp_path):
    run, log = tmp_path / "run", tmp_path / "pretrain.log"
    args = [a for a in PRETRAIN_TINY if a != "--quiet"]
    with open(log, "w") as stderr:
        done = subprocess.run([sys.executable, "-m", "nacvae", "pretrain", "--out", str(run), *args],
                              stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=300, cwd=ROOT,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, log.read_text()
    text = log.read_text()
    assert "\r" not in text
    lines = text.splitlines()
    assert _line_steps(lines) == _logged_steps(run) == [2, 4]
    assert all(line.startswith("step ") and "/4  loss " in line and " images/s " in line for line in lines), lines


def test_vae_off_a_terminal_writes_one_line_per_log_step(tmp_path):
    run = tmp_path / "vae"
    result = nacvae("vae", "--out", run, *[a for a in VAE_TINY if a != "--quiet"])
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("step ")]
    assert _line_steps(lines) == _logged_steps(run) and lines
    assert all(" loss " in line and " elbo " in line and " images/s " in line for line in lines)


EVALS = [("loglik", LOGLIK_TINY, "log p(x)"), ("gap", GAP_TINY, "inference gap")]


@pytest.mark.parametrize("verb,extra,desc", EVALS, ids=[e[0] for e in EVALS])
def test_vae_evaluations_draw_a_bar_on_a_terminal_only(monkeypatch, vae_run, copy_run, verb, extra, desc):
    run = copy_run(vae_run)
    command = ["eval", verb, "--run", run, *extra, "--no-record"]
    off_terminal = nacvae(*command)
    assert off_terminal.exit_code == 0 and off_terminal.stderr == ""
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    drawn = nacvae(*command)
    assert drawn.exit_code == 0 and desc in drawn.stderr and "\r" in drawn.stderr
    for flag in ("--quiet", "--json"):
        quiet = nacvae(*command, flag)
        assert quiet.exit_code == 0 and quiet.stderr == "", (flag, quiet.stderr)
