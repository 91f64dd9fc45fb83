"""``nacvae eval linear | retrieval | codes`` in-process: JSON output, run metrics, bad input."""

import json

import numpy as np
import pytest

from tests.clitools import assert_clean_failure, nacvae

from nacvae.checkpoint import save_checkpoint
from nacvae.runs import CHECKPOINT, read_metrics
from nacvae.train.config import resolve_config
from nacvae.train.pretrain import pretrain
from nacvae.transfer import export_backbone

pytestmark = pytest.mark.usefixtures("one_thread")


def json_of(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = resolve_config("digits", epochs=1, batch_size=256, code_dim=16)
    return pretrain(cfg, tmp_path_factory.mktemp("runs") / "nac", progress=False)


def last_event(run):
    return read_metrics(run)[-1]


def test_linear_json_is_appended_to_the_run(run):
    out = json_of(nacvae("eval", "linear", "--run", run, "--epochs", "3", "--json"))
    for key in ("protocol", "train_accuracy", "test_accuracy", "feature_dim", "epochs", "objective",
                "checkpoint", "dataset"):
        assert key in out
    assert out["protocol"] == "fast" and out["epochs"] == 3 and out["feature_dim"] == 256
    assert out["objective"] == "nac" and out["dataset"] == "digits" and out["checkpoint"].endswith("last.pt")
    assert 0.0 <= out["train_accuracy"] <= 1.0 and 0.0 <= out["test_accuracy"] <= 1.0
    event = last_event(run)
    assert event["event"] == "eval_linear" and event["test_accuracy"] == out["test_accuracy"]


def test_linear_paper_protocol_and_text_output(run):
    out = json_of(nacvae("eval", "linear", "--run", run, "--protocol", "paper", "--epochs", "1", "--json"))
    assert out["protocol"] == "paper" and out["epochs"] == 1 and out["augmentation"]["flip_p"] == 0.0
    text = nacvae("eval", "linear", "--checkpoint", run / CHECKPOINT, "--epochs", "1")
    assert text.exit_code == 0, text.output
    assert "fast protocol" in text.stdout and "test top-1" in text.stdout


def test_retrieval_json_is_appended_to_the_run(run):
    out = json_of(nacvae("eval", "retrieval", "--run", run, "--json"))
    assert out["ties"] == "gallery-index" and out["empty_queries"] == "excluded"
    assert out["bits"] == 16 and out["topk"] == out["gallery_size"] == 1627 and out["num_queries"] == 170
    assert out["queries_per_class"] == 17 and out["split_seed"] == 0 and 0.0 < out["map"] <= 1.0
    assert last_event(run)["event"] == "eval_retrieval"
    cut = json_of(nacvae("eval", "retrieval", "--run", run, "--topk", "10", "--count-empty",
                         "--split-seed", "3", "--json"))
    assert cut["topk"] == 10 and cut["empty_queries"] == "zero" and cut["split_seed"] == 3
    assert last_event(run)["split_seed"] == 3
    text = nacvae("eval", "retrieval", "--run", run)
    assert "mAP@all" in text.stdout and "ties by gallery index" in text.stdout
    assert out["ranking"] == "hamming"


def test_retrieval_with_the_papers_ranking(run):
    out = json_of(nacvae("eval", "retrieval", "--run", run, "--ranking", "paper", "--json"))
    assert out["ranking"] == "paper" and out["ties"] == "numpy-default-argsort" and 0.0 < out["map"] <= 1.0
    assert last_event(run)["ranking"] == "paper"
    assert "inner product" in nacvae("eval", "retrieval", "--run", run, "--ranking", "paper").stdout
    assert_clean_failure(nacvae("eval", "retrieval", "--run", run, "--ranking", "cosine"), "cosine", usage_error=True)


def test_codes_json_is_appended_to_the_run(run):
    out = json_of(nacvae("eval", "codes", "--run", run, "--json"))
    assert out["split"] == "test" and out["num_codes"] == 359 and out["code_length"] == 16
    assert 1 <= out["distinct_codes"] <= 359 and 0 <= out["mean_pairwise_hamming"] <= 16
    assert 0 <= out["bit_balance"] <= 1
    assert last_event(run)["event"] == "eval_codes"


def test_random_baseline(run):
    before = len(read_metrics(run))
    base = ["--init", "random", "--arch", "smallconv", "--json"]
    linear = json_of(nacvae("eval", "linear", *base, "--epochs", "2"))
    assert linear["objective"] == "random" and linear["init"] == "random" and linear["checkpoint"] is None
    retrieval = json_of(nacvae("eval", "retrieval", *base, "--code-dim", "16"))
    assert retrieval["bits"] == 16 and 0.0 < retrieval["map"] <= 1.0
    codes = json_of(nacvae("eval", "codes", *base))
    assert codes["code_length"] == 128
    again = json_of(nacvae("eval", "codes", *base))
    assert again["distinct_codes"] == codes["distinct_codes"]
    # Without --arch the random baseline takes the dataset's default, as pretraining does.
    default = json_of(nacvae("eval", "codes", "--init", "random", "--json"))
    assert default["arch"] == "smallconv" and default["distinct_codes"] == codes["distinct_codes"]
    assert len(read_metrics(run)) == before


def write_pngs(folder, count):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(folder / f"{i:03d}.png")


def test_bad_input_fails_with_one_sentence(run, tmp_path):
    before = len(read_metrics(run))
    checkpoint = run / CHECKPOINT
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    short = tmp_path / "short.pt"
    short.write_bytes(b"junk\n")
    vae = tmp_path / "vae.pt"
    save_checkpoint(vae, "vae", {"arch": "smallconv"}, {}, {}, step=1)
    backbone = tmp_path / "backbone.pt"
    export_backbone(checkpoint, backbone)
    unlabelled = tmp_path / "unlabelled"
    write_pngs(unlabelled, 12)
    random = ["--init", "random", "--arch", "smallconv"]
    cases = [
        (["linear", "--run", run, "--arch", "resnet18"], "arch 'smallconv'"),
        (["retrieval", "--checkpoint", checkpoint, "--arch", "vgg16_bn"], "arch 'smallconv'"),
        (["retrieval", "--run", run, "--topk", "0"], "--topk must be at least 1"),
        (["retrieval", "--run", run, "--topk", "5000"], "gallery holds only 1627"),
        (["linear", "--init", "random", "--arch", "resnet7"], "Unknown architecture 'resnet7'"),
        (["linear"], "Give --run or --checkpoint"),
        (["linear", "--run", run, "--checkpoint", checkpoint], "only one of --run and --checkpoint"),
        (["linear", "--run", run, "--init", "random", "--arch", "smallconv"], "cannot be combined"),
        (["linear", "--run", tmp_path / "no-such-run"], "does not exist"),
        (["codes", "--run", tmp_path], "not a nacvae run folder"),
        (["linear", "--checkpoint", garbage], "not a readable nacvae checkpoint"),
        (["codes", "--checkpoint", short], "not a readable nacvae checkpoint"),
        (["linear", "--checkpoint", short, "--arch", "smallconv"], "not a readable nacvae checkpoint"),
        (["retrieval", "--checkpoint", vae], "vae checkpoint, not a pretrain checkpoint"),
        (["retrieval", "--checkpoint", backbone, "--arch", "smallconv"], "projection head"),
        (["codes", "--checkpoint", backbone, "--arch", "smallconv"], "projection head"),
        (["linear", "--checkpoint", backbone], "pass --arch"),
        (["linear", *random, "--data", f"folder:{unlabelled}"], "needs class labels"),
        (["retrieval", *random, "--data", f"folder:{unlabelled}"], "needs class labels"),
        (["linear", "--run", run, "--data", "cifar10", "--data-dir", tmp_path / "nothing", "--no-download"],
         "CIFAR-10 was not found"),
        (["linear", "--run", run, "--epochs", "0"], "epochs must be at least 1"),
        (["codes", "--run", run, "--batch-size", "0"], "--batch-size must be at least 1"),
        (["codes", "--run", run, "--image-size", "16"], "--image-size 16 does not match"),
    ]
    for args, fragment in cases:
        assert_clean_failure(nacvae("eval", *args), fragment)
    assert len(read_metrics(run)) == before
