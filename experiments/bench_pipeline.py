"""Images per second of a full pretraining step: nacvae's pipeline against the usual one.

A step is: two augmented views of a batch, the encoder's forward and backward, the NAC
loss, the LARS update and the bookkeeping of the training loop.

nacvae        the images are held on the device as uint8 and both views are made there in
              one batched pass (``nacvae.data.two_views``), exactly as ``nacvae pretrain``
              does it.
conventional  a torch DataLoader whose workers apply torchvision's per-image PIL transforms
              (RandomResizedCrop, horizontal flip, ColorJitter with p = 0.8, RandomGrayscale
              p = 0.2, ToTensor, Normalize) twice per image; batches are copied to the device.

``--data`` picks the image shape, normalisation and augmentation parameters of a dataset
(cifar10: 3x32x32, fashion-mnist: 1x28x28, digits: 1x8x8); both pipelines use the same
parameters (crop scale and ratio, flip, jitter, grayscale probabilities).

Both feed the same model, loss and optimiser (one instance, prepared for the device as
``nacvae pretrain`` prepares it: bf16 autocast where nacvae/precision.py chooses it, channels-last), and
"model only" is also timed in both precisions whichever was chosen. Both use the same
batch size and augmentation parameters, and are timed in the same run in alternating
rounds, so that a change in the machine's load affects both. The data are synthetic uint8
images (no download). Each round starts a fresh DataLoader iterator and times it only
after a few warm-up steps, and shuts its workers down before the other pipeline runs.

    python experiments/bench_pipeline.py --arch smallconv --batch-size 256 --steps 10
    python experiments/bench_pipeline.py --arch smallconv --data digits --images 1797
    python experiments/bench_pipeline.py --arch resnet18 --epoch      # one NAC epoch, 50,000 images
    python experiments/bench_pipeline.py --arch resnet18 --sync-check # CUDA: syncs in one step
    python experiments/bench_pipeline.py --workers 0 --contend 1      # also beside one busy process

``--contend K`` times every round twice: quiet, and with K busy processes (each a pure-Python
loop on one core) started just before and stopped just after. The torch thread count is
chosen as ``nacvae`` chooses it (``--threads``, else $NACVAE_THREADS, else the free cores),
anew at the start of each phase, as a command started at that moment would choose it; the
OpenMP wait policy is set once, before torch starts. "model only" times the model, loss and
update on views made beforehand: the bound that a free augmentation would reach.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nacvae.threads import configure_threads  # noqa: E402  (imports neither torch nor numba)


def _threads_argument() -> str | None:
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if arg.startswith("--threads="):
            return arg.split("=", 1)[1]
    return None


if __name__ == "__main__":
    # Before torch is imported: its OpenMP runtime reads the wait policy once, at start-up.
    configure_threads(_threads_argument())

import numpy as np  # noqa: E402
import torch  # noqa: E402

from nacvae.data import default_augment, two_views  # noqa: E402
from nacvae.seeds import step_seed  # noqa: E402
from nacvae.train.config import resolve_config  # noqa: E402
from nacvae.train.methods import build_method, encoder_step_probe, prepare_method  # noqa: E402
from nacvae.train.optim import build_optimizer  # noqa: E402
from nacvae.precision import probe_images, resolve_amp  # noqa: E402
from nacvae.train.prefetch import Prefetch, worth_prefetching  # noqa: E402
from nacvae.train.pretrain import train_step  # noqa: E402

# dataset -> (image shape, mean, std); the statistics only set the normalisation constants.
DATASETS = {
    "cifar10": ((3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "fashion-mnist": ((1, 28, 28), (0.2860,), (0.3530,)),
    "digits": ((1, 8, 8), (0.3054,), (0.3780,)),
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="smallconv", choices=["smallconv", "resnet18", "resnet50"])
    ap.add_argument("--batch-size", type=int, default=256, help="images per step (each in two views)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per pipeline and round")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps before each timed stretch")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of both pipelines; medians are reported")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers [min(8, CPUs)]")
    ap.add_argument("--threads", default=None,
                    help="torch CPU threads of the main process: N or auto [as nacvae chooses: $NACVAE_THREADS, "
                         "else $OMP_NUM_THREADS, else the free cores]")
    ap.add_argument("--contend", type=int, default=0, metavar="K",
                    help="also time every round beside K busy processes (one core each)")
    ap.add_argument("--data", default="cifar10", choices=sorted(DATASETS),
                    help="image shape and augmentation parameters of this dataset (the images are synthetic)")
    ap.add_argument("--images", type=int, default=50_000, help="synthetic training images")
    ap.add_argument("--code-dim", type=int, default=128)
    ap.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast [as nacvae pretrain decides: native bf16 and, on a CPU, measured faster]")
    ap.add_argument("--compile", action="store_true", help="torch.compile the backbone")
    ap.add_argument("--epoch", action="store_true",
                    help="also time one full NAC epoch over --images images with nacvae's pipeline")
    ap.add_argument("--sync-check", action="store_true",
                    help="CUDA only: list the host-device synchronisations of one nacvae step")
    ap.add_argument("--no-conventional", action="store_true", help="time nacvae's pipeline only")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bench:
    """The model, optimiser and data shared by both pipelines."""

    def __init__(self, args: argparse.Namespace, device: torch.device) -> None:
        self.args, self.device = args, device
        g = torch.Generator().manual_seed(args.seed)
        shape, mean, std = DATASETS[args.data]
        self.images_cpu = torch.randint(0, 256, (args.images, *shape), dtype=torch.uint8, generator=g)
        self.images = self.images_cpu.to(device)  # nacvae: held on the device once
        self.augment = default_augment(args.data, shape, mean, std)
        cfg = resolve_config(args.data, arch=args.arch, code_dim=args.code_dim, batch_size=args.batch_size,
                             seed=args.seed)
        self.method = build_method(cfg, shape).to(device)
        params = [p for p in self.method.parameters() if p.requires_grad]
        self.optimizer = build_optimizer("lars", params, lr=0.1, weight_decay=1e-6)
        # As nacvae pretrain decides it: on a CPU with native bf16, by timing the encoder.
        def probe():
            return encoder_step_probe(self.method.encoder, shape, probe_images(2 * args.batch_size, shape), device)

        self.amp_decision = resolve_amp(device, args.amp, probe)
        self.amp = self.amp_decision.amp
        prepare_method(self.method, device, amp=self.amp, compile=args.compile)
        self.method.train()
        self.step = 0
        self.loss_sum = torch.zeros((), device=device)
        self.perm = torch.randperm(args.images, generator=g).to(device)

    def generator(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(step_seed(self.args.seed, self.step))

    def train(self, x1: torch.Tensor, x2: torch.Tensor, gen: torch.Generator) -> None:
        loss, _ = train_step(self.method, self.optimizer, x1, x2, gen)
        self.loss_sum += loss  # as the loop does: on the device, read only at log steps
        self.step += 1

    # ------------------------------------------------------------------ nacvae's pipeline

    def nacvae_views(self, i: int, gen: torch.Generator):
        b = self.args.batch_size
        start = (i * b) % (self.args.images - b + 1)
        return two_views(self.images[self.perm[start:start + b]], self.augment, gen)

    def nacvae_steps(self, steps: int, train: bool = True) -> float:
        """Seconds for ``steps`` steps after the warm-up (augmentation only when ``train`` is
        false). Training steps take their views as ``nacvae pretrain`` does: on a CPU with two
        or more threads made one step ahead in a background thread (nacvae/train/prefetch.py)."""
        first = self.step

        def views(i: int):
            gen = torch.Generator(device=self.device).manual_seed(step_seed(self.args.seed, first + i))
            return (*self.nacvae_views(first + i, gen), gen)

        total = self.args.warmup + steps
        background = train and worth_prefetching(self.device, streamed=False)
        items = Prefetch(views, range(total)) if background else map(views, range(total))
        start = time.perf_counter()
        try:
            for i, (x1, x2, gen) in enumerate(items):
                if i == self.args.warmup:
                    synchronize(self.device)
                    start = time.perf_counter()
                if train:
                    self.train(x1, x2, gen)
        finally:
            if background:
                items.close()
        synchronize(self.device)
        return time.perf_counter() - start

    def model_steps(self, steps: int, views, amp: bool | None = None) -> float:
        """Seconds for ``steps`` model-only steps on the same two views (in bf16 or float32
        when ``amp`` says, else in the run's precision)."""
        if amp is not None:
            chosen = self.method.amp_dtype
            self.method.amp_dtype = torch.bfloat16 if amp else None
            try:
                return self.model_steps(steps, views)
            finally:
                self.method.amp_dtype = chosen
        x1, x2 = views
        start = time.perf_counter()
        for i in range(self.args.warmup + steps):
            if i == self.args.warmup:
                synchronize(self.device)
                start = time.perf_counter()
            self.train(x1, x2, self.generator())
        synchronize(self.device)
        return time.perf_counter() - start

    # -------------------------------------------------------------- conventional pipeline

    def loader(self):
        from torch.utils.data import DataLoader

        args = self.args
        images = self.images_cpu.permute(0, 2, 3, 1).contiguous().numpy()
        if images.shape[-1] == 1:
            images = images[..., 0]  # PIL "L" mode
        dataset = PILTwoViews(images, pil_transform(self.augment))
        return DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
                          pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(args.seed))

    def conventional_steps(self, steps: int, train: bool = True) -> float:
        batches = iter(self.loader())
        start = time.perf_counter()
        for i in range(self.args.warmup + steps):
            if i == self.args.warmup:
                synchronize(self.device)
                start = time.perf_counter()
            try:
                x1, x2 = next(batches)
            except StopIteration:  # a new epoch, as a training loop would start one
                batches = iter(self.loader())
                x1, x2 = next(batches)
            x1, x2 = x1.to(self.device, non_blocking=True), x2.to(self.device, non_blocking=True)
            if train:
                self.train(x1, x2, self.generator())
        synchronize(self.device)
        seconds = time.perf_counter() - start
        del batches  # stops the workers before anything else is timed
        return seconds


