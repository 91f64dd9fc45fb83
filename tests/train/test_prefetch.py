"""The next step's views made in a background thread: the same run, item for item."""

import threading

import pytest
import torch

from nacvae.checkpoint import load_checkpoint
from nacvae.runs import CHECKPOINT, read_metrics
from nacvae.train import pretrain as pretrain_module
from nacvae.train.config import resolve_config
from nacvae.train.prefetch import Prefetch, worth_prefetching


def test_items_come_in_step_order_from_a_one_thread_worker(two_threads):
    seen = []

    def make(step):
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return step * step

    with Prefetch(make, range(6)) as items:
        assert list(items) == [0, 1, 4, 9, 16, 25]
    assert all(name == "nacvae-prefetch" and n == 1 for name, n in seen)
    assert torch.get_num_threads() == 2  # the caller keeps its threads
    adopted = []
    later = threading.Thread(target=lambda: adopted.append(torch.get_num_threads()))
    later.start()
    later.join()
    assert adopted == [2]  # and so do threads started afterwards


def test_an_error_in_the_worker_is_raised_by_the_consumer():
    def make(step):
        if step == 2:
            raise ValueError("bad batch")
        return step

    items = Prefetch(make, range(5))
    assert next(items) == 0 and next(items) == 1
    with pytest.raises(ValueError, match="bad batch"):
        next(items)


def test_closing_early_stops_the_worker():
    made = []
    items = Prefetch(made.append, range(10**9))
    next(items)
    items.close()
    assert not items._thread.is_alive() and len(made) < 10


def test_only_cpu_in_memory_runs_on_two_or_more_threads(two_threads):
    cpu = torch.device("cpu")
    assert worth_prefetching(cpu, streamed=False)
    assert not worth_prefetching(cpu, streamed=True)
    assert not worth_prefetching(torch.device("cuda"), streamed=False)
    torch.set_num_threads(1)
    assert not worth_prefetching(cpu, streamed=False)


@pytest.mark.parametrize("objective", ["nac", "insdis"])  # two views, and one view per step
def test_a_run_is_the_same_with_and_without_prefetching(tmp_path, monkeypatch, two_threads, objective):
    cfg = resolve_config("digits", objective=objective, epochs=2, batch_size=128, log_every=1, code_dim=16)
    runs, started = {}, []

    class Counted(Prefetch):
        def __init__(self, *args, **kwargs):
            started.append(True)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(pretrain_module, "Prefetch", Counted)
    for on in (True, False):
        monkeypatch.setattr(pretrain_module, "PREFETCH", on)
        runs[on] = pretrain_module.pretrain(cfg, tmp_path / f"prefetch-{on}", progress=False)
    assert started == [True]  # the first run made its views in the background
    losses = [[r["loss"] for r in read_metrics(runs[on]) if r["event"] == "train"] for on in (True, False)]
    assert losses[0] == losses[1] and len(losses[0]) == 22
    a, b = (load_checkpoint(runs[on] / CHECKPOINT)["model"] for on in (True, False))
    assert all(torch.equal(a[k], b[k]) for k in a)
