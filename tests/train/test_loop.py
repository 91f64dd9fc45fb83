"""The pieces both training loops share."""

import pytest
import torch
from torch import nn

from nacvae.seeds import SHUFFLE_STREAM, step_seed
from nacvae.train.loop import EpochOrder, RunCheckpoint, Window, is_log_step, steps


def test_epoch_order_slices_each_epoch_s_seeded_permutation():
    order = EpochOrder(10, seed=3, device=torch.device("cpu"), steps_per_epoch=3, batch_size=3)
    for epoch in (0, 1):
        perm = torch.randperm(10, generator=torch.Generator().manual_seed(step_seed(3, epoch, stream=SHUFFLE_STREAM)))
        got = torch.cat([order.rows(epoch * 3 + i) for i in range(3)])
        assert torch.equal(got, perm[:9])  # the last incomplete batch is dropped
    # A process's share: its offset into the step's batch.
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(step_seed(3, 0, stream=SHUFFLE_STREAM)))
    assert torch.equal(order.rows(1, offset=1, size=2), perm[4:6])


def test_window_sums_on_the_device_and_remembers_a_non_finite_loss():
    window = Window(2, torch.device("cpu"), torch.float64)
    window.add(torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor(1.0))
    window.add(torch.tensor([3.0, 4.0], dtype=torch.float64), torch.tensor(float("nan")))
    assert window.steps == 2 and window.sums.tolist() == [4.0, 6.0] and not bool(window.finite)
    assert window.images_per_s(8) > 0
    window.reset()
    assert window.steps == 0 and window.sums.tolist() == [0.0, 0.0]


def test_run_checkpoint_saves_the_state_and_names_the_last_good_step(tmp_path):
    from nacvae.checkpoint import load_checkpoint

    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ckpt = RunCheckpoint(tmp_path / "checkpoints" / "last.pt", "vae", {"arch": "x"}, {"lr": 0.1}, model,
                         optimizer=optimizer)
    assert "nothing kept" in str(ckpt.non_finite(3, "nothing kept"))
    ckpt.save(2)
    saved = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert saved["step"] == 2 and "optimizer" in saved and torch.equal(saved["model"]["weight"], model.weight)
    assert "(step 2) is kept" in str(ckpt.non_finite(5, "nothing kept"))


def test_log_steps_and_the_steps_left(monkeypatch):
    from nacvae import interrupts

    assert [d for d in range(1, 11) if is_log_step(d, 10, log_every=4, checkpoint_every=5)] == [4, 5, 8, 10]
    assert list(steps(3, 6)) == [3, 4, 5]
    monkeypatch.setattr(interrupts, "_pending", True)  # a Ctrl-C swallowed during start-up
    with pytest.raises(KeyboardInterrupt):
        next(steps(0, 1))
