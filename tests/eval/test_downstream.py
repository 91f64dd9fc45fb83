"""End-to-end evaluations of encoders: resolving what to evaluate, linear, retrieval, codes."""

import numpy as np
import pytest
import torch

from nacvae.errors import CheckpointError, ConfigError, DataError
from nacvae.eval.codes_eval import evaluate_codes
from nacvae.eval.encoders import BackboneOnly, encoder_summary, resolve_encoder
from nacvae.eval.linear_eval import evaluate_linear
from nacvae.eval.retrieval_eval import evaluate_retrieval
from nacvae.runs import CHECKPOINT
from nacvae.train.config import resolve_config
from nacvae.train.pretrain import pretrain
from nacvae.transfer import export_backbone

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = resolve_config("digits", epochs=1, batch_size=256, code_dim=16)
    return pretrain(cfg, tmp_path_factory.mktemp("runs") / "nac", progress=False)


def write_pngs(folder, count, rgb=False, seed=0):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        shape = (12, 12, 3) if rgb else (12, 12)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{i:03d}.png")


def test_resolve_run_takes_dataset_and_shape_from_the_run(run):
    encoder, meta, data, data_dir = resolve_encoder(run=run)
    assert data == "digits" and data_dir is None
    assert meta["arch"] == "smallconv" and meta["code_dim"] == 16 and meta["image_shape"] == [1, 8, 8]
    assert meta["run"] == str(run) and not encoder.training
    summary = encoder_summary(meta)
    assert summary["objective"] == "nac" and summary["checkpoint"].endswith("last.pt")
    with pytest.raises(CheckpointError, match="arch 'smallconv'.*'resnet18'"):
        resolve_encoder(run=run, arch="resnet18")
    with pytest.raises(ConfigError, match="16-bit"):
        resolve_encoder(run=run, code_dim=32)


def test_resolve_random_baseline_is_seeded_and_checked(tmp_path):
    a, meta, data, _ = resolve_encoder(init="random", arch="smallconv", seed=4)
    b, _, _, _ = resolve_encoder(init="random", arch="smallconv", seed=4)
    assert data == "digits" and meta["objective"] == "random" and meta["code_dim"] == 128
    assert a.projector is not None and a.predictor is not None
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert encoder_summary(meta)["init"] == "random"
    from PIL import Image

    for i in range(4):
        Image.new("L", (8, 8), color=40 * i).save(tmp_path / f"{i}.png")
    _, default_meta, _, _ = resolve_encoder(init="random", data=f"folder:{tmp_path}", image_size=8)
    assert default_meta["arch"] == "resnet18"  # the dataset's default, as in pretraining
    with pytest.raises(ConfigError, match="Unknown dataset"):
        resolve_encoder(init="random", data="mnist")
    with pytest.raises(ConfigError, match="Unknown architecture"):
        resolve_encoder(init="random", arch="resnet7")
    with pytest.raises(ConfigError, match="Give --run or --checkpoint"):
        resolve_encoder()
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_encoder(run=tmp_path / "missing")


def test_linear_fast_protocol_leaves_the_encoder_untouched(run):
    encoder, meta, data, data_dir = resolve_encoder(run=run)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    encoder.train()  # evaluation must switch it (batch norm included) to eval mode itself
    out = evaluate_linear(encoder, data, data_dir, epochs=3, seed=1)
    assert out["protocol"] == "fast" and out["augmentation"] is None
    assert out["feature_dim"] == 256 and out["num_classes"] == 10 and out["epochs"] == 3
    assert out["num_train"] + out["num_test"] == 1797
    assert 0.3 < out["test_accuracy"] <= 1.0 and 0.3 < out["train_accuracy"] <= 1.0
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    assert not encoder.training
    again = evaluate_linear(encoder, data, data_dir, epochs=3, seed=1)
    assert again["test_accuracy"] == out["test_accuracy"]


def test_linear_paper_protocol_crops_without_colour_changes(run):
    encoder, _, data, data_dir = resolve_encoder(run=run)
    out = evaluate_linear(encoder, data, data_dir, protocol="paper", epochs=1)
    assert out["protocol"] == "paper" and out["steps"] == 2
    # digits: the crop scale of pretraining, and no flips (a mirrored digit is another digit)
    assert out["augmentation"] == {"crop_scale": [0.3, 1.0], "crop_ratio": [0.75, 4 / 3], "flip_p": 0.0}
    assert 0.0 <= out["test_accuracy"] <= 1.0
    with pytest.raises(ConfigError, match="fast or paper"):
        evaluate_linear(encoder, data, protocol="augmented")


