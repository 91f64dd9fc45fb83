import pytest
import torch

from nacvae.errors import ConfigError
from nacvae import precision
from nacvae.precision import has_native_bf16, resolve_amp, use_bf16


@pytest.mark.parametrize("device_type, requested, native, expected", [
    ("cuda", None, True, True),     # Ampere and newer: bf16 by default
    ("cuda", None, False, False),   # pre-Ampere: emulated bf16 is slower, so float32
    ("cuda", True, False, True),    # --amp asks for it anyway
    ("cuda", False, True, False),   # --no-amp
    ("cpu", None, True, False),     # a CPU with bf16 but not timed: float32
    ("cpu", True, False, True),     # --amp on any CPU
    ("mps", None, True, False),
])
def test_bf16_decision(device_type, requested, native, expected):
    assert use_bf16(device_type, requested, native) is expected


@pytest.mark.parametrize("native, gain, expected", [
    (True, 1.9, True),     # native bf16 at twice the speed
    (True, precision.MIN_GAIN, True),
    (True, 1.1, False),    # within the timing's noise
    (True, 0.65, False),   # bf16 losing beside busy processes
    (False, 3.0, False),   # emulated bf16 is never the default
])
def test_cpu_default_needs_native_bf16_and_a_measured_gain(native, gain, expected):
    assert use_bf16("cpu", None, native, gain) is expected
    assert use_bf16("cpu", False, native, gain) is False


@pytest.fixture
def auto(monkeypatch):
    monkeypatch.delenv(precision.ENV, raising=False)


@pytest.mark.parametrize("value, expected", [("on", True), ("BF16", True), ("1", True), ("off", False),
                                             ("float32", False), ("auto", None), ("", None)])
def test_environment_decides_when_no_option_does(value, expected):
    assert precision.requested_amp(None, {precision.ENV: value})[0] is expected
    assert precision.requested_amp(False, {precision.ENV: "on"}) == (False, "--no-amp")


def test_environment_value_is_checked():
    with pytest.raises(ConfigError, match=r"\$NACVAE_AMP must be on, off or auto, not 'maybe'"):
        precision.requested_amp(None, {precision.ENV: "maybe"})


def test_timing_is_interleaved_and_takes_the_median():
    # Each call of step(amp) advances a fake clock by its next duration; the first of each is untimed.
    durations = {False: iter([50.0, 5.0, 1.0, 2.0]), True: iter([90.0, 9.0, 3.0, 4.0])}
    calls, now = [], [0.0]

    def step(amp):
        calls.append(amp)
        now[0] += next(durations[amp])

    fp32, bf16 = precision.time_both(step, repeats=3, clock=lambda: now[0])
    assert calls == [False, True] + [False, True] * 3
    assert (fp32, bf16) == (2.0, 4.0)


def test_cpu_default_times_the_probe(monkeypatch, auto):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "time_both", lambda probe: (2.0, 1.0))
    decision = resolve_amp(cpu, None, probe=lambda: lambda amp: None)
    assert decision.amp is True and "2.00x" in decision.why
    monkeypatch.setattr(precision, "time_both", lambda probe: (1.0, 1.0))
    assert resolve_amp(cpu, None, probe=lambda: lambda amp: None).amp is False
    assert resolve_amp(cpu, None).amp is False  # nothing to time
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(precision, "time_both", lambda probe: pytest.fail("timed a CPU without native bf16"))
    assert resolve_amp(cpu, None, probe=lambda: lambda amp: None) == (False, "the CPU has no native bf16")


class _FakeDevice:
    def __init__(self, device):
        self.device = device

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("major, expected", [(7, False), (8, True), (9, True)])
def test_default_follows_native_bf16_without_emulation(monkeypatch, major, expected):
    calls = []

    def is_bf16_supported(including_emulation=True):
        calls.append(including_emulation)
        return major >= 8 or including_emulation  # a Volta GPU "supports" bf16 only by emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "device", _FakeDevice)
    cuda = torch.device("cuda", 0)
    assert has_native_bf16(cuda) is expected
    assert resolve_amp(cuda, None, environ={}).amp is expected
    assert resolve_amp(cuda, True).amp is True and resolve_amp(cuda, False).amp is False
    assert calls and all(flag is False for flag in calls)


