"""A loss that turns non-finite before the first checkpoint: a true message, and no folder
left behind that could neither be resumed nor started again."""

import pytest

from nacvae.runs import CHECKPOINT
from tests.clitools import assert_clean_failure, nacvae
from tests.faults.conftest import PRETRAIN_TINY


def test_divergence_before_the_first_checkpoint_leaves_nothing(tmp_path):
    run = tmp_path / "runs" / "diverged"
    result = nacvae("pretrain", "--out", run, "--lr", "1e30", "--steps", "20", "--batch-size", "128",
                    "--code-dim", "8", "--warmup-steps", "1", "--quiet")
    assert_clean_failure(result, "nothing had been saved yet, so nothing of the run is kept")
    assert "checkpoint is kept" not in result.stderr
    assert not run.exists() and not run.parent.exists()  # the folders it made are gone
    # So starting again is possible (no "already used" dead end).
    again = nacvae("pretrain", "--out", run, *PRETRAIN_TINY)
    assert again.exit_code == 0, again.output


def test_divergence_after_a_checkpoint_keeps_it(tmp_path, monkeypatch):
    import torch

    from nacvae.train import pretrain as module

    real = module.train_step
    calls = {"n": 0}

    def diverge_after_a_checkpoint(*args):
        calls["n"] += 1
        loss, a1 = real(*args)
        return (loss * torch.nan if calls["n"] > 2 else loss), a1

    monkeypatch.setattr(module, "train_step", diverge_after_a_checkpoint)
    fresh = tmp_path / "run"
    result = nacvae("pretrain", "--out", fresh, *PRETRAIN_TINY)
    assert_clean_failure(result, "the last good checkpoint (step 2) is kept in")
    assert (fresh / CHECKPOINT).is_file()
    assert '"status": "failed"' in (fresh / "config.json").read_text()


@pytest.mark.parametrize("lr", ["nan", "inf", "-1", "0"])
def test_learning_rates_that_cannot_train_are_refused(tmp_path, lr):
    for command in ("pretrain", "vae"):
        out = tmp_path / command
        assert_clean_failure(nacvae(command, "--out", out, "--lr", lr), "--lr must be a")
        assert not out.exists()