class PILTwoViews(torch.utils.data.Dataset):
    def __init__(self, images_hwc: np.ndarray, transform) -> None:
        self.images, self.transform = images_hwc, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        image = Image.fromarray(self.images[i])
        return self.transform(image), self.transform(image)


def pil_transform(aug):
    """torchvision's per-image transforms with the parameters of nacvae's ``AugmentConfig``."""
    from torchvision import transforms as T

    return T.Compose([
        T.RandomResizedCrop(aug.size, scale=aug.crop_scale, ratio=aug.crop_ratio),
        T.RandomHorizontalFlip(p=aug.flip_p),
        T.RandomApply([T.ColorJitter(*aug.jitter)], p=aug.jitter_p),
        T.RandomGrayscale(p=aug.gray_p),
        T.ToTensor(),
        T.Normalize(aug.mean, aug.std),
    ])


# ------------------------------------------------------------------------------ reports


def sync_check(bench: Bench) -> None:
    """Runs one nacvae step with CUDA's sync debug mode and lists what synchronised."""
    if bench.device.type != "cuda":
        print("sync check: CUDA only, skipped")
        return
    bench.nacvae_steps(0)  # cuDNN autotuning and lazy initialisation happen here, not below
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            gen = bench.generator()
            bench.train(*bench.nacvae_views(0, gen), gen)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    synchronize(bench.device)
    sites = {}
    for w in caught:
        key = f"{Path(w.filename).name}:{w.lineno}"
        sites[key] = sites.get(key, 0) + 1
    print(f"sync check: {len(caught)} synchronising call(s) in one step")
    for site, count in sorted(sites.items()):
        print(f"  {count:3d}x  {site}")


