"""The collectives' timeout: an option with a long default, applied to the process group."""

from datetime import timedelta

import pytest
import torch
import torch.distributed as dist

from tests.clitools import assert_clean_failure, nacvae
from tests.train.test_distributed import free_port


def one_process_launch(monkeypatch):
    """What torchrun sets for a job of one process (a real gloo group on loopback)."""
    for name, value in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(name, value)


def group_timeout() -> timedelta:
    backend = dist.distributed_c10d._get_default_group()._get_backend(torch.device("cpu"))
    return backend.options._timeout


@pytest.mark.parametrize("minutes, expected", [(None, timedelta(minutes=30)), (90, timedelta(minutes=90)),
                                               (2.5, timedelta(seconds=150))])
def test_gloo_group_gets_the_timeout(monkeypatch, minutes, expected):
    from nacvae import distributed

    one_process_launch(monkeypatch)
    with distributed.process_group(torch.device("cpu"), distributed.collective_timeout(minutes)):
        assert group_timeout() == expected
    assert not dist.is_initialized()
    assert distributed.DEFAULT_TIMEOUT_MINUTES == 30


def test_pretrain_passes_dist_timeout_to_the_group(monkeypatch, tmp_path):
    from nacvae.errors import ConfigError

    one_process_launch(monkeypatch)
    seen = []
    real = dist.init_process_group

    def spy(*args, **kwargs):  # joins, records the timeout, and stops the run there
        real(*args, **kwargs)
        seen.append(group_timeout())
        dist.destroy_process_group()
        raise ConfigError("Stopped after joining the group.")

    monkeypatch.setattr(dist, "init_process_group", spy)
    result = nacvae("pretrain", "--steps", "2", "--batch-size", "32", "--device", "cpu",
                    "--dist-timeout", "45", "--out", tmp_path / "run", "--quiet")
    assert_clean_failure(result, "Stopped after joining the group.")
    assert seen == [timedelta(minutes=45)]


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf"])
def test_bad_dist_timeout_fails_in_one_sentence(tmp_path, value):
    result = nacvae("pretrain", "--dist-timeout", value, "--out", tmp_path / "run", "--quiet")
    assert_clean_failure(result, "--dist-timeout must be a positive number of minutes")
    assert not (tmp_path / "run").exists()
