"""Benchmark Hamming-ranking mAP against the straightforward per-query approach.

(a) ``nacvae.eval.retrieval.mean_average_precision`` as users get it: packed codes,
    XOR + popcount and a compiled counting sort per query (numba). Its one-off
    compile or cache-load cost is timed separately on a tiny input first.
(a') the same function's numpy path (``backend="numpy"``): one integer sort per query,
    chunked over queries.
(b) what the paper's evaluation code does: for each query a float32 score vector
    0.5 * (D - q . g) from +-1 codes (float32, as codes taken from torch are), a full
    stable argsort (ties by gallery index, so the ranking is the same as (a)'s) and AP
    from the ranked labels. Its precision terms are added in rank order (the paper's
    code takes ``np.mean``, which can differ in the last bits), so the two values can
    be compared exactly.

Each method runs in its own subprocess, and its peak resident memory (VmHWM, reset
just before the call) is measured around the call alone, next to the resident memory
it started from (interpreter, libraries, the codes). (b) is slow; by default it is timed on a random subset of
queries and its full time extrapolated linearly. mAP equality is checked on that
subset. Codes are class prototypes with random bit flips, so APs are non-trivial.

    python experiments/bench_retrieval.py --queries 10000 --gallery 50000 --bits 128
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np


def make_data(args):
    rng = np.random.default_rng(args.seed)
    prototypes = rng.integers(0, 2, (args.classes, args.bits)).astype(bool)
    n = args.queries + args.gallery
    labels = rng.integers(0, args.classes, n)
    codes = prototypes[labels] ^ (rng.random((n, args.bits)) < args.flip)
    q, g = slice(0, args.queries), slice(args.queries, n)
    subset = np.sort(rng.choice(args.queries, min(args.baseline_queries, args.queries), replace=False))
    return codes[q], labels[q], codes[g], labels[g], subset


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> float:
    """Restart peak-RSS tracking where Linux allows it; returns the current RSS in MB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    current = _status_mb("VmRSS")
    return peak_rss_mb() if current is None else current


