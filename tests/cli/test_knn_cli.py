"""``nacvae eval knn``: JSON output, the run's metrics, the random baseline, streamed data, bad input."""

from __future__ import annotations

import json

import pytest

from nacvae.runs import read_metrics
from nacvae.train.config import resolve_config
from nacvae.train.pretrain import pretrain
from tests.clitools import assert_clean_failure, nacvae
from tests.imagefiles import make_imagenet

pytestmark = pytest.mark.usefixtures("one_thread")


def json_of(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = resolve_config("digits", epochs=1, batch_size=256, code_dim=16, monitor_every=0)
    return pretrain(cfg, tmp_path_factory.mktemp("runs") / "nac", progress=False)


def test_knn_json_is_appended_to_the_run(run):
    out = json_of(nacvae("eval", "knn", "--run", run, "--json"))
    assert out["k"] == 200 and out["temperature"] == 0.07 and out["similarity"] == "cosine"
    assert out["num_train"] == 1438 and out["num_test"] == 359 and out["feature_dim"] == 256
    assert 0.1 < out["top1"] <= out["top5"] <= 1.0 and out["objective"] == "nac"
    event = read_metrics(run)[-1]
    assert event["event"] == "eval_knn" and event["top1"] == out["top1"]
    # the batch size only chunks the work
    small = json_of(nacvae("eval", "knn", "--run", run, "--batch-size", "97", "--k", "20", "--json"))
    again = json_of(nacvae("eval", "knn", "--run", run, "--k", "20", "--json"))
    assert small["top1"] == pytest.approx(again["top1"], abs=1 / 359) and small["k"] == 20


def test_text_output_and_the_random_baseline():
    text = nacvae("eval", "knn", "--init", "random", "--arch", "smallconv", "--data", "digits", "--k", "10")
    assert text.exit_code == 0, text.output
    assert "Encoder: random smallconv" in text.stdout and "top-1" in text.stdout and "k = 10" in text.stdout


@pytest.mark.parametrize("args,fragment", [(("--k", "0"), "--k"), (("--temperature", "0"), "--temperature"),
                                           (("--batch-size", "0"), "--batch-size")])
def test_bad_options_are_one_sentence(args, fragment):
    result = nacvae("eval", "knn", "--init", "random", "--data", "digits", *args)
    assert_clean_failure(result, fragment)


def test_a_folder_without_labels_is_refused(tmp_path):
    root = make_imagenet(tmp_path / "imgs", train_per_class=2, val_per_class=1, classes=("a",))
    for split in ("train", "val"):
        for f in (root / split / "a").iterdir():
            f.rename(root / split / f.name)
        (root / split / "a").rmdir()
    (root / "val").rename(root / "test")
    result = nacvae("eval", "knn", "--init", "random", "--arch", "smallconv", "--data", f"folder:{root}")
    assert_clean_failure(result, "class labels")


def test_a_streamed_folder_gives_the_in_memory_answer(tmp_path, monkeypatch):
    import nacvae.data.catalog as catalog

    root = make_imagenet(tmp_path / "imgs", train_per_class=5, val_per_class=3, classes=("a", "b", "c"))
    (root / "val").rename(root / "test")
    args = ("eval", "knn", "--init", "random", "--arch", "smallconv", "--data", f"folder:{root}", "--k", "4",
            "--batch-size", "4", "--workers", "0", "--json")
    memory = json_of(nacvae(*args))
    monkeypatch.setattr(catalog, "FOLDER_STREAM_BYTES", 0)  # every folder streams
    streamed = json_of(nacvae(*args))
    assert streamed["num_train"] == 15 and streamed["num_test"] == 9 and streamed["k"] == 4
    assert streamed["top1"] == memory["top1"] and streamed["top5"] == memory["top5"]


def test_a_plain_backbone_state_dict_gives_the_runs_answer(run, tmp_path):
    path = tmp_path / "backbone.pt"
    assert nacvae("export", "--run", run, "--out", path).exit_code == 0
    plain = json_of(nacvae("eval", "knn", "--checkpoint", path, "--arch", "smallconv", "--data", "digits", "--json"))
    assert plain["top1"] == json_of(nacvae("eval", "knn", "--run", run, "--json"))["top1"]
