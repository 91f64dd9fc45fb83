"""An evaluation of a run one cannot write to (a colleague's, a full disk) prints its result
and then says, in one sentence and with exit code 0, that the run did not record it;
``--no-record`` leaves the run alone on purpose."""

from __future__ import annotations

import errno
import json
import os

import pytest

from nacvae import files
from nacvae.runs import METRICS, read_metrics
from tests.clitools import nacvae

GAP_TINY = ["--num-images", "4", "--samples", "2", "--elbo-samples", "2", "--max-steps", "2", "--check-every", "1"]
LOGLIK_TINY = ["--samples", "2", "--num-images", "4"]
ENCODER_VERBS = [("linear", ["--epochs", "1"]), ("retrieval", []), ("codes", [])]
VAE_VERBS = [("loglik", LOGLIK_TINY), ("gap", GAP_TINY)]


def _unwritable_metrics(run):
    """metrics.jsonl as a folder: no process, root included, can append to it."""
    (run / METRICS).unlink()
    (run / METRICS).mkdir()


def _assert_not_recorded(result, run, reason):
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"The result was not recorded in {run}: ") and reason in lines[0], lines[0]
    assert lines[0].endswith(".") and lines[0].count(". ") == 0


@pytest.mark.parametrize("as_json", [False, True])
def test_codes_of_a_run_whose_metrics_cannot_be_written(pretrain_run, copy_run, as_json):
    run = copy_run(pretrain_run)
    _unwritable_metrics(run)
    result = nacvae("eval", "codes", "--run", run, *(["--json"] if as_json else []))
    _assert_not_recorded(result, run, "(Is a directory)")
    if as_json:
        assert json.loads(result.stdout)["run"] == str(run)
    else:
        assert "distinct codewords" in result.stdout


@pytest.fixture
def refused_appends(monkeypatch):
    """Appending to metrics.jsonl is refused as in a folder without write permission."""
    append = files._append

    def refuse(fd, data):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("/" + METRICS):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return append(fd, data)

    monkeypatch.setattr(files, "_append", refuse)


@pytest.mark.parametrize("verb,extra", ENCODER_VERBS + VAE_VERBS)
def test_every_recording_verb_prints_its_result_when_the_run_refuses_it(pretrain_run, vae_run, copy_run,
                                                                       refused_appends, verb, extra):
    run = copy_run(vae_run if (verb, extra) in VAE_VERBS else pretrain_run)
    before = read_metrics(run)
    result = nacvae("eval", verb, "--run", run, *extra, "--json")
    _assert_not_recorded(result, run, "is not writable (Permission denied)")
    assert json.loads(result.stdout)
    assert read_metrics(run) == before


@pytest.mark.parametrize("verb,extra", ENCODER_VERBS + VAE_VERBS)
def test_no_record_leaves_the_run_alone(pretrain_run, vae_run, copy_run, verb, extra):
    run = copy_run(vae_run if (verb, extra) in VAE_VERBS else pretrain_run)
    before = (run / METRICS).read_bytes()
    result = nacvae("eval", verb, "--run", run, *extra, "--no-record")
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and result.stdout
    assert (run / METRICS).read_bytes() == before
    # Without it, the same command records.
    assert nacvae("eval", verb, "--run", run, *extra).exit_code == 0
    assert read_metrics(run)[-1]["event"] == f"eval_{verb}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_a_read_only_run_folder(pretrain_run, copy_run):
    run = copy_run(pretrain_run)
    (run / METRICS).chmod(0o444)
    run.chmod(0o555)
    try:
        result = nacvae("eval", "codes", "--run", run)
    finally:
        run.chmod(0o755)
    _assert_not_recorded(result, run, "Permission denied")
    assert "distinct codewords" in result.stdout
