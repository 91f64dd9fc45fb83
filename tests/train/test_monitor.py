"""Online monitoring during pretraining: monitor rows, an unchanged training stream, the notes."""

from __future__ import annotations

import pytest
import torch

from nacvae.data.catalog import dataset_stats, open_dataset
from nacvae.runs import read_metrics
from nacvae.train.config import resolve_config
from nacvae.train.monitor import open_monitor
from nacvae.train.pretrain import pretrain
from tests.clitools import assert_clean_failure, nacvae

pytestmark = pytest.mark.usefixtures("one_thread")


def short(monitor_every, **extra):
    return resolve_config("digits", steps=12, batch_size=64, code_dim=16, warmup_steps=4,
                          monitor_every=monitor_every, log_every=4, **extra)


def tensors(path):
    """Every tensor of a checkpoint (weights, optimiser and scheduler state), by key path."""
    out = {}

    def walk(prefix, value):
        if isinstance(value, torch.Tensor):
            out[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(f"{prefix}/{i}", v)

    ckpt = torch.load(path / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    walk("", {k: v for k, v in ckpt.items() if k not in ("config", "meta")})
    return out


@pytest.mark.parametrize("objective", ["nac", "insdis"])  # insdis: a memory bank updated every step
def test_monitoring_leaves_the_training_stream_bit_identical(tmp_path, objective):
    watched = pretrain(short(3, objective=objective), tmp_path / "on", progress=False)
    rng = torch.get_rng_state()  # building the method seeds torch's global generator
    plain = pretrain(short(0, objective=objective), tmp_path / "off", progress=False)
    assert torch.equal(torch.get_rng_state(), rng)  # the monitor never draws from it
    a, b = tensors(watched), tensors(plain)
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        assert torch.equal(a[key], b[key]), key
    losses = lambda run: [r["loss"] for r in read_metrics(run) if r["event"] == "train"]  # noqa: E731
    assert losses(watched) == losses(plain)
    assert [r["step"] for r in read_metrics(watched) if r["event"] == "monitor"] == [3, 6, 9, 12]
    assert not [r for r in read_metrics(plain) if r["event"] == "monitor"]


def test_monitor_rows_and_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = pretrain(short(6), tmp_path / "r", progress=False)
    rows = [r for r in read_metrics(run) if r["event"] == "monitor"]
    assert [r["step"] for r in rows] == [6, 12]
    for r in rows:
        assert set(r) == {"event", "step", "knn_top1", "map"}
        assert 0.1 < r["knn_top1"] <= 1.0 and 0.0 < r["map"] <= 1.0
    # digits' subsets are its whole splits: the last check is `nacvae eval knn` of the final weights
    from nacvae.eval.encoders import resolve_encoder
    from nacvae.eval.knn_eval import evaluate_knn

    encoder = resolve_encoder(run=run)[0]
    assert rows[-1]["knn_top1"] == evaluate_knn(encoder, "digits")["top1"]
    events = EventAccumulator(str(run / "tb")).Reload()
    assert [e.value for e in events.Scalars("monitor/knn_top1")] == pytest.approx([r["knn_top1"] for r in rows])
    assert [e.step for e in events.Scalars("monitor/map")] == [6, 12]


def test_the_subsets_are_fixed_by_the_seed_and_the_encoder_is_left_as_it_was():
    cfg = short(1)
    train = open_dataset("digits", "train")
    mean, std = dataset_stats("digits", train)
    watch, note = open_monitor(cfg, mean, std, torch.device("cpu"))
    assert note is None and watch.describe()["memory"] == 1438 and watch.describe()["queries"] == 359
    again, _ = open_monitor(cfg, mean, std, torch.device("cpu"))
    assert all(torch.equal(watch.split[k], again.split[k]) for k in ("query", "gallery"))
    other, _ = open_monitor(short(1, seed=1), mean, std, torch.device("cpu"))
    assert not torch.equal(watch.split["query"], other.split["query"])

    from nacvae.train.methods import build_method

    encoder = build_method(cfg, (1, 8, 8)).encoder.train()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    result = watch.measure(encoder)
    assert encoder.training and all(m.training for m in encoder.modules())
    assert all(torch.equal(v, before[k]) for k, v in encoder.state_dict().items())  # batch-norm statistics too
    assert result == watch.measure(encoder.eval())  # and it is a function of the weights only


def test_a_streamed_dataset_is_skipped_with_a_note(tmp_path, monkeypatch):
    import nacvae.data.catalog as catalog
    from tests.imagefiles import make_imagenet

    monkeypatch.setattr(catalog, "FOLDER_STREAM_BYTES", 0)  # every folder streams
    root = make_imagenet(tmp_path / "imgs", train_per_class=4, val_per_class=2, classes=("a", "b"))
    (root / "val").rename(root / "test")
    out = tmp_path / "run"
    result = nacvae("pretrain", "--data", f"folder:{root}", "--arch", "smallconv", "--steps", "2", "--batch-size", "4",
                    "--code-dim", "8", "--workers", "0", "--monitor-every", "1", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("No online monitoring") == 1 and "read batch by batch" in result.stderr
    assert not [r for r in read_metrics(out) if r["event"] == "monitor"]


def test_a_negative_interval_is_one_sentence(tmp_path):
    result = nacvae("pretrain", "--monitor-every", "-1", "--out", tmp_path / "r", "--quiet")
    assert_clean_failure(result, "--monitor-every must not be negative")
    assert not (tmp_path / "r").exists()


def test_the_digits_default_logs_at_least_five_points():
    cfg = resolve_config("digits")
    assert cfg.monitor_every > 0 and cfg.steps // cfg.monitor_every >= 5
    assert resolve_config("digits", monitor_every=0).monitor_every == 0


@pytest.mark.slow
def test_knn_top1_rises_over_a_default_digits_run(tmp_path):
    run = pretrain(resolve_config("digits"), tmp_path / "r", progress=False)  # 1,500 steps: minutes on one thread
    rows = [r for r in read_metrics(run) if r["event"] == "monitor"]
    assert len(rows) >= 5
    assert rows[-1]["knn_top1"] > rows[0]["knn_top1"]


def two_process_worker(rank: int, port: int, root) -> None:
    import os

    from tests.train.test_distributed import launch_env

    os.environ.update(launch_env(rank, port))
    torch.set_num_threads(1)
    for name, every in (("on", 2), ("off", 0)):
        cfg = resolve_config("digits", steps=4, batch_size=64, code_dim=16, warmup_steps=2, log_every=2,
                             monitor_every=every, device="cpu")
        pretrain(cfg, root / name, progress=False, dist_timeout=2)  # a rank left waiting fails, not hangs


@pytest.mark.slow  # two processes' imports and two runs each: about 40 s on a busy 2-core machine
def test_under_torchrun_rank_0_monitors_and_the_ranks_stay_in_step(tmp_path):
    import torch.multiprocessing as mp

    from tests.train.test_distributed import WORLD, free_port

    mp.spawn(two_process_worker, args=(free_port(), tmp_path), nprocs=WORLD, join=True)
    assert [r["step"] for r in read_metrics(tmp_path / "on") if r["event"] == "monitor"] == [2, 4]  # written once
    a, b = tensors(tmp_path / "on"), tensors(tmp_path / "off")
    assert all(torch.equal(a[k], b[k]) for k in a)
