"""``nacvae reproduce`` end to end at a toy scale: every stage runs and the outputs exist."""

import json

import pytest

from nacvae.errors import ConfigError
from nacvae.studies.encoders import run_study
from nacvae.studies.presets import ALL_INITS, BASELINES, INITS, PRESETS, RETRIEVAL_NAC, Preset, resolve_methods
from nacvae.studies.report import aggregate, markdown_table

TOY = Preset(
    data="digits", arch="smallconv", description="toy",
    pretrain=dict(steps=4, warmup_steps=2, batch_size=512, code_dim=16, queue_size=64),
    retrieval_flip_prob=0.3,
    linear=dict(protocol="fast", epochs=2, batch_size=512),
    vae=dict(epochs=1, batch_size=512, latent_dim=4, test_every=1, image_every=0),
    loglik_samples=4, loglik_images=16,
)


def test_toy_study_writes_tables_and_figures(tmp_path):
    results = run_study(TOY, tmp_path / "study", seeds=1, device="cpu", progress=False, log=lambda m: None)
    default_set = [i for i in ALL_INITS if i not in BASELINES]  # the new baselines only on request
    assert set(results["table"]) == set(default_set)
    for init in default_set:
        row = results["table"][init]
        assert 0.0 <= row["linear_test_accuracy"]["mean"] <= 1.0
        assert 0.0 <= row["retrieval_map"]["mean"] <= 1.0
        assert 0.0 <= row["retrieval_map_paper_ranking"]["mean"] <= 1.0
        assert (init == RETRIEVAL_NAC) == ("vae_loglik_nats" not in row)  # the retrieval encoder gets no VAE
    assert all(results["table"][i]["vae_loglik_nats"]["mean"] < 0 for i in INITS)
    out = tmp_path / "study"
    assert json.loads((out / "results.json").read_text())["seeds"] == 1
    md = (out / "results.md").read_text()
    assert "| nac (p = 0.1) |" in md and "| nac (p = 0.3, for retrieval) |" in md and "4 steps" in md
    nac_cfg = json.loads((out / "seed-0" / "pretrain-nac-retrieval" / "config.json").read_text())["pretrain"]
    assert nac_cfg["options"]["flip_prob"] == 0.3 and nac_cfg["steps"] == 4
    assert (out / "figures" / "summary.png").stat().st_size > 0
    assert (out / "figures" / "vae_training.png").stat().st_size > 0
    assert (out / "seed-0" / "pretrain-moco" / "config.json").is_file()


def test_a_study_continues_seed_by_seed(tmp_path):
    out = tmp_path / "study"
    quiet = dict(device="cpu", progress=False, log=lambda m: None)
    first = run_study(TOY, out, seeds=1, **quiet)
    with pytest.raises(ConfigError, match="already used"):
        run_study(TOY, out, seeds=2, **quiet)
    logged = []
    second = run_study(TOY, out, seeds=2, resume=True, device="cpu", progress=False, log=logged.append)
    assert first["rows"] == [r for r in second["rows"] if r["seed"] == 0]  # seed 0 kept as it was
    assert not any("[seed 0]" in m for m in logged)
    assert second["seeds"] == 2 and json.loads((out / "seed-1" / "rows.json").read_text())[0]["seed"] == 1

    # Stopped during seed 1's MoCo evaluation, with its VAE half-written: only that is redone.
    rows = json.loads((out / "seed-1" / "rows.json").read_text())
    keep = [r for r in rows if r["init"] not in ("moco", RETRIEVAL_NAC)]
    (out / "seed-1" / "rows.json").write_text(json.dumps(keep))
    vae_config = out / "seed-1" / "vae-moco" / "config.json"
    vae_config.write_text(vae_config.read_text().replace('"status": "complete"', '"status": "running"'))
    logged.clear()
    third = run_study(TOY, out, seeds=2, resume=True, device="cpu", progress=False, log=logged.append)
    assert [m for m in logged if "pretraining" in m] == []
    assert any("continuing the interrupted run" in m and "vae-moco" in m for m in logged)
    redone = {r["init"]: r for r in third["rows"] if r["seed"] == 1}
    before = {r["init"]: r for r in rows}
    assert redone["moco"]["retrieval_map"] == before["moco"]["retrieval_map"]
    assert len(third["rows"]) == len(second["rows"])
    assert set(third["seconds_per_seed"]) == {"0", "1"} and third["seconds"] > 0

    # Another process may run one more seed of the same study; the tables cover all three.
    fourth = run_study(TOY, out, seeds=2, only_seeds=[2], resume=True, **quiet)
    assert fourth["seeds"] == 3 and fourth["table"]["nac"]["retrieval_map"]["n"] == 3
    with pytest.raises(ConfigError, match="other settings"):
        run_study(Preset(**{**TOY.__dict__, "retrieval_flip_prob": 0.2}), out, seeds=2, resume=True, **quiet)


