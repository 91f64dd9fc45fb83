"""Code telemetry of pretraining runs and the warning for NAC's trivial solution."""

import json
import math

import pytest
import torch

from nacvae.runs import read_config, read_metrics
from nacvae.train.config import resolve_config
from nacvae.train.pretrain import pretrain
from nacvae.train.telemetry import (
    COLLAPSE_PATIENCE_STEPS, CollapseMonitor, code_statistics, collapse_message, looks_collapsed,
)
from tests.clitools import nacvae


def test_code_statistics_by_hand():
    a = torch.tensor([[2.0, -1.0, 0.0], [2.0, -1.0, 0.5], [-3.0, 1.0, 0.0]])
    stats = code_statistics(a)
    assert stats["code_abs_mean"] == pytest.approx(
        (2 * math.tanh(2) + 3 * math.tanh(1) + math.tanh(3) + math.tanh(0.5)) / 9, rel=1e-6)
    assert stats["code_positive_fraction"] == pytest.approx(4 / 9)  # a = 0 is not a one bit
    assert stats["code_distinct_in_batch"] == 3.0


def test_looks_collapsed_needs_both_signs():
    assert looks_collapsed(5e-4, 2e-4) and looks_collapsed(5e-4, -2e-4)
    assert not looks_collapsed(5e-3, 2e-4)   # codes still away from zero
    assert not looks_collapsed(5e-4, -0.05)  # loss well below log 2B: codes still carry information


def test_monitor_fires_once_after_warmup_and_patience_then_reports_an_escape():
    m = CollapseMonitor(warmup_steps=50, patience=100)
    dead = (1e-5, 1e-6)
    assert [m.update(s, *dead) for s in range(10, 51, 10)] == [None] * 5  # inside the warm-up
    assert m.update(60, *dead) is None and m.since == 60
    assert m.update(100, 0.05, -0.1) is None and m.since is None  # a healthy row restarts the count
    events = [m.update(s, *dead) for s in range(110, 260, 10)]
    assert events.count("collapsed") == 1 and events[10] == "collapsed" and m.collapsed_at == 110
    assert m.update(270, 5e-3, 0.0) is None   # still small: no escape yet
    assert m.update(280, 0.02, -0.01) == "escaped" and m.escaped_at == 280
    assert m.update(290, 1e-5, 1e-6) is None  # reported once each


def test_the_warning_names_the_likely_cause():
    short = collapse_message(60, 1e-5, 1e-6, warmup_steps=0, lr=5, flip_prob=0.45)
    assert "--warmup-steps 500" in short and "warm-up of 0 steps" in short
    penalised = collapse_message(506, 1e-5, 1e-6, warmup_steps=500, lr=3, flip_prob=0.4, l2_weight=0.1)
    assert "--l2-weight 0" in penalised and "warm-up" not in penalised
    weak = collapse_message(506, 1e-5, 1e-6, warmup_steps=500, lr=3, flip_prob=0.45)
    assert "smaller --flip-prob" in weak
    for message in (short, penalised, weak):
        assert message.count(". ") == 1 and message.endswith("Training goes on.")


def test_nac_rows_carry_the_distance_from_log_2b(tmp_path):
    cfg = resolve_config("digits", steps=30, warmup_steps=10, batch_size=64, log_every=5, code_dim=16)
    run = pretrain(cfg, tmp_path / "run", progress=False)
    rows = [r for r in read_metrics(run) if r["event"] == "train"]
    assert [r["step"] for r in rows] == [5, 10, 15, 20, 22, 25, 30]  # every 5 steps and each epoch's end
    for r in rows:
        assert r["loss_minus_log2b"] == pytest.approx(r["loss"] - math.log(2 * 64), abs=1e-12)
        assert 0 < r["code_abs_mean"] < 1 and 0 <= r["code_positive_fraction"] <= 1
    config = read_config(run)
    assert config["total_steps"] == 30 and config["warmup_steps"] == 10 and "collapsed" not in config


def test_momentum_variant_measures_from_log_queue_length(tmp_path):
    cfg = resolve_config("digits", momentum=True, queue_size=256, steps=10, batch_size=64, log_every=5, code_dim=16)
    rows = [r for r in read_metrics(pretrain(cfg, tmp_path / "run", progress=False)) if r["event"] == "train"]
    assert all(r["loss_minus_log2b"] == pytest.approx(r["loss"] - math.log(256), abs=1e-12) for r in rows)


def test_a_run_made_to_collapse_warns_once_and_records_it(tmp_path):
    # No warm-up, lr 5 and p = 0.45 drive the codes to z = 0 within ~60 steps.
    out = tmp_path / "run"
    result = nacvae("pretrain", "--data", "digits", "--warmup-steps", "0", "--flip-prob", "0.45", "--lr", "5",
                    "--steps", 60 + COLLAPSE_PATIENCE_STEPS + 60, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "collapsed to the trivial solution" in line]
    assert len(warnings) == 1 and "--warmup-steps 500" in warnings[0] and "--lr" in warnings[0]
    config = json.loads((out / "config.json").read_text())
    assert config["collapsed"] is True and config["status"] == "complete"
    assert config["collapsed_at_step"] <= config["total_steps"] - COLLAPSE_PATIENCE_STEPS
