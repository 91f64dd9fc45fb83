"""The paper's other baselines in the pretraining loop: InsDis's memory bank (update, exact
resume), the teacher behind SSDH and DistillHash, and every evaluator on their runs."""

import pytest
import torch
from torch import nn

from nacvae.checkpoint import load_checkpoint
from nacvae.errors import CheckpointError, ConfigError
from nacvae.models.heads import PretrainEncoder
from nacvae.runs import CHECKPOINT, read_config, read_metrics
from nacvae.train.config import resolve_config
from nacvae.train.pretrain import pretrain

TINY = dict(steps=4, warmup_steps=1, batch_size=64, log_every=2, code_dim=16, device="cpu")


def tiny_encoder():
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 24), nn.ReLU())
    return PretrainEncoder(backbone, 24, 6, predictor=False).double()


def test_insdis_bank_moves_the_batch_rows_only_after_the_step():
    from nacvae.methods.insdis import InsDis

    method = InsDis(tiny_encoder(), negatives=5, seed=1)
    images = torch.zeros(10, 3, 2, 2, dtype=torch.uint8)
    method.attach_dataset(images, (0.5,) * 3, (0.25,) * 3)
    method.memory = method.memory.double()
    assert torch.allclose(method.memory.norm(dim=1), torch.ones(10, dtype=torch.float64))
    before = method.memory.clone()
    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.randn(3, 3, 2, 2, generator=g, dtype=torch.float64), torch.randn(3, 3, 2, 2, generator=g, dtype=torch.float64)
    rows = torch.tensor([7, 2, 5])
    method.begin_step(rows)
    loss, a1 = method.loss(x1, x2, torch.Generator().manual_seed(1))
    loss.backward()
    assert torch.equal(method.memory, before)  # the loss saw the old bank
    assert float(method.normaliser) > 0  # Z estimated on the first step
    method.after_step()
    a1, a2 = method.encoder(torch.cat([x1, x2]))[1].detach().split(3)  # weights unchanged: no optimiser step
    f = 0.5 * (nn.functional.normalize(a1, dim=1) + nn.functional.normalize(a2, dim=1))
    for k, i in enumerate(rows.tolist()):
        mixed = 0.5 * before[i] + 0.5 * f[k].detach()
        assert torch.allclose(method.memory[i], mixed / mixed.norm(), atol=1e-12)
    others = [i for i in range(10) if i not in rows.tolist()]
    assert torch.equal(method.memory[others], before[others])


@pytest.mark.parametrize("objective,cls", [("insdis", "InsDis"), ("distillhash", "DistillHash")])
def test_resume_is_bit_identical_bank_and_teacher_included(tmp_path, monkeypatch, objective, cls, teacher_run):
    """InsDis's bank and Z come back from the checkpoint; DistillHash recomputes its
    teacher's features and thresholds; either way the resumed run ends where a whole one does."""
    import importlib

    methods = importlib.import_module(f"nacvae.methods.{objective}")
    options = dict(negatives=256) if objective == "insdis" else dict(teacher=str(teacher_run))
    cfg = resolve_config("digits", objective=objective, checkpoint_every=2, **options, **TINY)
    whole = load_checkpoint(pretrain(cfg, tmp_path / "whole", progress=False) / CHECKPOINT)
    if objective == "insdis":
        assert "memory" in whole["model"] and float(whole["model"]["normaliser"]) > 0

    method_class = getattr(methods, cls)
    real, calls = method_class.after_step, [0]

    def interrupt_at_step_3(self):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        real(self)

    monkeypatch.setattr(method_class, "after_step", interrupt_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, tmp_path / "cut", progress=False)
    monkeypatch.setattr(method_class, "after_step", real)
    assert load_checkpoint(tmp_path / "cut" / CHECKPOINT)["step"] == 2
    pretrain(cfg, tmp_path / "cut", resume=True, progress=False)
    resumed = load_checkpoint(tmp_path / "cut" / CHECKPOINT)
    assert resumed["step"] == whole["step"] == 4
    assert set(resumed["model"]) == set(whole["model"])
    for key, value in whole["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    cfg = resolve_config("digits", objective="simclr", **TINY)
    return pretrain(cfg, tmp_path_factory.mktemp("teacher") / "run", progress=False)


@pytest.mark.parametrize("objective", ["insdis", "deepbit", "ssdh", "distillhash"])
def test_each_baseline_trains_and_every_evaluator_reads_its_run(tmp_path, objective, teacher_run):
    from nacvae.eval.codes_eval import evaluate_codes
    from nacvae.eval.encoders import resolve_encoder
    from nacvae.eval.linear_eval import evaluate_linear
    from nacvae.eval.retrieval_eval import evaluate_retrieval
    from nacvae.transfer import export_backbone

    teacher = str(teacher_run) if objective in ("deepbit", "ssdh", "distillhash") else None
    options = dict(negatives=0) if objective == "insdis" else dict(teacher=teacher) if teacher else {}
    cfg = resolve_config("digits", objective=objective, **options, **TINY)
    run = pretrain(cfg, tmp_path / "run", progress=False)
    assert read_config(run)["status"] == "complete" and read_config(run)["objective"] == objective
    encoder, meta, data, data_dir = resolve_encoder(run=run)
    assert meta["objective"] == objective and meta["code_dim"] == 16
    linear = evaluate_linear(encoder, data, data_dir, epochs=2, device="cpu")
    retrieval = evaluate_retrieval(encoder, data, data_dir, device="cpu")
    codes = evaluate_codes(encoder, data, data_dir, device="cpu")
    assert 0 <= linear["test_accuracy"] <= 1 and 0 <= retrieval["map"] <= 1 and codes["distinct_codes"] >= 1
    sd = export_backbone(run / CHECKPOINT, tmp_path / "backbone.pt")
    assert "features.0.weight" in sd


def test_teacher_from_a_run_an_exported_state_dict_or_nothing_usable(tmp_path, teacher_run):
    from nacvae.methods.teacher import load_teacher, teacher_features
    from nacvae.transfer import export_backbone

    shape = (1, 8, 8)
    from_run, info = load_teacher(teacher_run, shape)
    assert info["teacher_arch"] == "smallconv" and info["teacher_objective"] == "simclr"
    export_backbone(teacher_run / CHECKPOINT, tmp_path / "plain.pt")
    from_file, info = load_teacher(tmp_path / "plain.pt", shape)
    assert info["teacher_arch"] == "smallconv"
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(teacher_features(from_run, images, (0.5,), (0.2,)), teacher_features(from_file, images, (0.5,), (0.2,)))

    with pytest.raises(CheckpointError, match="shape"):
        load_teacher(teacher_run, (3, 32, 32))  # trained on 1-channel 8x8 images
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="supported backbone"):
        load_teacher(tmp_path / "foreign.pt", shape)
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_teacher(tmp_path / "garbage.pt", shape)
    with pytest.raises(ConfigError, match="does not exist"):
        load_teacher(tmp_path / "missing.pt", shape)