def peak_rss_mb() -> float:
    peak = _status_mb("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if peak is None else peak


def baseline_map(q_codes, q_labels, g_codes, g_labels, topk=None):
    """The per-query dense-score approach; returns (mAP, number of queries used)."""
    bits = g_codes.shape[1]
    g_signs = np.where(g_codes, 1.0, -1.0).astype(np.float32)
    q_signs = np.where(q_codes, 1.0, -1.0).astype(np.float32)
    depth = len(g_codes) if topk is None else topk
    aps = []
    for i in range(len(q_codes)):
        scores = 0.5 * (bits - g_signs @ q_signs[i])
        order = np.argsort(scores, kind="stable")[:depth]
        relevant = g_labels[order] == q_labels[i]
        ranks = np.flatnonzero(relevant) + 1.0
        if ranks.size == 0:
            continue
        precision = np.arange(1, ranks.size + 1) / ranks
        aps.append(np.cumsum(precision)[-1] / ranks.size)
    return (math.fsum(aps) / len(aps) if aps else 0.0), len(aps)


def worker(args) -> dict:
    backends = {"fast": "numba", "numpy": "numpy"}
    out = {}
    if args.worker in backends:
        import torch

        from nacvae.eval.retrieval import mean_average_precision

        if args.threads:
            torch.set_num_threads(args.threads)
        backend = backends[args.worker]
        start = time.perf_counter()
        tiny = np.zeros((2, args.bits), dtype=bool)
        mean_average_precision(tiny, [0, 1], tiny, [0, 1], backend=backend)
        out["first_call_seconds"] = time.perf_counter() - start
    q, ql, g, gl, subset = make_data(args)
    out["rss_before_mb"] = reset_peak_rss()
    if args.worker in backends:
        out["threads"] = torch.get_num_threads()
        start, cpu = time.perf_counter(), cpu_seconds()
        value = mean_average_precision(q, ql, g, gl, topk=args.topk, backend=backend)
        out["seconds"] = time.perf_counter() - start
        out["cpu_seconds"] = cpu_seconds() - cpu
        out["map"] = value
        out["peak_rss_mb"] = peak_rss_mb()
        out["subset_map"] = mean_average_precision(q[subset], ql[subset], g, gl, topk=args.topk,
                                                   backend=backend)
    else:
        start, cpu = time.perf_counter(), cpu_seconds()
        value, _ = baseline_map(q[subset], ql[subset], g, gl, topk=args.topk)
        seconds = time.perf_counter() - start
        scale = args.queries / len(subset)
        out["seconds_subset"] = seconds
        out["seconds"] = seconds * scale
        out["cpu_seconds"] = (cpu_seconds() - cpu) * scale
        out["subset_map"] = value
        out["peak_rss_mb"] = peak_rss_mb()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--gallery", type=int, default=50_000)
    parser.add_argument("--bits", type=int, default=128)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--flip", type=float, default=0.3, help="bit-flip probability around each class prototype")
    parser.add_argument("--topk", type=int, default=None, help="AP@topk (default: whole gallery)")
    parser.add_argument("--baseline-queries", type=int, default=500,
                        help="queries (b) is timed on, then extrapolated; >= --queries runs all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for both methods (torch threads for (a), BLAS threads for (b)); "
                             "default: the libraries' own defaults")
    parser.add_argument("--worker", choices=["fast", "numpy", "baseline"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args)))
        return

    results = {}
    for name in ("fast", "numpy", "baseline"):
        cmd = [sys.executable, __file__, "--worker", name] + sys.argv[1:]
        env = dict(os.environ)
        if args.threads:
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(args.threads)
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    a, a2, b = results["fast"], results["numpy"], results["baseline"]
    n_sub = min(args.baseline_queries, args.queries)
    extrapolated = n_sub < args.queries

    print(f"queries {args.queries}, gallery {args.gallery}, bits {args.bits}, classes {args.classes}, "
          f"flip {args.flip}, mAP@{'all' if args.topk is None else args.topk}, {a['threads']} torch threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'method':<44}{'wall [s]':>10}{'CPU [s]':>10}{'ms/query':>10}"
          f"{'peak RSS [MB]':>15}{'(+ over start)':>16}")
    rows = [
        ("(a) mean_average_precision (numba)", a),
        ("(a') mean_average_precision (numpy)", a2),
        ("(b) per-query float32 scores, stable argsort" + (" *" if extrapolated else ""), b),
    ]
    for label, r in rows:
        per_query_ms = 1e3 * r["seconds"] / args.queries
        print(f"{label:<44}{r['seconds']:>10.2f}{r['cpu_seconds']:>10.2f}{per_query_ms:>10.3f}"
              f"{r['peak_rss_mb']:>15.0f}{r['peak_rss_mb'] - r['rss_before_mb']:>+16.0f}")
    if extrapolated:
        print(f"* timed on {n_sub} random queries ({b['seconds_subset']:.2f} s) "
              f"and scaled linearly to {args.queries}")
    print(f"first call on a tiny input (compile or cache load): (a) {a['first_call_seconds']:.2f} s, "
          f"(a') {a2['first_call_seconds']:.2f} s; not included above")
    for label, r in (("(a)", a), ("(a')", a2)):
        print(f"speed-up (b) / {label}: {b['seconds'] / r['seconds']:.1f}x wall, "
              f"{b['cpu_seconds'] / r['cpu_seconds']:.1f}x CPU time")
    print(f"mAP, all queries: (a) {a['map']!r}  (a') {a2['map']!r}")
    same = a["subset_map"] == a2["subset_map"] == b["subset_map"] and a["map"] == a2["map"]
    print(f"mAP on the {n_sub} shared queries: (a) {a['subset_map']!r}  (a') {a2['subset_map']!r}  "
          f"(b) {b['subset_map']!r}  identical: {same}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