def test_aggregate_mean_and_std():
    keys = ["linear_test_accuracy", "retrieval_map", "distinct_codes", "mean_pairwise_hamming", "vae_loglik_nats",
            "vae_bits_per_dim", "vae_kl", "vae_active_units"]
    rows = [dict({k: float(s) for k in keys}, init="nac", seed=s) for s in (1, 3)]
    rows.append(dict({k: 1.0 for k in keys}, init=RETRIEVAL_NAC, seed=1, vae_kl=None))
    table = aggregate(rows)["table"]
    assert table["nac"]["retrieval_map"] == {"mean": 2.0, "std": pytest.approx(2 ** 0.5), "n": 2}
    assert "vae_kl" not in table[RETRIEVAL_NAC]
    text = markdown_table({"table": table, "retrieval_flip_prob": 0.4})
    assert "± " in text and "| nac (p = 0.4, for retrieval) |" in text and "–" in text


def test_bad_preset_and_seeds(tmp_path):
    with pytest.raises(ConfigError, match="Unknown preset"):
        run_study("imagenet", tmp_path / "a")
    with pytest.raises(ConfigError, match="--seeds"):
        run_study("digits", tmp_path / "b", seeds=0)


@pytest.mark.filterwarnings("ignore:No artists with labels")  # no VAE curves in this toy
def test_figure_plots_percent_columns_in_percent(tmp_path, monkeypatch):
    """The summary figure's axes say (%), so fractions are plotted times 100."""
    import matplotlib.axes

    from nacvae.studies.report import COLUMNS, write_figures

    plotted = []

    def record(self, x, y, yerr=None, **kwargs):
        plotted.append((y[0], yerr[0]))

    monkeypatch.setattr(matplotlib.axes.Axes, "errorbar", record)
    table = {"nac": {key: {"mean": 0.25, "std": 0.5, "n": 2} for key, *_ in COLUMNS}}
    write_figures({"table": table, "description": "toy"}, [], tmp_path)
    expected = [(25.0, 50.0) if "(%)" in header else (0.25, 0.5) for _, header, *_ in COLUMNS]
    assert plotted == expected[: len(plotted)] and len(plotted) == min(9, len(COLUMNS))


def test_methods_choose_the_encoders_and_bring_the_teacher(tmp_path):
    out = tmp_path / "study"
    results = run_study(TOY, out, seeds=1, device="cpu", progress=False, log=lambda m: None,
                        methods=["deepbit", "ssdh"])
    assert set(results["table"]) == {"simclr", "deepbit", "ssdh"}  # SimCLR is the teacher of SSDH and DeepBit
    assert "vae_loglik_nats" in results["table"]["simclr"]
    assert all("vae_loglik_nats" not in results["table"][m] for m in ("deepbit", "ssdh"))
    ssdh = json.loads((out / "seed-0" / "pretrain-ssdh" / "config.json").read_text())["pretrain"]
    assert ssdh["options"]["teacher"] == str(out / "seed-0" / "pretrain-simclr")
    # Each on its own recipe, for the same epochs: 4 steps of 512 images are 85 of SSDH's 24, 64 of DeepBit's 32.
    assert (ssdh["recipe"], ssdh["batch_size"], ssdh["steps"], ssdh["optimizer"]) == ("own", 24, 85, "sgd")
    deepbit = json.loads((out / "seed-0" / "pretrain-deepbit" / "config.json").read_text())["pretrain"]
    assert (deepbit["batch_size"], deepbit["steps"]) == (32, 64)
    assert deepbit["options"]["teacher"] == ssdh["options"]["teacher"]  # DeepBit's hash layer sits on SimCLR's frozen backbone
    assert resolve_methods(TOY, ["deepbit"]) == ["simclr", "deepbit"]
    plan = json.loads((out / "study.json").read_text())
    assert plan["methods"] == ["simclr", "deepbit", "ssdh"] and "simclr" in plan["teacher"]
    assert "| ssdh |" in (out / "results.md").read_text()
    with pytest.raises(ConfigError, match="other settings"):  # a resumed study keeps its encoders
        run_study(TOY, out, seeds=1, device="cpu", progress=False, log=lambda m: None, resume=True, methods=["nac"])


def test_method_sets_of_the_presets():
    assert resolve_methods(PRESETS["digits"], None) == ["random", "nac", "simclr", "moco", RETRIEVAL_NAC]
    assert resolve_methods(PRESETS["fashion-mnist-cpu-baselines"], None) == list(ALL_INITS)
    assert PRESETS["fashion-mnist-cpu-baselines"].pretrain == PRESETS["fashion-mnist-cpu"].pretrain
    with pytest.raises(ConfigError, match="Unknown method 'byol'"):
        resolve_methods(PRESETS["digits"], ["nac", "byol"])
    with pytest.raises(ConfigError, match="no retrieval flip probability"):
        resolve_methods(Preset(data="digits", arch="smallconv", description="x"), [RETRIEVAL_NAC])