def test_cpu_never_asks_cuda(monkeypatch, auto):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: pytest.fail("queried CUDA for a CPU"))
    resolve_amp(torch.device("cpu"), None)
    assert resolve_amp(torch.device("cpu"), True).amp is True


@pytest.mark.parametrize("major, expected", [(7, False), (8, True)])
def test_older_pytorch_falls_back_to_the_compute_capability(monkeypatch, major, expected):
    def is_bf16_supported():  # no including_emulation argument before PyTorch 2.3
        return True

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, 0))
    monkeypatch.setattr(torch.cuda, "device", _FakeDevice)
    assert has_native_bf16(torch.device("cuda", 0)) is expected


def test_pretraining_records_the_timed_choice_and_resume_keeps_it(tmp_path, monkeypatch, auto):
    from nacvae.runs import read_config
    from nacvae.train.config import resolve_config
    from nacvae.train.pretrain import pretrain

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    timed = []

    def time_both(probe):
        probe(False)
        probe(True)  # the probe runs a real step of the encoder in both precisions
        timed.append(True)
        return 2.0, 1.0

    monkeypatch.setattr(precision, "time_both", time_both)
    cfg = resolve_config("digits", epochs=1, batch_size=256, code_dim=16, log_every=1)
    run = pretrain(cfg, tmp_path / "run", progress=False)
    config = read_config(run)
    assert config["amp"] is True and "measured 2.00x" in config["amp_decided_by"] and timed == [True]
    # A resumed run keeps its precision without timing again.
    monkeypatch.setattr(precision, "time_both", lambda probe: pytest.fail("timed again on resume"))
    longer = resolve_config("digits", epochs=2, batch_size=256, code_dim=16, log_every=1)
    assert read_config(pretrain(longer, run, resume=True, progress=False))["amp"] is True
    monkeypatch.setenv(precision.ENV, "off")
    assert read_config(pretrain(cfg, tmp_path / "fp32", progress=False))["amp"] is False


def test_probe_leaves_the_encoder_as_it_was():
    from nacvae.train.methods import encoder_step_probe
    from nacvae.models.backbones import build_backbone
    from nacvae.models.heads import PretrainEncoder

    backbone, dim = build_backbone("smallconv", 1, 8)
    encoder = PretrainEncoder(backbone, dim, 16)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    rng = torch.get_rng_state()
    step = encoder_step_probe(encoder, (1, 8, 8), 16, torch.device("cpu"))
    step(False)
    step(True)
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    assert all(p.grad is None for p in encoder.parameters())
    assert torch.equal(rng, torch.get_rng_state())


@pytest.mark.parametrize("batch, shape, expected", [
    (256, (1, 8, 8), 256),       # small images: the real batch
    (2048, (1, 8, 8), 1024),
    (256, (3, 32, 32), 64),
    (256, (1, 28, 28), 83),
    (512, (3, 224, 224), 8),     # at least 8
    (4, (3, 224, 224), 4),       # never more than the batch
])
def test_probe_batch(batch, shape, expected):
    from nacvae.precision import probe_images

    assert probe_images(batch, shape) == expected


def test_vae_in_bf16_keeps_its_densities_in_float32():
    from nacvae.models.backbones import build_backbone
    from nacvae.models.vae import VAE

    torch.manual_seed(0)
    backbone, dim = build_backbone("smallconv", 1, 8)
    vae = VAE(backbone, dim, (1, 8, 8), latent_dim=4, mean=(0.3,), std=(0.3,))
    x = torch.randint(0, 256, (32, 1, 8, 8)).float()
    z = torch.randn(32, 4)
    with torch.no_grad():
        mu32, sigma32 = vae.encode(x)
        loc32, log_scale32 = vae.decoder(z)
        vae.set_precision(torch.bfloat16)
        mu16, sigma16 = vae.encode(x)
        loc16, log_scale16 = vae.decoder(z)
        vae.set_precision(None)
        again = vae.encode(x)
    assert all(t.dtype == torch.float32 for t in (mu16, sigma16, loc16, log_scale16))
    assert torch.equal(again[0], mu32) and torch.equal(again[1], sigma32)  # float32 again, exactly
    # bf16 hidden layers: 8-bit mantissas, errors of a few parts in a thousand of the outputs' scale
    for a, b in ((mu16, mu32), (sigma16, sigma32), (loc16, loc32), (log_scale16, log_scale32)):
        assert not torch.equal(a, b)
        assert (a - b).abs().max() <= 0.02 * b.abs().max() + 1e-3


