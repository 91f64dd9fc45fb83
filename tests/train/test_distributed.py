"""Multi-process pretraining on CPU (gloo, loopback only).

Two processes holding halves of a fixed batch must give the loss and the gradients of one
process on the whole batch; the real loop must run under a torchrun-style launch, write
its run folder once and resume; a world size that does not divide the batch must fail
with one sentence.
"""

import os
import socket

import pytest
import torch
from torch import nn

WORLD = 2
BATCH = 8   # global batch; each process holds BATCH // WORLD images
P = 0.3


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_env(rank: int, port: int) -> dict[str, str]:
    """What torchrun would set for process ``rank`` of a one-machine job, on loopback."""
    env = dict(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_WORLD_SIZE=str(WORLD),
               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    if "lo" in {name for _, name in socket.if_nameindex()}:
        env["GLOO_SOCKET_IFNAME"] = "lo"
    return env


# ------------------------------------------------- same loss and gradients as one process


def tiny_encoder(predictor: bool):
    from nacvae.models.heads import PretrainEncoder

    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(12, 24), nn.ReLU())
    return PretrainEncoder(backbone, 24, 6, predictor=predictor).double()


def fixed_batch():
    from nacvae.objectives import sample_channel_signs

    g = torch.Generator().manual_seed(5)
    x1 = torch.randn(BATCH, 3, 2, 2, generator=g, dtype=torch.float64)
    x2 = torch.randn(BATCH, 3, 2, 2, generator=g, dtype=torch.float64)
    signs = sample_channel_signs((2 * BATCH, 6), P, generator=g, dtype=torch.float64)  # view-1 rows first
    return x1, x2, signs


def local_part(rank: int, x1, x2, signs):
    rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
    return x1[rows], x2[rows], torch.cat([signs[:BATCH][rows], signs[BATCH:][rows]])


def nac_with_signs(method, x1, x2, signs):
    from nacvae.objectives import nac_loss

    _, (a1, a2), (l1, l2) = method._encode_pair(x1, x2, method.query_encoder)
    return nac_loss(a1, a2, l1, l2, P, signs=signs, gather=method.gather)


def grads(method):
    return {name: p.grad.detach().clone() for name, p in method.encoder.named_parameters()}