def test_retrieval_split_rules_and_topk(run):
    encoder, _, data, data_dir = resolve_encoder(run=run)
    out = evaluate_retrieval(encoder, data, data_dir)
    assert out["bits"] == 16 and out["ties"] == "gallery-index" and out["empty_queries"] == "excluded"
    assert out["num_queries"] == 170 and out["gallery_size"] == 1627 and out["topk"] == 1627
    assert out["metric"] == "mAP@all" and out["split"] == "analogue" and out["split_seed"] == 0
    assert 0.0 < out["map"] <= 1.0
    kept = evaluate_retrieval(encoder, data, topk=3)
    zero = evaluate_retrieval(encoder, data, topk=3, count_empty=True)
    assert zero["empty_queries"] == "zero" and zero["metric"] == "mAP@3"
    assert 0.0 <= zero["map"] <= kept["map"] <= 1.0
    other = evaluate_retrieval(encoder, data, seed=5, queries_per_class=5)
    assert other["split_seed"] == 5 and other["num_queries"] == 50 and other["gallery_size"] == 1747
    with pytest.raises(ConfigError, match="--topk must be at least 1"):
        evaluate_retrieval(encoder, data, topk=0)
    with pytest.raises(ConfigError, match="gallery holds only 1627"):
        evaluate_retrieval(encoder, data, topk=1628)


def test_code_statistics_of_a_split(run):
    encoder, _, data, data_dir = resolve_encoder(run=run)
    out = evaluate_codes(encoder, data, data_dir)
    assert out["split"] == "test" and out["num_codes"] == 359 and out["code_length"] == 16
    assert 1 <= out["distinct_codes"] <= 359 and 0 < out["distinct_fraction"] <= 1
    assert 0 <= out["mean_pairwise_hamming"] <= 16
    assert out["mean_pairwise_hamming_fraction"] == pytest.approx(out["mean_pairwise_hamming"] / 16)
    assert 0 <= out["bit_balance"] <= 1 and 0 <= out["mean_abs_bit_bias"] <= 0.5
    assert evaluate_codes(encoder, data, split="train")["num_codes"] == 1438


def test_plain_backbone_state_dict_serves_linear_only(run, tmp_path):
    path = tmp_path / "backbone.pt"
    export_backbone(run / CHECKPOINT, path)
    with pytest.raises(CheckpointError, match="pass --arch"):
        resolve_encoder(checkpoint=path)
    with pytest.raises(CheckpointError, match="resnet18 backbone"):
        resolve_encoder(checkpoint=path, arch="resnet18")
    plain, meta, data, _ = resolve_encoder(checkpoint=path, arch="smallconv")
    assert isinstance(plain, BackboneOnly) and meta["objective"] is None and data == "digits"
    full, _, _, _ = resolve_encoder(run=run)
    a = evaluate_linear(plain, data, epochs=2)
    b = evaluate_linear(full, data, epochs=2)
    assert a["test_accuracy"] == b["test_accuracy"]
    for evaluate in (evaluate_retrieval, evaluate_codes):
        with pytest.raises(CheckpointError, match="projection head"):
            evaluate(plain, data)


def test_datasets_that_cannot_be_evaluated(run, tmp_path):
    encoder, _, _, _ = resolve_encoder(run=run)
    unlabelled = tmp_path / "unlabelled"
    write_pngs(unlabelled, 12)
    name = f"folder:{unlabelled}"
    with pytest.raises(DataError, match="needs class labels"):
        evaluate_linear(encoder, name, epochs=1, image_size=8)
    with pytest.raises(DataError, match="needs class labels"):
        evaluate_retrieval(encoder, name, image_size=8)
    # Codes need no labels.
    assert evaluate_codes(encoder, name, image_size=8)["num_codes"] >= 1
    colour = tmp_path / "colour"
    for c in ("a", "b"):
        write_pngs(colour / c, 10, rgb=True)
    with pytest.raises(ConfigError, match="1-channel images but .* 3-channel"):
        evaluate_linear(encoder, f"folder:{colour}", epochs=1, image_size=8)
