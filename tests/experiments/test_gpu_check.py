"""experiments/gpu_check.sh and its summary table, without a GPU.

The summary builder is checked on logs in the benchmarks' real formats; the shell script
runs twice in a row with a stand-in interpreter that answers as a GPU machine would (and
refuses a used --out as nacvae does); the slow test runs its CPU smoke mode for real.
"""

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))

import gpu_summary  # noqa: E402

DEVICE = {"torch": "2.14.1+cu130", "cuda": True, "name": "NVIDIA H200", "count": 1, "capability": "9.0",
          "native_bf16": True}


def bench_log(arch="resnet18", batch=512, ours=30000, theirs=10000):
    return (f"device cuda:0 (NVIDIA H200), torch 2.14.1+cu130, 16 CPU threads, 16 CPUs\n"
            f"data cifar10, arch {arch}, batch {batch} x 2 views of 3x32x32, amp bf16, channels_last True, "
            f"compile False, DataLoader workers 8, 10 timed steps x 2 rounds\n\n"
            f"pipeline                             images/s   ms/step   per round (images/s)\n"
            f"conventional: full step             {theirs:9,}      51.2   {theirs:,}\n"
            f"nacvae: full step                   {ours:9,}      17.1   {ours:,}\n\n"
            f"full step, nacvae / conventional: {ours / theirs:.2f}x (median of rounds: {ours / theirs:.2f})\n")


def epoch_log(syncs=0, seconds=12.5):
    sites = "".join(f"  {1:3d}x  pretrain.py:{100 + i}\n" for i in range(syncs))
    return (f"data cifar10, arch resnet18, batch 1000 x 2 views of 3x32x32, amp bf16\n"
            f"sync check: {syncs} synchronising call(s) in one step\n{sites}\n"
            f"nacvae: full step                     4,000     250.0   4,000\n\n"
            f"one NAC epoch: 50 steps x 1000 images (50000 images, two views) in {seconds:.2f} s = "
            f"{50000 / seconds:,.0f} images/s\n")


def write_logs(out: Path, **override):
    logs = out / "logs"
    logs.mkdir(parents=True)
    steps = {
        "device": json.dumps(DEVICE),
        "bench-smallconv": bench_log("smallconv", 256, 90000, 9000),
        "bench-resnet18": bench_log(),
        "bench-epoch": epoch_log(),
        "vae-sync": "device cuda, VAE step\nsync check: 0 synchronising call(s) in one step\n",
        "pretrain": f"Run folder: {out}/pretrain\n",
        "vae": f"Run folder: {out}/vae\n",
        "loglik": json.dumps({"loglik_nats": -2950.3, "bits_per_dim": 4.1}),
        "retrieval": json.dumps({"map": 0.41, "metric": "mAP@all"}),
    }
    for name, value in {**steps, **override}.items():
        if value is None:
            continue
        text, rc = value if isinstance(value, tuple) else (value, 0)
        (logs / f"{name}.log").write_text(text)
        (logs / f"{name}.rc").write_text(f"{rc}\n")


def verdicts(out: Path) -> dict[str, tuple[str, str]]:
    return {r.check: (r.figure, r.verdict) for r in gpu_summary.summarise(out)}


