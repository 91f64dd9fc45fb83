"""``--data imagenet``: pretraining, evaluation and export of a ResNet with torchvision's stem,
on a tiny ImageNet-layout folder of real JPEG files."""

import json

import pytest
import torch
import torchvision

from nacvae.runs import read_config
from tests.clitools import assert_clean_failure, nacvae
from tests.imagefiles import make_imagenet

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    return make_imagenet(tmp_path_factory.mktemp("imagenet"))


@pytest.fixture(scope="module")
def run(imagenet, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "in"
    result = nacvae("pretrain", "--data", "imagenet", "--data-dir", imagenet, "--arch", "resnet18", "--epochs", "1",
                    "--batch-size", "3", "--code-dim", "16", "--workers", "1", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


def json_of(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_pretrain_trains_at_224_with_the_imagenet_stem(run):
    config = read_config(run)
    assert config["status"] == "complete" and config["steps_per_epoch"] == 2
    assert config["image_shape"] == [3, 224, 224] and config["arch"] == "resnet18"
    assert config["input"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    state = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["model"]
    assert state["encoder.backbone.conv1.weight"].shape == (64, 3, 7, 7)


def test_eval_linear_both_protocols(run):
    fast = json_of(nacvae("eval", "linear", "--run", run, "--epochs", "2", "--workers", "0", "--json"))
    assert fast["num_train"] == 6 and fast["num_test"] == 4 and fast["feature_dim"] == 512
    paper = json_of(nacvae("eval", "linear", "--run", run, "--epochs", "1", "--protocol", "paper",
                           "--workers", "1", "--json"))
    assert paper["protocol"] == "paper" and paper["augmentation"]["crop_scale"] == [0.08, 1.0]


def test_eval_retrieval(run):
    out = json_of(nacvae("eval", "retrieval", "--run", run, "--workers", "0", "--json"))
    assert out["num_queries"] == 2 and out["gallery_size"] == 8 and out["bits"] == 16
    assert out["relevance"] == "same label" and 0.0 < out["map"] <= 1.0


def test_export_loads_into_torchvision_resnet18(run, tmp_path):
    path = tmp_path / "backbone.pt"
    assert nacvae("export", "--run", run, "--out", path).exit_code == 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = torchvision.models.resnet18()
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and unexpected == []
    # strict once fc is added: every other tensor has torchvision's name and shape
    model.load_state_dict({**state, "fc.weight": model.fc.weight, "fc.bias": model.fc.bias}, strict=True)


def test_memory_bank_objectives_are_refused(imagenet, tmp_path):
    result = nacvae("pretrain", "--data", "imagenet", "--data-dir", imagenet, "--objective", "insdis",
                    "--arch", "resnet18", "--batch-size", "3", "--out", tmp_path / "r", "--quiet")
    assert_clean_failure(result, "--objective insdis")


def test_missing_imagenet_is_one_sentence(tmp_path):
    result = nacvae("pretrain", "--data", "imagenet", "--data-dir", tmp_path, "--out", tmp_path / "r", "--quiet")
    assert_clean_failure(result, "ImageNet was not found")


def test_a_streamed_folder_pretrains_and_evaluates(tmp_path, monkeypatch):
    import nacvae.data.catalog as catalog

    monkeypatch.setattr(catalog, "FOLDER_STREAM_BYTES", 0)  # every folder streams
    root = make_imagenet(tmp_path / "imgs", train_per_class=4, val_per_class=2, classes=("a", "b"))
    (root / "val").rename(root / "test")
    out = tmp_path / "run"
    result = nacvae("pretrain", "--data", f"folder:{root}", "--arch", "smallconv", "--steps", "2",
                    "--batch-size", "4", "--code-dim", "8", "--workers", "0", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    linear = json_of(nacvae("eval", "linear", "--run", out, "--epochs", "1", "--protocol", "paper",
                            "--workers", "0", "--json"))
    assert linear["num_train"] == 8 and linear["num_test"] == 4
    retrieval = json_of(nacvae("eval", "retrieval", "--run", out, "--workers", "0", "--json"))
    assert retrieval["num_queries"] + retrieval["gallery_size"] == 12