def test_vae_training_records_the_timed_choice(tmp_path, monkeypatch, auto):
    from nacvae.runs import read_config
    from nacvae.train.vae import resolve_vae_config, train_vae

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)

    def time_both(probe):
        probe(False)
        probe(True)
        return 3.0, 1.0

    monkeypatch.setattr(precision, "time_both", time_both)
    cfg = resolve_vae_config("digits", init="random", epochs=1, batch_size=256, latent_dim=4)
    run = train_vae(cfg, tmp_path / "vae", progress=False)
    config = read_config(run)
    assert config["amp"] is True and "measured 3.00x" in config["amp_decided_by"]
    assert config["status"] == "complete"
    monkeypatch.setenv(precision.ENV, "off")
    assert read_config(train_vae(cfg, tmp_path / "fp32", progress=False))["amp"] is False


def test_evaluators_features_in_bf16_leave_the_encoder_alone(monkeypatch, auto):
    from nacvae.eval.features import in_precision
    from nacvae.models.backbones import build_backbone
    from nacvae.models.heads import PretrainEncoder

    torch.manual_seed(0)
    backbone, dim = build_backbone("smallconv", 1, 8)
    encoder = PretrainEncoder(backbone, dim, 16).eval()
    images = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8)
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(precision, "time_both", lambda probe: (probe(False), probe(True), (2.0, 1.0))[-1])
    view, decision = in_precision(encoder, cpu, images, (0.3,), (0.3,))
    assert decision.amp is True and view is not encoder
    assert type(encoder.backbone).__name__ != "_Autocast" and type(view.backbone).__name__ == "_Autocast"
    assert set(view.state_dict()) != set(encoder.state_dict())  # the view wraps; the encoder keeps its keys
    assert all(a is b for a, b in zip(view.parameters(), encoder.parameters()))  # shared weights
    x = (images.float() / 255 - 0.3) / 0.3
    with torch.no_grad():
        h32, h16 = encoder.backbone(x), view.backbone(x)
        codes32, codes16 = encoder.codes(x), view.codes(x)
    assert h16.dtype == torch.float32 and not torch.equal(h16, h32)
    assert (h16 - h32).abs().max() <= 0.02 * h32.abs().max()
    assert (codes16 == codes32).float().mean() > 0.97  # only bits with a near 0 may flip
    monkeypatch.setattr(precision, "time_both", lambda probe: (1.0, 1.0))
    same, decision = in_precision(encoder, cpu, images, (0.3,), (0.3,))
    assert same is encoder and decision.amp is False
    same, decision = in_precision(encoder, cpu, None, (0.3,), (0.3,))  # streamed data: not timed
    assert same is encoder and decision.amp is False
    assert in_precision(encoder, cpu, None, (0.3,), (0.3,), amp=True)[1].amp is True


def test_linear_evaluation_reports_its_precision(monkeypatch):
    from nacvae.eval.encoders import resolve_encoder
    from nacvae.eval.linear_eval import evaluate_linear

    encoder, meta, data, ddir = resolve_encoder(init="random", arch="smallconv", data="digits", seed=0)
    fp32 = evaluate_linear(encoder, data, ddir, epochs=2, amp=False)
    bf16 = evaluate_linear(encoder, data, ddir, epochs=2, amp=True)
    assert fp32["amp"] is False and bf16["amp"] is True
    assert abs(fp32["test_accuracy"] - bf16["test_accuracy"]) < 0.05
