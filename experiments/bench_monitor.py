"""The cost of online monitoring (``--monitor-every``) as a share of pretraining time.

For one dataset preset, two pretraining runs in this process: the preset's default
monitoring interval, then ``--monitor-every 0``. Reported:

- ``end_to_end``: wall time of the monitored runs over the plain ones, minus 1 (noisy on a
  shared machine: both runs also see the other processes' load), and ``end_to_end_cpu``,
  the same with this process's CPU time (less sensitive to that load); ``--repeats 2`` runs
  them in the order plain, monitored, monitored, plain, so a drift in load cancels;
- ``timed_share``: seconds spent in the monitor (opening its subsets plus every check,
  timed around the calls) over the rest of the monitored run: the cost itself, measured in
  the same run and so robust to load;
- with ``--steps`` shorter than the preset's run (Fashion-MNIST's 23,400 steps do not fit
  a CPU benchmark): ``projected_share`` at the default interval, from the measured check
  time and the plain run's seconds per step (from its train rows), i.e.
  check / (interval * step) + setup / (preset steps * step).

    python experiments/bench_monitor.py --data digits --threads 1
    python experiments/bench_monitor.py --data fashion-mnist --steps 6 --check-every 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--steps", type=int, default=None, help="Shorter runs than the preset's [the preset's].")
    p.add_argument("--check-every", type=int, default=None,
                   help="Interval of the monitored run when --steps is short [the preset's default].")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=1, help="Pairs of runs (2: plain, monitored, monitored, plain).")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import nacvae.train.monitor as monitor
    from nacvae.runs import read_metrics
    from nacvae.train.config import resolve_config
    from nacvae.train.pretrain import pretrain

    timed = {"setup": 0.0, "checks": []}
    measure, open_monitor = monitor.OnlineMonitor.measure, monitor.open_monitor

    def timed_measure(self, encoder):
        t = time.perf_counter()
        out = measure(self, encoder)
        timed["checks"].append(time.perf_counter() - t)
        return out

    def timed_open(*a, **k):
        t = time.perf_counter()
        out = open_monitor(*a, **k)
        timed["setup"] += time.perf_counter() - t
        return out

    monitor.OnlineMonitor.measure, monitor.open_monitor = timed_measure, timed_open

    preset = resolve_config(args.data)
    default = preset.monitor_every
    total = preset.steps if preset.steps is not None else None
    # A short run logs every step, so that its seconds per step come from several windows.
    given = {} if args.steps is None else {"steps": args.steps, "log_every": 1}
    every = args.check_every or default
    seconds, cpu, runs = {"monitored": 0.0, "plain": 0.0}, {"monitored": 0.0, "plain": 0.0}, {}
    pairs = ((("plain", 0), ("monitored", every)), (("monitored", every), ("plain", 0)))
    order = [run for i in range(args.repeats) for run in pairs[i % 2]]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, interval) in enumerate(order):
            cfg = resolve_config(args.data, monitor_every=interval, **given)
            t, c = time.perf_counter(), time.process_time()
            runs[name] = pretrain(cfg, Path(tmp) / f"{name}-{i}", progress=False)
            seconds[name] += time.perf_counter() - t
            cpu[name] += time.process_time() - c
            if name == "monitored":
                rows = [r for r in read_metrics(runs[name]) if r["event"] == "monitor"]
            if name == "plain":
                train_rows = [r for r in read_metrics(runs[name]) if r["event"] == "train"]
                steps_per_epoch = json.loads((runs[name] / "config.json").read_text())["steps_per_epoch"]
                run_steps = cfg.steps if cfg.steps is not None else cfg.epochs * steps_per_epoch
                total = total or preset.epochs * steps_per_epoch
    # Seconds per step of the plain run, from its windows after the first (compilation, caches).
    per_step = statistics.median(cfg.batch_size / r["images_per_s"] for r in train_rows[1:] or train_rows)
    spent = timed["setup"] + sum(timed["checks"])
    check = statistics.median(timed["checks"])
    out = {
        "data": args.data, "threads": args.threads, "steps": run_steps, "preset_steps": total,
        "default_interval": default, "interval": every, "checks": len(timed["checks"]),
        "repeats": args.repeats,
        "monitored_s": round(seconds["monitored"], 2), "plain_s": round(seconds["plain"], 2),
        "end_to_end": round(seconds["monitored"] / seconds["plain"] - 1, 4),
        "end_to_end_cpu": round(cpu["monitored"] / cpu["plain"] - 1, 4),
        "monitor_s": round(spent, 3), "setup_s": round(timed["setup"], 3), "check_s": round(check, 4),
        "timed_share": round(spent / (seconds["monitored"] - spent), 4),
        "step_s": round(per_step, 4),
        "projected_share": round(check / (default * per_step) + timed["setup"] / args.repeats / (total * per_step), 4),
        "knn_top1": [r["knn_top1"] for r in rows], "map": [round(r["map"], 4) for r in rows],
        "load": os.getloadavg(), "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    }
    if args.json:
        print(json.dumps(out))
        return
    for k, v in out.items():
        print(f"{k:>16}: {v}")


if __name__ == "__main__":
    main()
