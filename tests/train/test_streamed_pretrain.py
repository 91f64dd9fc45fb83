"""Pretraining on streamed data: the same run whatever the number of workers, exact resume."""

import pytest
import torch

from nacvae.checkpoint import load_checkpoint
from nacvae.runs import CHECKPOINT
from nacvae.train.config import resolve_config
from nacvae.train.pretrain import pretrain
from tests.imagefiles import make_imagenet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    return make_imagenet(tmp_path_factory.mktemp("imagenet"), train_per_class=4, val_per_class=1)


def config(imagenet, workers):
    return resolve_config("imagenet", data_dir=str(imagenet), arch="smallconv", image_size=32, batch_size=4,
                          epochs=2, warmup_steps=1, code_dim=8, checkpoint_every=2, log_every=1, workers=workers)


def test_workers_do_not_change_the_run_and_resume_is_exact(imagenet, tmp_path, monkeypatch):
    from nacvae.methods import nac as methods

    whole = load_checkpoint(pretrain(config(imagenet, 0), tmp_path / "serial", progress=False) / CHECKPOINT)
    parallel = load_checkpoint(pretrain(config(imagenet, 2), tmp_path / "parallel", progress=False) / CHECKPOINT)
    assert whole["step"] == parallel["step"] == 4
    assert all(torch.equal(whole["model"][k], parallel["model"][k]) for k in whole["model"])

    real, calls = methods.NAC.after_step, [0]

    def interrupt_at_step_3(self):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        real(self)

    monkeypatch.setattr(methods.NAC, "after_step", interrupt_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        pretrain(config(imagenet, 1), tmp_path / "cut", progress=False)
    monkeypatch.setattr(methods.NAC, "after_step", real)
    assert load_checkpoint(tmp_path / "cut" / CHECKPOINT)["step"] == 2
    pretrain(config(imagenet, 1), tmp_path / "cut", resume=True, progress=False)
    resumed = load_checkpoint(tmp_path / "cut" / CHECKPOINT)
    assert resumed["step"] == 4
    assert all(torch.equal(whole["model"][k], resumed["model"][k]) for k in whole["model"])
