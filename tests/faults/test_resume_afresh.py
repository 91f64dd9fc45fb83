"""``--resume`` on a run folder without a checkpoint (deleted, or never written) starts the run
afresh in place with its saved configuration, instead of a dead end between "start it
again without --resume" and "the folder is already used; pass --resume"."""

import json

import pytest

from nacvae.errors import ConfigError
from nacvae.runs import CHECKPOINT, CONFIG, METRICS, RunFolder, read_metrics
from tests.clitools import assert_clean_failure, nacvae

AFRESH = "holds no checkpoint, so the run starts afresh in place with its saved configuration."


@pytest.mark.parametrize("kind", ["pretrain", "vae"])
def test_resume_without_a_checkpoint_starts_afresh(request, copy_run, kind):
    run = copy_run(request.getfixturevalue(f"{kind}_run"))
    saved = json.loads((run / CONFIG).read_text())
    first = [r for r in read_metrics(run) if r["event"] == "train"]
    (run / CHECKPOINT).unlink()
    assert_clean_failure(nacvae(kind, "--out", run, "--quiet"), "already used; choose another --out or pass --resume")
    result = nacvae(kind, "--out", run, "--resume", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == f"{run} {AFRESH}"
    assert (run / CHECKPOINT).is_file()
    config = json.loads((run / CONFIG).read_text())
    assert config["status"] == "complete" and config[kind] == saved[kind]
    # The earlier start's records were cleared, not appended to: the steps are those of one run.
    again = [r["step"] for r in read_metrics(run) if r["event"] == "train"]
    assert again == [r["step"] for r in first] and again

def test_resume_without_configuration_is_still_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / METRICS).write_text("")
    assert_clean_failure(nacvae("pretrain", "--out", tmp_path / "run", "--resume"),
                         "is not a run folder (no config.json)")


def test_a_checkpoint_written_meanwhile_is_continued_not_overwritten(pretrain_run, copy_run):
    # --resume decided to start afresh, then another process wrote a checkpoint before the lock.
    run = copy_run(pretrain_run)
    before = (run / CHECKPOINT).read_bytes()
    with pytest.raises(ConfigError, match="has been given a checkpoint meanwhile; continue it with --resume"):
        RunFolder(run, resume=True, afresh=True).open()
    assert (run / CHECKPOINT).read_bytes() == before and (run / METRICS).is_file()
