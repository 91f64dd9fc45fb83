"""The thread-count rule and its inputs (nacvae.threads)."""

import os

import pytest
import torch

from nacvae import threads
from nacvae.errors import ConfigError


@pytest.mark.parametrize("cores, busy, processes, expected", [
    (2, 0.0, 1, 2),    # quiet: every core
    (2, 0.3, 1, 2),    # background noise rounds away
    (2, 0.6, 1, 1),    # most of a core taken
    (2, 1.0, 1, 1),    # one busy process on two cores
    (2, 2.0, 1, 1),    # never fewer than one
    (16, 3.0, 1, 13),
    (16, 0.0, 4, 4),   # torchrun's local processes share the free cores
    (16, 10.0, 4, 1),
])
def test_free_cores_rule(cores, busy, processes, expected):
    assert threads.free_cores_threads(cores, busy, processes) == expected


def test_parse_threads():
    assert threads.parse_threads(None) is None
    assert threads.parse_threads("auto") is None and threads.parse_threads(" AUTO ") is None
    assert threads.parse_threads("") is None
    assert threads.parse_threads("3") == 3 and threads.parse_threads(2) == 2
    for bad in ("0", "-1", "two", "1.5", 0, True):
        with pytest.raises(ConfigError, match="positive integer or 'auto'"):
            threads.parse_threads(bad)


def test_choose_threads_precedence(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: [0, 1, 2, 3])
    monkeypatch.setattr(threads, "busy_cores", lambda cores: 1.0)
    env = {"NACVAE_THREADS": "2", "OMP_NUM_THREADS": "3"}
    assert threads.choose_threads(5, env)[0] == 5
    assert threads.choose_threads("auto", env)[0] == 2
    assert threads.choose_threads(None, {"OMP_NUM_THREADS": "3"})[0] == 3
    assert threads.choose_threads(None, {"OMP_NUM_THREADS": ""}) == (
        3, "4 usable cores, 1.0 busy with other work, 1 process(es)")
    assert threads.choose_threads(None, {"LOCAL_WORLD_SIZE": "2"})[0] == 1
    with pytest.raises(ConfigError):
        threads.choose_threads(None, {"NACVAE_THREADS": "many"})


def test_busy_cores_subtracts_this_process(monkeypatch):
    """Two cores, 0.25 s window = 50 jiffies at 100 Hz: 40 busy jiffies of which this
    process used 0.1 s (10 jiffies) leaves 30 jiffies = 1.2 cores busy with other work."""
    samples = iter([(1000.0, 5000.0), (1040.0, 5050.0)])
    own = iter([7.0, 7.1])
    monkeypatch.setattr(threads, "_cpu_times", lambda cores: next(samples))
    monkeypatch.setattr(threads, "_own_cpu_seconds", lambda: next(own))
    clock = iter([100.0, 100.25])

    class FakeTime:
        sleep = staticmethod(lambda s: None)
        monotonic = staticmethod(lambda: next(clock))

    monkeypatch.setattr(threads, "time", FakeTime)
    assert threads.busy_cores([0, 1], seconds=0.25) == pytest.approx(1.2)


def test_cpu_times_reads_proc_stat():
    sample = threads._cpu_times(threads.usable_cores())
    if not os.path.exists("/proc/stat"):
        assert sample is None
        return
    busy, total = sample
    assert 0 <= busy <= total and total > 0
    assert 0.0 <= threads.busy_cores(seconds=0.05) <= len(threads.usable_cores())


def test_apply_threads_resizes_torch_and_sets_the_environment():
    before = torch.get_num_threads()
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    try:
        threads.apply_threads(1, env)
        assert torch.get_num_threads() == 1
        assert env["OMP_NUM_THREADS"] == "1" and env["MKL_NUM_THREADS"] == "1"
        assert env["OMP_WAIT_POLICY"] == "ACTIVE"  # the user's choice stays
        env2 = {}
        threads.apply_threads(1, env2)
        assert env2["OMP_WAIT_POLICY"] == "PASSIVE"
    finally:
        torch.set_num_threads(before)


def test_a_count_nacvae_measured_is_measured_again(monkeypatch):
    """The count written into $OMP_NUM_THREADS after measuring the load is not mistaken for
    a user's choice by a later decision in the same process (or a child): the load may have
    changed. A user's own $OMP_NUM_THREADS still wins."""
    monkeypatch.setattr(threads, "usable_cores", lambda: [0, 1])
    before = torch.get_num_threads()
    env = {}
    try:
        monkeypatch.setattr(threads, "busy_cores", lambda cores: 0.0)
        n, _ = threads.choose_threads(None, env)
        threads.apply_threads(n, env, auto=True)
        assert env["OMP_NUM_THREADS"] == "2"
        monkeypatch.setattr(threads, "busy_cores", lambda cores: 1.0)  # another process started
        assert threads.choose_threads(None, env)[0] == 1
        threads.apply_threads(3, env)  # an explicit count clears the mark
        assert threads.choose_threads(None, env) == (3, "$OMP_NUM_THREADS")
    finally:
        torch.set_num_threads(before)
