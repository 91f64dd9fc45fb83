"""Each baseline's own recipe: its values against the authors' sources, the pieces that make
it (DeepBit's stages and rotation weights, its training-mean binarisation, SSDH's N x N loss
and bin mode, one view per step, the teacher start, the step schedule), equal-epoch budgets
in a study, the shared recipe as the ablation, and a no-collapse check on digits."""

import math

import pytest
import torch

from nacvae import registry
from nacvae.checkpoint import load_checkpoint
from nacvae.errors import ConfigError
from nacvae.runs import CHECKPOINT, read_config, read_metrics
from nacvae.train.config import PretrainConfig, resolve_config
from nacvae.train.pretrain import pretrain

TINY = dict(steps=4, log_every=1, code_dim=16, device="cpu")

# (method, what its SPEC says, the source): docs/method.md, "The paper's other baselines".
SOURCES = {
    "insdis": (dict(head="linear", head_std=None, start="random", views=1, binarisation="sign",
                    recipe=dict(optimizer="sgd", lr=0.03, weight_decay=5e-4, batch_size=128, warmup_steps=0,
                                schedule="step")),
               "lemniscate.pytorch cifar.py: SGD momentum 0.9, wd 5e-4, batch 128, the lr step call commented out; "
               "README: lr 0.03"),
    "deepbit": (dict(head="linear", head_std=0.01, start="frozen-teacher", views=1, binarisation="sigmoid-mean",
                     recipe=dict(optimizer="sgd", lr=1e-3, weight_decay=5e-4, batch_size=32, warmup_steps=0,
                                 schedule="step", lr_drops=(25_000 / 55_000,))),
                "cvpr16-deepbit solver_stage1/2 and vgg_train*_stage1: fc8 N(0, 0.01^2), lr 1e-3 x0.1 at 25k, "
                "stage 2 lr 1e-4 for 5k"),
    "ssdh": (dict(head="linear", head_std=None, start="teacher", views=1, binarisation="sign",
                  recipe=dict(optimizer="sgd", lr=1e-3, weight_decay=1e-5, batch_size=24, warmup_steps=0,
                              schedule="step")),
             "SSDH_PyTorch: the pretrained net fine-tuned, Linear -> tanh, SGD 1e-3, momentum 0.9, wd 1e-5, batch 24"),
    "distillhash": (dict(head="linear", head_std=None, start="teacher", views=1, binarisation="sign",
                         recipe=dict(optimizer="sgd", lr=1e-3, weight_decay=1e-5, batch_size=24, warmup_steps=0,
                                     schedule="step")),
                    "SSDH's recipe (the same authors'); DistillHash's own settings could not be read"),
}
OPTIONS = {
    "deepbit": dict(rotation_weight=0.001, rotation_fraction=5_000 / 55_000),
    "ssdh": dict(alpha=2.0, beta=2.0),
    "insdis": dict(temperature=0.07, bank_momentum=0.5),
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_each_recipe_is_its_sources(name):
    want, _source = SOURCES[name]
    spec = registry.spec(name)
    for field, value in want.items():
        assert getattr(spec, field) == value, field
    defaults = {o.name: o.default for o in spec.options}
    for option, value in OPTIONS.get(name, {}).items():
        assert defaults[option] == value, option


def test_the_main_methods_keep_nac_s_recipe():
    for name in registry.group("main"):
        spec = registry.spec(name)
        assert (spec.head, spec.start, spec.views, spec.binarisation, spec.recipe) == ("mlp", "random", 2, "sign", {})


def test_deepbit_rotation_weights_are_the_release_s_gaussian():
    from nacvae.methods.deepbit import ANGLES, rotation_weights

    assert ANGLES == (-10.0, -5.0, 0.0, 5.0, 10.0)
    want = (math.exp(-2.0), math.exp(-0.5), 1.0, math.exp(-0.5), math.exp(-2.0))
    assert rotation_weights() == pytest.approx(want, rel=1e-15)


def _tiny_encoder(code_dim=3, head="linear", std=None):
    from torch import nn

    from nacvae.models.heads import PretrainEncoder

    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU())
    return PretrainEncoder(backbone, 8, code_dim, predictor=False, head=head, head_std=std).double()


