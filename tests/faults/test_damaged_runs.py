"""Damaged run metadata ends in one sentence; a cut-off metrics line is repaired on resume;
a run of one kind is not resumed as the other."""

import json

import pytest
import torch

from nacvae.runs import CHECKPOINT, CONFIG, METRICS, read_metrics
from tests.clitools import assert_clean_failure, nacvae
from tests.faults.conftest import edit_config


def _drop(key):
    def change(config):
        del config[key]
        return config
    return change


@pytest.mark.parametrize("damage,fragment", [
    (lambda c: [], "is damaged: it does not hold a run configuration"),
    (lambda c: None, "is damaged: it does not hold a run configuration"),
    (_drop("pretrain"), "is damaged: it has no pretrain settings"),
    (_drop("kind"), "does not say whether it is a pretraining or a VAE run"),
    (lambda c: {**c, "pretrain": {**c["pretrain"], "epochs": "many"}}, "--epochs must be a whole number"),
])
def test_damaged_config_json(pretrain_run, copy_run, damage, fragment):
    run = copy_run(pretrain_run)
    edit_config(run, damage)
    assert_clean_failure(nacvae("pretrain", "--out", run, "--resume", "--quiet"), fragment)
    if "settings" not in fragment and "whole number" not in fragment:
        assert_clean_failure(nacvae("eval", "codes", "--run", run), fragment)


def test_damaged_vae_config_json(vae_run, copy_run):
    for damage, fragment in [(lambda c: [], "does not hold a run configuration"),
                             (_drop("vae"), "it has no vae settings"),
                             (_drop("encoder"), "does not describe the run's encoder")]:
        run = copy_run(vae_run, fragment)
        edit_config(run, damage)
        assert_clean_failure(nacvae("vae", "--out", run, "--resume", "--quiet"), fragment)


def _edit_checkpoint(run, change):
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)
    change(ckpt)
    torch.save(ckpt, run / CHECKPOINT)


def _pop(key):
    return lambda ckpt: ckpt.pop(key)


def _set(key, value):
    return lambda ckpt: ckpt.__setitem__(key, value)


def _wrong_shape(ckpt):
    name = next(k for k, v in ckpt["model"].items() if v.dim() == 4)
    ckpt["model"][name] = torch.zeros(3, 3)


def _wrong_optimizer_shape(ckpt):
    state = ckpt["optimizer"]["state"]
    key = next(k for k, v in state.items() if v.get("momentum_buffer") is not None or "exp_avg" in v)
    buffer = "momentum_buffer" if "momentum_buffer" in state[key] else "exp_avg"
    state[key][buffer] = torch.zeros(7)


@pytest.mark.parametrize("damage,fragment", [
    (_pop("meta"), "is damaged: it has no meta description"),
    (_pop("model"), "is damaged: it holds no model weights"),
    (_set("version", "one"), "is damaged: its format version 'one' is not a version number"),
    (_set("step", "ten"), "is damaged: its step 'ten' is not a step count"),
    (_wrong_shape, "does not hold weights of this run's model"),
    (_wrong_optimizer_shape, "its optimizer state has a tensor of shape (7,)"),
    (_pop("optimizer"), "it holds no optimizer state to continue from"),
])
def test_damaged_checkpoint_on_resume(pretrain_run, vae_run, copy_run, damage, fragment):
    for source, command in ((pretrain_run, "pretrain"), (vae_run, "vae")):
        run = copy_run(source)
        _edit_checkpoint(run, damage)
        before = (run / CHECKPOINT).read_bytes()
        assert_clean_failure(nacvae(command, "--out", run, "--resume", "--quiet"), fragment)
        assert (run / CHECKPOINT).read_bytes() == before


def test_damaged_checkpoint_for_evaluation_and_export(pretrain_run, copy_run, tmp_path):
    run = copy_run(pretrain_run)
    _edit_checkpoint(run, _pop("meta"))
    assert_clean_failure(nacvae("eval", "codes", "--run", run), "it has no meta description")
    assert_clean_failure(nacvae("export", "--run", run, "--out", tmp_path / "b.pt"), "it has no meta description")
    _edit_checkpoint(run, _set("meta", {"arch": "smallconv"}))
    assert_clean_failure(nacvae("eval", "codes", "--run", run), "its meta description lacks a valid objective")


def test_a_cut_off_metrics_line_is_repaired_on_resume(pretrain_run, copy_run):
    run = copy_run(pretrain_run)
    records = read_metrics(run)
    with open(run / METRICS, "a") as f:
        f.write('{"event": "train", "step": 9, "lo')  # a kill during an append
    assert read_metrics(run) == records  # readers skip it
    # An evaluation appending meanwhile starts a new line instead of continuing the cut one.
    assert nacvae("eval", "codes", "--run", run, "--json").exit_code == 0
    assert [r["event"] for r in read_metrics(run)] == [r["event"] for r in records] + ["eval_codes"]
    result = nacvae("pretrain", "--out", run, "--resume", "--quiet")
    assert result.exit_code == 0, result.output
    lines = (run / METRICS).read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)  # the damaged line is gone


def test_resuming_a_run_of_the_other_kind(pretrain_run, vae_run):
    assert_clean_failure(nacvae("pretrain", "--out", vae_run, "--resume", "--quiet"),
                         f"Cannot resume: {vae_run} is a vae run, not a pretraining run")
    assert_clean_failure(nacvae("vae", "--out", pretrain_run, "--resume", "--quiet"),
                         f"Cannot resume: {pretrain_run} is a pretrain run, not a VAE run")
    assert json.loads((vae_run / CONFIG).read_text())["status"] == "complete"