def equivalence_results(device) -> dict:
    from nacvae import distributed
    from nacvae.methods.moco import MoCo
    from nacvae.methods.nac import NAC
    from nacvae.methods.simclr import SimCLR
    from nacvae.train.methods import prepare_method

    rank = distributed.rank()
    x1, x2, signs = local_part(rank, *fixed_batch())
    results = {}

    nac = prepare_method(NAC(tiny_encoder(True), P), device, amp=False)
    loss = nac_with_signs(nac, x1, x2, signs)
    loss.backward()
    results["nac"] = distributed.all_reduce_sum(loss) / WORLD, grads(nac)

    # Control: negatives gathered without gradients must give other gradients.
    detached = prepare_method(NAC(tiny_encoder(True), P), device, amp=False)
    detached.gather = distributed.gather_no_grad
    nac_with_signs(detached, x1, x2, signs).backward()
    results["nac_detached"] = grads(detached)

    simclr = prepare_method(SimCLR(tiny_encoder(False)), device, amp=False)
    loss, _ = simclr.loss(x1, x2, None)
    loss.backward()
    results["simclr"] = distributed.all_reduce_sum(loss.detach()) / WORLD, grads(simclr)

    moco = prepare_method(MoCo(tiny_encoder(False), queue_size=32).double(), device, amp=False)
    moco.loss(x1, x2, None)
    results["moco_queue"] = moco.queue.keys.clone(), int(moco.queue.ptr)

    insdis = prepare_method(insdis_method(), device, amp=False)
    half = slice(rank * len(INSDIS_ROWS) // WORLD, (rank + 1) * len(INSDIS_ROWS) // WORLD)
    y1, y2 = insdis_batch()
    loss = insdis_step(insdis, y1[half], y2[half], INSDIS_ROWS[half])
    results["insdis"] = distributed.all_reduce_sum(loss) / WORLD, insdis.memory.clone()
    return results


# InsDis: dataset rows of a global batch of 4, split evenly between the ranks.
INSDIS_ROWS = torch.tensor([7, 2, 5, 1])


def insdis_method():
    from nacvae.methods.insdis import InsDis

    method = InsDis(tiny_encoder(False), negatives=0, seed=3)
    method.attach_dataset(torch.zeros(10, 3, 2, 2, dtype=torch.uint8), (0.5,) * 3, (0.25,) * 3)
    method.memory = method.memory.double()
    return method


def insdis_batch():
    g = torch.Generator().manual_seed(11)
    return tuple(torch.randn(len(INSDIS_ROWS), 3, 2, 2, generator=g, dtype=torch.float64) for _ in range(2))


def insdis_step(method, x1, x2, rows):
    method.begin_step(rows)
    loss, _ = method.loss(x1, x2, torch.Generator().manual_seed(0))
    loss.backward()
    method.after_step()
    return loss.detach()


OPTIONS = ["--epochs", "2", "--batch-size", "512", "--code-dim", "16", "--momentum", "--queue-size", "64",
           "--device", "cpu"]


def train_whole_cut_and_resume(root) -> None:
    """Through the CLI a whole run; a run interrupted during step 3 (snapshot kept); its resumption."""
    import shutil

    from nacvae.cli.main import cli
    from nacvae import distributed
    from nacvae.methods import nac as methods
    from nacvae.train.config import resolve_config
    from nacvae.train.pretrain import pretrain

    def nacvae(*args):
        cli.main(args=["pretrain", *args], prog_name="nacvae", standalone_mode=False)

    nacvae("--out", str(root / "whole"), "--quiet", *OPTIONS)

    real, calls = methods.NACMomentum.after_step, [0]

    def interrupt_at_step_3(self):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        real(self)

    methods.NACMomentum.after_step = interrupt_at_step_3
    cfg = resolve_config("digits", epochs=2, batch_size=512, code_dim=16, momentum=True, queue_size=64, device="cpu")
    try:
        pretrain(cfg, root / "cut", progress=False)
    except KeyboardInterrupt:
        pass
    methods.NACMomentum.after_step = real
    if distributed.is_main():
        shutil.copytree(root / "cut", root / "cut-before-resume")
    distributed.barrier()
    nacvae("--out", str(root / "cut"), "--resume", "--quiet")


def job_worker(rank: int, port: int, root) -> None:
    """One process of a torchrun-style two-process job on loopback."""
    import contextlib

    os.environ.update(launch_env(rank, port))
    torch.set_num_threads(1)
    from nacvae import distributed

    with distributed.process_group(torch.device("cpu")) as device:
        torch.save(equivalence_results(device), root / f"equivalence-{rank}.pt")
        with open(root / f"stdout-{rank}.txt", "w") as log, contextlib.redirect_stdout(log):
            train_whole_cut_and_resume(root)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Both processes are started once (their imports are the slow part) for all checks."""
    import torch.multiprocessing as mp

    root = tmp_path_factory.mktemp("job")
    mp.spawn(job_worker, args=(free_port(), root), nprocs=WORLD, join=True)
    return root


def test_two_processes_match_one_process_on_the_whole_batch(job):
    from nacvae.methods.moco import MoCo
    from nacvae.methods.nac import NAC
    from nacvae.methods.simclr import SimCLR

    ranks = [torch.load(job / f"equivalence-{r}.pt", weights_only=True) for r in range(WORLD)]
    x1, x2, signs = fixed_batch()

    nac = NAC(tiny_encoder(True), P)
    loss = nac_with_signs(nac, x1, x2, signs)
    loss.backward()
    simclr = SimCLR(tiny_encoder(False))
    simclr_loss, _ = simclr.loss(x1, x2, None)
    simclr_loss.backward()
    moco = MoCo(tiny_encoder(False), queue_size=32).double()
    moco.loss(x1, x2, None)
    keys = moco.queue.keys[:2 * BATCH]
    b = BATCH // WORLD  # the gathered queue holds each rank's (view-1, view-2) keys in rank order
    keys_in_rank_order = torch.cat([torch.cat([keys[r * b:(r + 1) * b], keys[BATCH + r * b:BATCH + (r + 1) * b]])
                                    for r in range(WORLD)])

    for got in ranks:
        torch.testing.assert_close(got["nac"][0], loss.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got["simclr"][0], simclr_loss.detach(), rtol=1e-12, atol=1e-12)
        for name, p in nac.encoder.named_parameters():
            torch.testing.assert_close(got["nac"][1][name], p.grad, rtol=1e-10, atol=1e-12)
        for name, p in simclr.encoder.named_parameters():
            torch.testing.assert_close(got["simclr"][1][name], p.grad, rtol=1e-10, atol=1e-12)
        weight = "projector.net.0.weight"
        assert not torch.allclose(got["nac_detached"][weight], dict(nac.encoder.named_parameters())[weight].grad)
        queue, ptr = got["moco_queue"]
        assert ptr == 2 * BATCH
        torch.testing.assert_close(queue[:2 * BATCH], keys_in_rank_order, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(queue[2 * BATCH:], moco.queue.keys[2 * BATCH:])


def test_torchrun_style_job_writes_once_and_resumes_exactly(job):
    from nacvae.checkpoint import load_checkpoint
    from nacvae.runs import CHECKPOINT, read_config, read_metrics

    logs = [(job / f"stdout-{r}.txt").read_text() for r in range(WORLD)]
    assert logs[0].count("Run folder:") == 2 and "Run folder:" not in logs[1]  # rank 0 reports

    whole = job / "whole"
    config = read_config(whole)
    assert config["status"] == "complete" and config["world_size"] == WORLD
    assert [r["step"] for r in read_metrics(whole)] == [2, 4]  # 1438 // 512 = 2 steps an epoch, each logged once
    assert len(os.listdir(whole / "tb")) == 1 and os.listdir(whole / "checkpoints") == ["last.pt"]
    expected = load_checkpoint(whole / CHECKPOINT)
    assert expected["complete"] and expected["step"] == 4

    before = job / "cut-before-resume"
    assert read_config(before)["status"] == "interrupted"
    assert load_checkpoint(before / CHECKPOINT)["step"] == 2
    cut = job / "cut"
    assert read_config(cut)["status"] == "complete"
    assert [r["step"] for r in read_metrics(cut)] == [2, 4]
    got = load_checkpoint(cut / CHECKPOINT)
    assert got["step"] == 4
    for key, value in expected["model"].items():
        assert torch.equal(value, got["model"][key]), key


def test_world_size_that_does_not_divide_the_batch_fails_in_one_sentence(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from nacvae.cli.main import cli

    out = tmp_path / "run"

    def launch(rank: str, world: str, *args: str):
        for name, value in dict(RANK=rank, LOCAL_RANK=rank, WORLD_SIZE=world).items():
            monkeypatch.setenv(name, value)
        return CliRunner().invoke(cli, ["pretrain", *args, "--quiet"], prog_name="nacvae")

    for rank in ("0", "1"):
        result = launch(rank, "3", "--out", str(out), "--batch-size", "128")
        assert result.exit_code == 2, result.output
        if rank == "0":
            message = [line for line in result.stderr.splitlines() if line.strip()]
            assert message == ["Error: --batch-size 128 is the batch over all 3 processes and must be a multiple of 3."]
        else:
            assert result.stderr.strip() == ""  # the other ranks leave the report to rank 0
    sync_bn_on_cpu = launch("0", "2", "--out", str(out), "--batch-size", "128", "--sync-bn", "--device", "cpu")
    assert sync_bn_on_cpu.exit_code == 2 and "--sync-bn needs CUDA" in sync_bn_on_cpu.stderr
    no_out = launch("0", "2", "--batch-size", "128")
    assert no_out.exit_code == 2 and "pass --out" in no_out.stderr
    assert not out.exists()


def test_insdis_banks_stay_identical_and_equal_to_one_process_on_the_whole_batch(job):
    ranks = [torch.load(job / f"equivalence-{r}.pt")["insdis"] for r in range(WORLD)]
    single = insdis_method()
    before = single.memory.clone()
    loss = insdis_step(single, *insdis_batch(), INSDIS_ROWS)
    assert not torch.equal(single.memory, before)
    for got_loss, got_bank in ranks:
        assert torch.equal(got_bank, ranks[0][1])  # every process holds the same bank
        assert torch.allclose(got_bank, single.memory, atol=1e-12)
        assert torch.allclose(got_loss, loss, rtol=1e-10)