def test_deepbit_stages_add_the_rotation_term_only_in_the_last_fraction():
    from nacvae.methods.deepbit import DeepBit, rotation_weights
    from nacvae.objectives import rotate_images

    encoder = _tiny_encoder()
    method = DeepBit(encoder, (-10.0, -5.0, 0.0, 5.0, 10.0), rotation_weights(), (1.0, 1.0, 0.5),
                     frozen_backbone=True, rotation_fraction=0.25)
    x = torch.randn(5, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    g = torch.Generator()
    stages = []
    for step in range(8):
        method.at_step(step, 8)
        stages.append(method.rotating)
    assert stages == [False] * 6 + [True] * 2  # round(0.25 * 8) = 2 steps at the end

    def reference(rotating):
        p = torch.sigmoid(encoder(x)[1])
        b = (p > 0.5).double()
        loss = ((b - p) ** 2).sum(1).mean() + ((p.mean(0) - 0.5) ** 2).sum()
        if rotating:
            for angle, c in zip((-10.0, -5.0, 5.0, 10.0), (math.exp(-2), math.exp(-0.5), math.exp(-0.5), math.exp(-2))):
                pr = torch.sigmoid(encoder(rotate_images(x, angle))[1])
                loss = loss + 0.5 * c * ((pr - p) ** 2).sum(1).mean()
        return loss

    method.at_step(0, 8)
    assert torch.allclose(method.loss(x, None, g)[0], reference(False), rtol=1e-12)
    method.at_step(7, 8)
    assert torch.allclose(method.loss(x, None, g)[0], reference(True), rtol=1e-12)
    assert not any(p.requires_grad for p in encoder.backbone.parameters())  # the backbone is frozen


def test_the_hash_layer_starts_at_the_release_s_gaussian():
    encoder = _tiny_encoder(code_dim=2000, std=0.01)
    w = encoder.projector.weight.detach()
    assert torch.all(encoder.projector.bias == 0)
    assert float(w.mean()) == pytest.approx(0.0, abs=3e-4) and float(w.std()) == pytest.approx(0.01, rel=0.02)


def test_ssdh_loss_over_the_whole_batch_matches_a_loop():
    from nacvae.objectives import ssdh_loss

    g = torch.Generator().manual_seed(0)
    h = torch.tanh(torch.randn(5, 4, generator=g, dtype=torch.float64)).requires_grad_(True)
    s = torch.tensor([[1, 0, -1, 1, 0], [0, 1, 1, 0, -1], [-1, 1, 1, 0, 0], [1, 0, 0, 1, -1], [0, -1, 0, -1, 1]],
                     dtype=torch.float64)
    loss = ssdh_loss(h, s, diagonal=True)
    ref = 0.0
    for i in range(5):
        for j in range(5):
            inner = sum(h[i, k] * h[j, k] for k in range(4)) / 4
            ref = ref + abs(float(s[i, j])) * (inner - s[i, j]) ** 2
    ref = ref / 25
    assert torch.allclose(loss, ref, rtol=1e-12)
    (g1,) = torch.autograd.grad(loss, h)
    (g2,) = torch.autograd.grad(ref, h)
    assert torch.allclose(g1, g2, rtol=1e-10)


def test_ssdh_mode_is_the_fullest_hundredth_on_zero_to_one():
    from nacvae.objectives import fit_half_gaussians

    g = torch.Generator().manual_seed(3)
    d = torch.cat([torch.rand(300, generator=g, dtype=torch.float64) * 0.6 + 0.2,
                   torch.full((30,), 0.4537, dtype=torch.float64), torch.tensor([1.3, -0.1], dtype=torch.float64)])
    counts = [0] * 100
    for v in d.tolist():
        if 0.0 <= v <= 1.0:
            counts[min(int(v / 0.01), 99)] += 1
    best = max(range(100), key=lambda b: (counts[b], -b))
    mode = (best + 0.5) * 0.01
    left = [v for v in d.tolist() if v <= mode]
    right = [v for v in d.tolist() if v > mode]
    fit = fit_half_gaussians(d, 100, (0.0, 1.0))
    assert fit.mode == pytest.approx(mode, abs=1e-12) and best == 45
    assert fit.sigma_left == pytest.approx(math.sqrt(sum((v - mode) ** 2 for v in left) / len(left)), rel=1e-12)
    assert fit.sigma_right == pytest.approx(math.sqrt(sum((v - mode) ** 2 for v in right) / len(right)), rel=1e-12)


def test_step_schedule_divides_by_ten_at_each_drop():
    from nacvae.train.optim import warmup_steps_down

    assert [warmup_steps_down(s, 10, 0, (0.3, 0.75)) for s in range(10)] == pytest.approx(
        [1, 1, 1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01])
    assert [warmup_steps_down(s, 10, 2, ()) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    cfg = resolve_config("digits", objective="simclr", steps=30, warmup_steps=5, log_every=10, code_dim=16,
                         device="cpu")
    return pretrain(cfg, tmp_path_factory.mktemp("teacher") / "run", progress=False)


def test_deepbit_records_the_training_mean_and_evaluation_reads_bits_with_it(tmp_path, teacher_run, one_thread):
    from nacvae.data.augment import normalize
    from nacvae.data.catalog import dataset_stats, open_dataset
    from nacvae.eval.codes_eval import evaluate_codes
    from nacvae.transfer import load_encoder

    cfg = resolve_config("digits", objective="deepbit", teacher=str(teacher_run), **TINY)
    run = pretrain(cfg, tmp_path / "run", progress=False)
    assert read_config(run)["binarisation"] == "sigmoid-mean"
    meta = load_checkpoint(run / CHECKPOINT)["meta"]
    assert meta["binarisation"]["rule"] == "sigmoid-mean"
    encoder, _ = load_encoder(run / CHECKPOINT)
    train = open_dataset("digits", "train")
    mean, std = dataset_stats("digits", train)
    encoder = encoder.double().eval()
    with torch.no_grad():
        p = torch.sigmoid(encoder(normalize(train.images, mean, std).double())[1])
    assert torch.allclose(torch.tensor(meta["binarisation"]["threshold"], dtype=torch.float64), p.mean(0),
                          rtol=1e-5, atol=1e-7)
    # Bits are sigmoid(a) above that mean, not sgn(a).
    test = open_dataset("digits", "test")
    x = normalize(test.images, mean, std)
    encoder = encoder.float()
    with torch.no_grad():
        probs = torch.sigmoid(encoder(x)[1])
    assert torch.equal(encoder.codes(x), probs > torch.tensor(meta["binarisation"]["threshold"]).float())
    stats = evaluate_codes(encoder, "digits", None, device="cpu")
    assert stats["codes"] == registry.BINARISATIONS["sigmoid-mean"]
    # Learning rate: 1e-3, then 1e-4 from round(25/55 * 4) = 2 steps on.
    lrs = [r["lr"] for r in read_metrics(run) if r["event"] == "train"]
    assert lrs == pytest.approx([1e-3, 1e-4, 1e-4, 1e-4])


@pytest.mark.parametrize("objective", ["ssdh", "distillhash"])
def test_ssdh_and_distillhash_start_from_their_teacher_and_see_one_view(objective, teacher_run, monkeypatch):
    from nacvae.methods.base import Method
    from nacvae.train.methods import build_method
    from nacvae.transfer import load_encoder

    cfg = resolve_config("digits", objective=objective, teacher=str(teacher_run), **TINY)
    assert (cfg.optimizer, cfg.lr, cfg.batch_size) == ("sgd", 1e-3, 24)
    method = build_method(cfg, (1, 8, 8))
    teacher, _ = load_encoder(teacher_run / CHECKPOINT)
    for key, value in teacher.backbone.state_dict().items():
        assert torch.equal(method.encoder.backbone.state_dict()[key], value), key
    assert isinstance(method.encoder.projector, torch.nn.Linear)
    shared = build_method(resolve_config("digits", objective=objective, teacher=str(teacher_run), recipe="shared",
                                         **TINY), (1, 8, 8))
    assert any(not torch.equal(v, teacher.backbone.state_dict()[k])
               for k, v in shared.encoder.backbone.state_dict().items())

    seen = []
    real = Method._encode_pair
    monkeypatch.setattr(Method, "_encode_pair", lambda self, x1, x2, enc: seen.append(x2) or real(self, x1, x2, enc))
    pretrain(cfg, teacher_run.parent / f"{objective}-one-view", progress=False)
    assert seen and all(x2 is None for x2 in seen)


def test_insdis_with_one_view_updates_the_bank_with_that_view():
    from torch import nn

    from nacvae.methods.insdis import InsDis

    method = InsDis(_tiny_encoder(code_dim=6), negatives=0, seed=1)
    method.attach_dataset(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), (0.5,), (0.25,))
    method.memory = method.memory.double()
    before = method.memory.clone()
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    rows = torch.tensor([4, 0, 9])
    method.begin_step(rows)
    method.loss(x, None, torch.Generator())
    method.after_step()
    f = nn.functional.normalize(method.encoder(x)[1].detach(), dim=1)
    for k, i in enumerate(rows.tolist()):
        mixed = 0.5 * before[i] + 0.5 * f[k]
        assert torch.allclose(method.memory[i], mixed / mixed.norm(), atol=1e-12)


def test_an_own_recipe_that_starts_from_a_teacher_needs_one():
    for objective in ("deepbit", "ssdh", "distillhash"):
        with pytest.raises(ConfigError, match="needs --teacher"):
            resolve_config("digits", objective=objective, **TINY)
    assert resolve_config("digits", objective="deepbit", recipe="shared", **TINY).options["teacher"] is None
    with pytest.raises(ConfigError, match="Unknown --recipe"):
        resolve_config("digits", objective="nac", recipe="mine")


def test_the_shared_recipe_is_the_preset_for_every_method():
    own = resolve_config("digits", objective="insdis")
    shared = resolve_config("digits", objective="insdis", recipe="shared")
    assert (own.optimizer, own.lr, own.schedule, own.warmup_steps) == ("sgd", 0.03, "step", 0)
    assert (shared.optimizer, shared.lr, shared.schedule, shared.warmup_steps) == ("lars", 3.0, "cosine", 500)
    # A run saved before recipes existed trained with the shared one, and resumes with it.
    old = PretrainConfig.from_dict({"data": "digits", "objective": "ssdh", "options": {"teacher": "t"}})
    assert old.recipe == "shared"


def test_a_study_gives_every_method_the_same_epochs():
    from nacvae.studies.presets import method_budget

    preset = dict(steps=1400, warmup_steps=500, batch_size=128, optimizer="lars", lr=3.0, arch="smallconv")
    ssdh = method_budget("ssdh", preset)
    assert ssdh == dict(steps=round(1400 * 128 / 24), arch="smallconv")  # the recipe's optimiser, lr, warm-up, batch
    assert method_budget("deepbit", preset)["steps"] == 1400 * 128 // 32
    assert method_budget("simclr", preset) == preset
    assert method_budget("ssdh", preset, recipe="shared") == preset


def _distinct_test_codes(run):
    from nacvae.eval.codes_eval import evaluate_codes
    from nacvae.eval.encoders import resolve_encoder

    encoder, _, data, data_dir = resolve_encoder(run=run)
    return evaluate_codes(encoder, data, data_dir, device="cpu")["distinct_codes"]


@pytest.mark.parametrize("objective", ["deepbit", "ssdh"])
def test_short_runs_of_the_own_recipes_do_not_collapse(objective, teacher_run, tmp_path, one_thread):
    """The shared recipe drove DeepBit to one code and SSDH to a few dozen; their own keep
    the codes apart (at least 100 distinct among the 359 digits test images)."""
    distinct = {}
    for recipe in ("own", "shared"):
        cfg = resolve_config("digits", objective=objective, teacher=str(teacher_run), steps=150, log_every=50,
                             code_dim=64, device="cpu", monitor_every=0, recipe=recipe)
        distinct[recipe] = _distinct_test_codes(pretrain(cfg, tmp_path / recipe, progress=False))
    assert distinct["own"] >= 100 and distinct["shared"] <= 10, distinct