def time_epoch(bench: Bench) -> None:
    args = bench.args
    steps = args.images // args.batch_size
    bench.nacvae_steps(0)  # warm-up (and compilation)
    synchronize(bench.device)
    start = time.perf_counter()
    for i in range(steps):  # the batches of one permutation of all images
        gen = bench.generator()
        bench.train(*bench.nacvae_views(i, gen), gen)
    synchronize(bench.device)
    seconds = time.perf_counter() - start
    print(f"\none NAC epoch: {steps} steps x {args.batch_size} images ({steps * args.batch_size} images, two views) "
          f"in {seconds:.2f} s = {steps * args.batch_size / seconds:,.0f} images/s")


class Contention:
    """K busy processes, each a pure-Python loop (one core each), while the block runs."""

    def __init__(self, k: int) -> None:
        self.k, self.procs = k, []

    def __enter__(self):
        # Each spins until stopped, or until this process is gone (killed before it could stop them).
        spin = "import os\nparent = os.getppid()\nwhile os.getppid() == parent: pass"
        self.procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(self.k)]
        time.sleep(0.5 if self.k else 0)  # let them take their cores
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()


def main() -> None:
    args = parse_args()
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if args.workers is None:
        args.workers = min(8, os.cpu_count() or 1)
    if args.batch_size > args.images:
        sys.exit("--batch-size must not exceed --images")
    bench = Bench(args, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"device {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"{os.cpu_count()} CPUs, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    c, h, w = DATASETS[args.data][0]
    print(f"data {args.data}, arch {args.arch}, batch {args.batch_size} x 2 views of {c}x{h}x{w}, "
          f"amp {'bf16' if bench.amp else 'off'} ({bench.amp_decision.why}), channels_last {bench.method.channels_last}, "
          f"compile {args.compile}, DataLoader workers {args.workers}, {args.steps} timed steps x {args.rounds} rounds")
    if args.sync_check:
        sync_check(bench)

    phases = ["quiet"] + ([f"{args.contend} busy"] if args.contend else [])
    rows: dict[str, dict[str, list[float]]] = {phase: {} for phase in phases}
    threads: dict[str, list[int]] = {phase: [] for phase in phases}
    fixed = bench.nacvae_views(0, bench.generator())

    def record(phase: str, label: str, seconds: float) -> None:
        rows[phase].setdefault(label, []).append(args.steps * args.batch_size / seconds)

    def conventional(phase: str) -> None:
        record(phase, "conventional: augmentation only", bench.conventional_steps(args.steps, train=False))
        record(phase, "conventional: full step", bench.conventional_steps(args.steps))

    def nacvae(phase: str) -> None:
        record(phase, "nacvae: augmentation only", bench.nacvae_steps(args.steps, train=False))
        record(phase, "nacvae: full step", bench.nacvae_steps(args.steps))

    def model_only(phase: str) -> None:
        record(phase, "model only (views made beforehand)", bench.model_steps(args.steps, fixed))
        for amp in (False, True):  # both precisions, whichever the run chose
            record(phase, f"model only, {'bf16' if amp else 'float32'}", bench.model_steps(args.steps, fixed, amp))

    for r in range(args.rounds):
        for phase in phases:
            with Contention(args.contend if phase != "quiet" else 0):
                if device.type == "cpu":  # as a command started now would choose
                    threads[phase].append(configure_threads(args.threads)[0])
                # Alternate which pipeline goes first, so that a drifting load favours neither.
                order = [nacvae] if args.no_conventional else [conventional, nacvae] if r % 2 == 0 else [nacvae, conventional]
                for run in [*order, model_only]:
                    run(phase)
    float(bench.loss_sum)  # the losses were computed, not skipped

    for phase in phases:
        used = ", ".join(str(t) for t in threads[phase]) or "n/a"
        print(f"\n{phase}: torch threads per round {used}")
        print(f"{'pipeline':36s} {'images/s':>10s} {'ms/step':>9s}   per round (images/s)")
        for label, values in rows[phase].items():
            med = statistics.median(values)
            print(f"{label:36s} {med:10,.0f} {1000 * args.batch_size / med:9.1f}   "
                  + ", ".join(f"{v:,.0f}" for v in values))
        bound = rows[phase]["model only (views made beforehand)"]
        for pipe in ["nacvae"] + ([] if args.no_conventional else ["conventional"]):
            share = [f / b for f, b in zip(rows[phase][f"{pipe}: full step"], bound)]
            print(f"  {pipe} full step at {statistics.median(share):.0%} of the model-only bound")
        gain = [b / f for b, f in zip(rows[phase]["model only, bf16"], rows[phase]["model only, float32"])]
        print(f"  model only, bf16 / float32: {statistics.median(gain):.2f}x (rounds: "
              + ", ".join(f"{g:.2f}" for g in gain) + ")")
        if not args.no_conventional:
            for what in ("augmentation only", "full step"):
                ratios = [n / c for n, c in zip(rows[phase][f"nacvae: {what}"], rows[phase][f"conventional: {what}"])]
                print(f"  {what}, nacvae / conventional: {statistics.median(ratios):.2f}x (rounds: "
                      + ", ".join(f"{r:.2f}" for r in ratios) + ")")
    print(f"\nload average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.epoch:
        time_epoch(bench)


if __name__ == "__main__":
    main()
