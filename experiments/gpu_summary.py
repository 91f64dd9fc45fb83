"""The summary table of ``experiments/gpu_check.sh``: each figure against its target.

    python experiments/gpu_summary.py OUT

reads the logs the script leaves in OUT/logs (``NAME.log`` with a step's output and
``NAME.rc`` with its exit status), prints one Markdown table (check, figure, target,
verdict), writes it to OUT/summary.md and the same rows to OUT/summary.json, and exits
with 1 when a check failed. The targets are those of docs/scaling.md ("The GPU check").
Without a GPU (``gpu_check.sh --cpu``) the speed targets are not judged.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

# Targets, as stated in docs/scaling.md.
MIN_STEP_RATIO = 2.0        # full pretraining step, nacvae / PIL DataLoader pipeline
MAX_SYNCS_PER_STEP = 0      # host-device synchronisations in one training step
MAX_EPOCH_SECONDS = 30.0    # one NAC epoch, ResNet-18, batch 1000, 50,000 32x32 images

PASS, FAIL, INFO, SKIPPED = "pass", "FAIL", "info", "n/a"


@dataclass
class Row:
    check: str
    figure: str
    target: str
    verdict: str


def _read(logs: Path, name: str) -> tuple[str | None, int | None]:
    """(output, exit status) of step ``name``; (None, None) when it did not run."""
    log, rc = logs / f"{name}.log", logs / f"{name}.rc"
    if not log.exists() and not rc.exists():
        return None, None
    text = log.read_text(errors="replace") if log.exists() else ""
    status = int(rc.read_text().strip()) if rc.exists() and rc.read_text().strip() else None
    return text, status


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _last(pattern: str, text: str) -> re.Match | None:
    found = list(re.finditer(pattern, text, flags=re.MULTILINE))
    return found[-1] if found else None


def _failed(check: str, target: str, text: str | None, status: int | None) -> Row | None:
    """The row of a step that did not run or did not finish; None when it succeeded."""
    if text is None:
        return Row(check, "did not run", target, FAIL)
    if status != 0:
        return Row(check, f"exit status {status}", target, FAIL)
    return None


def device_row(logs: Path) -> tuple[Row, bool]:
    """(the device row, whether it is a CUDA device)."""
    text, status = _read(logs, "device")
    if text is None or status != 0:
        return Row("device", "unknown", "a CUDA device", FAIL), False
    info = json.loads(text.strip().splitlines()[-1])
    if not info.get("cuda"):
        return Row("device", f"CPU only, torch {info['torch']} (smoke run)", "a CUDA device", SKIPPED), False
    figure = (f"{info['name']} (compute capability {info['capability']}), {info['count']} GPU(s), "
              f"torch {info['torch']}, bf16 autocast {'on' if info['native_bf16'] else 'off (no native bf16)'}")
    return Row("device", figure, "a CUDA device", INFO), True


def _setting(text: str, default: str) -> str:
    """"ResNet-18, batch 512"-style label from a benchmark's "data ..., arch ..., batch ..." line."""
    found = _last(r"^data (\S+), arch (\S+), batch (\d+)", text)
    return default if not found else f"{found.group(2)}, batch {found.group(3)}, {found.group(1)}-sized images"


def ratio_row(logs: Path, name: str, setting: str, judged: bool) -> Row:
    target = f">= {MIN_STEP_RATIO:g}x"
    text, status = _read(logs, name)
    check = "full step ratio, " + _setting(text or "", setting)
    bad = _failed(check, target, text, status)
    if bad:
        return bad
    ratio = _last(r"^full step, nacvae / conventional: ([\d.]+)x", text)
    ours = _last(r"^nacvae: full step\s+([\d,]+)", text)
    theirs = _last(r"^conventional: full step\s+([\d,]+)", text)
    if not (ratio and ours and theirs):
        return Row(check, "no figure in the output", target, FAIL)
    value = float(ratio.group(1))
    figure = f"{value:.2f}x ({ours.group(1)} / {theirs.group(1)} images/s)"
    return Row(check, figure, target, (PASS if value >= MIN_STEP_RATIO else FAIL) if judged else SKIPPED)


def sync_row(logs: Path, name: str, check: str) -> Row:
    target = f"{MAX_SYNCS_PER_STEP}"
    text, status = _read(logs, name)
    bad = _failed(check, target, text, status)
    if bad:
        return bad
    if _last(r"^sync check: CUDA only, skipped", text):
        return Row(check, "skipped (CUDA only)", target, SKIPPED)
    found = _last(r"^sync check: (\d+) synchronising call", text)
    if not found:
        return Row(check, "no figure in the output", target, FAIL)
    count = int(found.group(1))
    sites = re.findall(r"^\s+(\d+)x\s+(\S+)$", text[found.end():], flags=re.MULTILINE)
    figure = f"{count}" + (" (" + ", ".join(f"{n}x {site}" for n, site in sites) + ")" if sites else "")
    return Row(check, figure, target, PASS if count <= MAX_SYNCS_PER_STEP else FAIL)


