"""How long a quick command takes to start, against the floor of importing torch.

Times, in alternating rounds (so that a drifting load hits every command alike), the wall
time of fresh processes:

    import torch       python -c "import torch" (the floor of any command that computes)
    --help             nacvae eval linear --help (imports neither torch nor numpy)
    eval linear        nacvae eval linear --init random --arch smallconv --data digits
                       --protocol fast --json (the whole evaluation, start to end)

and lists the slowest imports of ``--help`` and of ``eval linear`` from ``python -X importtime``.
Run it on a quiet machine (``uptime``); the figures of docs/scaling.md come from

    python experiments/bench_startup.py --rounds 5 --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

EVAL = ["eval", "linear", "--init", "random", "--arch", "smallconv", "--data", "digits", "--protocol", "fast",
        "--json"]
COMMANDS = {
    "import torch": [sys.executable, "-c", "import torch"],
    "--help": [sys.executable, "-m", "nacvae", "eval", "linear", "--help"],
    "eval linear": [sys.executable, "-m", "nacvae", *EVAL],
}


def wall(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def slowest_imports(command: list[str], env: dict[str, str], n: int) -> list[tuple[float, str]]:
    """The ``n`` top-level imports with the largest cumulative time (seconds, module)."""
    out = subprocess.run([command[0], "-X", "importtime", *command[1:]], capture_output=True, text=True,
                         env=env, check=True).stderr
    rows = []
    for line in out.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if cumulative.strip().isdigit() and not name.startswith("  "):  # top level: one space of indent
            rows.append((int(cumulative) / 1e6, name.strip()))
    return sorted(rows, reverse=True)[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", default="2", help="NACVAE_THREADS for the commands")
    ap.add_argument("--imports", type=int, default=8, help="slowest imports to list per command")
    args = ap.parse_args()
    env = dict(os.environ, NACVAE_THREADS=str(args.threads))
    for command in COMMANDS.values():  # warm: the files are in the page cache, bytecode is compiled
        wall(command, env)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for r in range(args.rounds):
        names = list(COMMANDS) if r % 2 == 0 else list(reversed(COMMANDS))
        for name in names:
            times[name].append(wall(COMMANDS[name], env))
    print(f"{args.rounds} rounds, NACVAE_THREADS={args.threads}, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{'command':14s} {'median s':>9s}  runs")
    for name, values in times.items():
        print(f"{name:14s} {statistics.median(values):9.2f}  " + ", ".join(f"{v:.2f}" for v in values))
    floor = statistics.median(times["import torch"])
    print(f"eval linear beyond import torch: {statistics.median(times['eval linear']) - floor:.2f} s")
    for name in ("--help", "eval linear"):
        print(f"\nslowest imports of {name} (cumulative s, python -X importtime):")
        for seconds, module in slowest_imports(COMMANDS[name], env, args.imports):
            print(f"  {seconds:6.3f}  {module}")


if __name__ == "__main__":
    main()