@pytest.mark.slow
def test_teacher_from_a_torchvision_imagenet_state_dict(tmp_path):
    import torchvision

    from nacvae.methods.teacher import load_teacher, teacher_features

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "imagenet.pt")
    imagenet, info = load_teacher(tmp_path / "imagenet.pt", (1, 8, 8))  # grey digits into an ImageNet ResNet-18
    assert info["teacher_arch"].startswith("torchvision resnet18")
    images = torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8)
    assert teacher_features(imagenet, images, (0.5,), (0.2,)).shape == (5, 512)
    torch.save(torchvision.models.vgg16().state_dict(), tmp_path / "vgg16.pt")
    _, info = load_teacher(tmp_path / "vgg16.pt", (3, 32, 32))  # fc7 features, as SSDH used
    assert info["teacher_arch"].startswith("torchvision vgg16")
    with pytest.raises(CheckpointError, match="supported backbone"):
        load_teacher(tmp_path / "vgg16.pt", (1, 8, 8))  # five poolings: too many for 8x8 images


def test_insdis_uses_the_exact_softmax_on_small_banks_and_nce_on_large_ones(monkeypatch):
    from nacvae.methods.insdis import InsDis

    images = torch.zeros(10, 3, 2, 2, dtype=torch.uint8)
    small = InsDis(tiny_encoder())
    small.attach_dataset(images, (0.5,) * 3, (0.25,) * 3)
    assert small.exact
    monkeypatch.setattr(InsDis, "exact_up_to", 9)
    large = InsDis(tiny_encoder())
    large.attach_dataset(images, (0.5,) * 3, (0.25,) * 3)
    assert not large.exact and large.noise_draws == 4096
    forced = InsDis(tiny_encoder(), negatives=3)
    forced.attach_dataset(images, (0.5,) * 3, (0.25,) * 3)
    assert forced.noise_draws == 3


def test_deepbit_with_a_teacher_trains_only_its_hash_layer(tmp_path, teacher_run):
    """The authors' setting: the teacher's backbone, frozen (weights and batch-norm
    statistics), under a hash layer that learns."""
    from nacvae.transfer import load_encoder

    # The online monitor runs the encoder in eval mode every 2 steps; it must hand the backbone
    # back in eval mode, or training would move its batch-norm statistics.
    cfg = resolve_config("digits", objective="deepbit", teacher=str(teacher_run), monitor_every=2, **TINY)
    run = pretrain(cfg, tmp_path / "run", progress=False)
    assert [r["step"] for r in read_metrics(run) if r["event"] == "monitor"] == [2, 4]
    teacher, _ = load_encoder(teacher_run / CHECKPOINT)
    student, _ = load_encoder(run / CHECKPOINT)
    want = teacher.backbone.state_dict()
    for key, value in student.backbone.state_dict().items():
        assert torch.equal(value, want[key]), key
    fresh = resolve_config("digits", objective="deepbit", recipe="shared", **TINY)  # no teacher: random weights
    alone, _ = load_encoder(pretrain(fresh, tmp_path / "alone", progress=False) / CHECKPOINT)
    assert any(not torch.equal(v, want[k]) for k, v in alone.backbone.state_dict().items())
    from nacvae.train.methods import build_method

    initial = build_method(cfg, (1, 8, 8)).encoder.state_dict()
    heads = {k: v for k, v in student.state_dict().items() if not k.startswith("backbone.")}
    assert heads and any(not torch.equal(v, initial[k]) for k, v in heads.items())  # the hash layer learned
    # A teacher of another architecture cannot be the backbone.
    other = resolve_config("digits", objective="deepbit", teacher=str(teacher_run), arch="resnet18", **TINY)
    with pytest.raises(ConfigError, match="backbone of the run's --arch"):
        pretrain(other, tmp_path / "other", progress=False)