def epoch_row(logs: Path, name: str, judged: bool) -> Row:
    target = f"<= {MAX_EPOCH_SECONDS:g} s"
    text, status = _read(logs, name)
    check = "one NAC epoch, " + _setting(text or "", "resnet18, batch 1000")
    bad = _failed(check, target, text, status)
    if bad:
        return bad
    found = _last(r"^one NAC epoch: (\d+) steps x (\d+) images .* in ([\d.]+) s = ([\d,]+) images/s", text)
    if not found:
        return Row(check, "no figure in the output", target, FAIL)
    images = int(found.group(1)) * int(found.group(2))
    seconds = float(found.group(3))
    figure = f"{seconds:.2f} s for {images:,} images ({found.group(4)} images/s)"
    # A smoke run times a smaller epoch: the target is for 50,000 images on a GPU.
    return Row(check, figure, target, (PASS if seconds <= MAX_EPOCH_SECONDS else FAIL) if judged else SKIPPED)


def json_row(logs: Path, name: str, check: str, key: str, label: str, ok) -> Row:
    target = f"completes, {label}"
    text, status = _read(logs, name)
    bad = _failed(check, target, text, status)
    if bad:
        return bad
    try:
        value = json.loads(text.strip().splitlines()[-1])[key]
    except (ValueError, IndexError, KeyError, TypeError):
        return Row(check, "no result in the output", target, FAIL)
    good = isinstance(value, (int, float)) and math.isfinite(value) and ok(value)
    return Row(check, f"{key} {value:.4g}" if isinstance(value, (int, float)) else f"{key} {value}", target,
               PASS if good else FAIL)


def run_row(logs: Path, name: str, check: str) -> Row:
    text, status = _read(logs, name)
    bad = _failed(check, "completes", text, status)
    if bad:
        return bad
    found = _last(r"^Run folder: (.+)$", text)
    return Row(check, "complete" + (f" ({Path(found.group(1)).name})" if found else ""), "completes", PASS)


def _last_rate(run: Path) -> float | None:
    """images_per_s of the last training record in a run folder's metrics.jsonl."""
    try:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        rates = [r["images_per_s"] for r in map(json.loads, lines) if r.get("event") == "train"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(rates[-1]) if rates else None


def sync_bn_rows(out: Path) -> list[Row]:
    """Images/s of the same short two-GPU pretraining with and without --sync-bn."""
    check = "--sync-bn cost, 2 GPUs, ResNet-18 on digits, batch 512"
    rates = {}
    for name in ("ddp", "ddp-sync-bn"):
        text, status = _read(out / "logs", name)
        if text is None:
            return [Row("--sync-bn cost", "not measured (needs 2 GPUs)", "reported", SKIPPED)]
        if status != 0:
            return [Row(f"{check} ({name})", f"exit status {status}", "reported", FAIL)]
        rates[name] = _last_rate(out / name)
        if rates[name] is None:
            return [Row(f"{check} ({name})", "no images/s in its metrics", "reported", FAIL)]
    plain, synced = rates["ddp"], rates["ddp-sync-bn"]
    return [Row(check, f"{synced:,.0f} vs {plain:,.0f} images/s without "
                f"({100 * (1 - synced / plain):+.1f} % slower)", "reported", INFO)]


def summarise(out: Path) -> list[Row]:
    logs = out / "logs"
    device, cuda = device_row(logs)
    rows = [device,
            ratio_row(logs, "bench-smallconv", "smallconv, batch 256", cuda),
            ratio_row(logs, "bench-resnet18", "resnet18, batch 512", cuda),
            sync_row(logs, "bench-epoch", "host-device syncs, one pretraining step"),
            epoch_row(logs, "bench-epoch", cuda),
            sync_row(logs, "vae-sync", "host-device syncs, one VAE step"),
            run_row(logs, "pretrain", "nacvae pretrain"),
            run_row(logs, "vae", "nacvae vae"),
            json_row(logs, "loglik", "nacvae eval loglik", "loglik_nats", "finite and < 0", lambda v: v < 0),
            json_row(logs, "retrieval", "nacvae eval retrieval", "map", "0 <= mAP <= 1", lambda v: 0 <= v <= 1)]
    rows += sync_bn_rows(out)
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| check | figure | target | verdict |", "|---|---|---|---|"]
    lines += [f"| {r.check} | {r.figure} | {r.target} | {r.verdict} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python experiments/gpu_summary.py OUT", file=sys.stderr)
        return 2
    out = Path(args[0])
    rows = summarise(out)
    text = table(rows)
    (out / "summary.md").write_text(text)
    (out / "summary.json").write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    print(text, end="")
    return 1 if any(r.verdict == FAIL for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