def test_every_target_met(tmp_path, capsys):
    write_logs(tmp_path)
    rows = verdicts(tmp_path)
    assert rows["full step ratio, resnet18, batch 512, cifar10-sized images"] == (
        "3.00x (30,000 / 10,000 images/s)", "pass")
    assert rows["full step ratio, smallconv, batch 256, cifar10-sized images"][1] == "pass"
    assert rows["host-device syncs, one pretraining step"] == ("0", "pass")
    assert rows["host-device syncs, one VAE step"] == ("0", "pass")
    assert rows["one NAC epoch, resnet18, batch 1000, cifar10-sized images"] == (
        "12.50 s for 50,000 images (4,000 images/s)", "pass")
    assert rows["nacvae eval loglik"] == ("loglik_nats -2950", "pass")
    assert rows["nacvae eval retrieval"] == ("map 0.41", "pass")
    assert rows["device"][1] == "info" and "NVIDIA H200" in rows["device"][0] and "bf16 autocast on" in rows["device"][0]
    assert rows["--sync-bn cost"] == ("not measured (needs 2 GPUs)", "n/a")
    assert gpu_summary.main([str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert printed == (tmp_path / "summary.md").read_text()
    assert printed.count("\n") == 2 + len(rows) and "FAIL" not in printed
    assert len(json.loads((tmp_path / "summary.json").read_text())) == len(rows)


def test_missed_targets_and_failed_steps_fail(tmp_path):
    write_logs(tmp_path, **{
        "bench-resnet18": bench_log(ours=15000, theirs=10000),  # 1.5x
        "bench-epoch": epoch_log(syncs=2, seconds=31.0),
        "vae-sync": ("Traceback (most recent call last): ...\n", 1),
        "retrieval": None,  # never ran
        "loglik": json.dumps({"loglik_nats": None}),
    })
    rows = verdicts(tmp_path)
    assert rows["full step ratio, resnet18, batch 512, cifar10-sized images"] == (
        "1.50x (15,000 / 10,000 images/s)", "FAIL")
    assert rows["host-device syncs, one pretraining step"] == ("2 (1x pretrain.py:100, 1x pretrain.py:101)", "FAIL")
    assert rows["one NAC epoch, resnet18, batch 1000, cifar10-sized images"][1] == "FAIL"
    assert rows["host-device syncs, one VAE step"] == ("exit status 1", "FAIL")
    assert rows["nacvae eval retrieval"] == ("did not run", "FAIL")
    assert rows["nacvae eval loglik"][1] == "FAIL"
    assert rows["nacvae pretrain"][1] == "pass"
    assert gpu_summary.main([str(tmp_path)]) == 1


def write_rates(run: Path, *rates: float) -> None:
    run.mkdir()
    records = [{"event": "train", "step": 10 * (i + 1), "images_per_s": r} for i, r in enumerate(rates)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_sync_bn_cost_with_two_gpus(tmp_path):
    write_logs(tmp_path, ddp="Run folder: ddp\n", **{"ddp-sync-bn": "Run folder: ddp-sync-bn\n"})
    write_rates(tmp_path / "ddp", 5000.0, 20000.0)
    write_rates(tmp_path / "ddp-sync-bn", 4000.0, 15000.0)
    check = "--sync-bn cost, 2 GPUs, ResNet-18 on digits, batch 512"
    assert verdicts(tmp_path)[check] == ("15,000 vs 20,000 images/s without (+25.0 % slower)", "info")


def test_docs_state_the_targets():
    text = (ROOT / "docs" / "scaling.md").read_text()
    section = text[text.index("## The GPU check"):]
    assert f"≥ {gpu_summary.MIN_STEP_RATIO:g}x" in section
    assert f"≤ {gpu_summary.MAX_EPOCH_SECONDS:g} s" in section
    assert re.search(rf"syncs? .*\| {gpu_summary.MAX_SYNCS_PER_STEP} \|", section)


STAND_IN = r'''#!{python}
"""Answers the script's commands as a GPU machine with nacvae would, instantly."""
import json, os, runpy, sys
args = sys.argv[1:]
if args[0] == "-":  # the device probe
    sys.stdin.read()
    print(json.dumps({device}))
elif args[0].endswith("gpu_summary.py"):
    sys.argv = args
    runpy.run_path(args[0], run_name="__main__")
elif args[0].endswith("bench_pipeline.py"):
    print({epoch!r} if "--epoch" in args else {bench!r})
elif args[0].endswith("vae_sync_check.py"):
    print("sync check: 0 synchronising call(s) in one step")
elif args[0] == "-c":
    print(os.environ["STAND_IN_GPUS"])  # torch.cuda.device_count()
elif args[:2] == ["-m", "torch.distributed.run"]:  # two processes of nacvae pretrain
    assert args[args.index("--nproc-per-node") + 1] == "2" and args[5:8] == ["-m", "nacvae", "pretrain"], args
    out = args[args.index("--out") + 1]
    os.makedirs(out)  # fails on a used folder, as nacvae does
    rate = 900.0 if "--sync-bn" in args else 1000.0
    with open(os.path.join(out, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({{"event": "train", "step": 60, "images_per_s": rate}}) + "\n")
elif args[:2] == ["-m", "nacvae"]:
    if args[2] == "eval":
        print(json.dumps({{"loglik_nats": -3000.0}} if args[3] == "loglik" else {{"map": 0.4}}))
    else:
        out = args[args.index("--out") + 1]
        if os.path.exists(out):
            print(f"Error: {{out}} already exists; choose another --out or pass --resume.", file=sys.stderr)
            sys.exit(2)
        os.makedirs(out)
        print(f"Run folder: {{out}}")
else:
    sys.exit(f"unexpected command: {{args}}")
'''


@pytest.mark.parametrize("gpus", [1, 2])
def test_gpu_check_runs_twice_in_a_row(tmp_path, gpus):
    python = tmp_path / "python"
    python.write_text(STAND_IN.format(python=sys.executable, device=DEVICE, epoch=epoch_log(), bench=bench_log()))
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PYTHON": str(python), "STAND_IN_GPUS": str(gpus)}
    folders = []
    for _ in range(2):
        done = subprocess.run(["bash", str(ROOT / "experiments" / "gpu_check.sh"), str(tmp_path / "runs")],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        table = done.stdout[done.stdout.index("| check |"):]
        assert "FAIL" not in table and table.count("| pass |") == 9
        if gpus == 2:
            assert "| 900 vs 1,000 images/s without (+10.0 % slower) | reported | info |" in table
        else:
            assert "| --sync-bn cost | not measured (needs 2 GPUs) | reported | n/a |" in table
        folders.append(Path(re.search(r"^gpu check \(gpu\): (.+)$", done.stdout, re.MULTILINE).group(1)))
    assert folders[0] != folders[1] and all((f / "summary.md").exists() for f in folders)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(f.name for f in folders)


def test_gpu_check_without_a_gpu_says_so(tmp_path):
    python = tmp_path / "python"
    python.write_text(STAND_IN.format(python=sys.executable, device={"torch": "2", "cuda": False},
                                      epoch="", bench="").replace(
        "print(json.dumps({'torch': '2', 'cuda': False}))",
        "print('no CUDA device is visible; run with --cpu for a smoke run on the CPU'); sys.exit(1)"))
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    done = subprocess.run(["bash", str(ROOT / "experiments" / "gpu_check.sh"), str(tmp_path / "runs")],
                          capture_output=True, text=True, env={**os.environ, "PYTHON": str(python)}, timeout=60)
    assert "bench" not in done.stdout  # nothing else ran
    assert done.returncode == 1
    assert "no CUDA device is visible" in done.stdout and "| device | unknown | a CUDA device | FAIL |" in done.stdout


@pytest.mark.slow
def test_cpu_smoke_run_of_every_step(tmp_path):
    """The real thing, small, on the CPU (about 2-3 minutes on 2 busy cores)."""
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "experiments" / "gpu_check.sh"), "--cpu", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout[done.stdout.index("| check |"):]
    assert "FAIL" not in table and table.count("| pass |") == 4  # the runs and evaluations
    for check in ("full step ratio", "one NAC epoch", "host-device syncs, one VAE step"):
        assert check in table
