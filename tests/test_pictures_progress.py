"""TensorBoard grids keep images apart; progress bars only where they belong."""

import io

import torch

from nacvae import progress
from nacvae.train.pictures import PAD, PAD_VALUE, image_grid, view_pairs


def test_grid_pads_between_images():
    images = torch.zeros(16, 1, 8, 8)
    images[1::2] = 1.0
    grid = image_grid(images, per_row=8)
    assert grid.shape == (3, 2 * 8 + 3 * PAD, 8 * 8 + 9 * PAD)  # make_grid gives 3 channels for 1
    # Column PAD + 8 lies between the first two images: border, not image.
    border_col = grid[0, :, PAD + 8 : 2 * PAD + 8]
    assert torch.all(border_col == PAD_VALUE)
    # Each image is intact: the first black, the second white.
    assert torch.all(grid[:, PAD : PAD + 8, PAD : PAD + 8] == 0)
    assert torch.all(grid[:, PAD : PAD + 8, 2 * PAD + 8 : 2 * PAD + 16] == 1)


def test_view_pairs_undo_the_normalisation():
    raw = torch.rand(4, 3, 6, 6)
    mean, std = (0.2, 0.4, 0.6), (0.5, 0.25, 0.1)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    grid = view_pairs((raw - m) / s, ((1 - raw) - m) / s, mean, std, count=4)
    assert grid.shape == (3, 2 * 6 + 3 * PAD, 4 * 6 + 5 * PAD)
    torch.testing.assert_close(grid[:, PAD : PAD + 6, PAD : PAD + 6], raw[0])
    torch.testing.assert_close(grid[:, 2 * PAD + 6 : 2 * PAD + 12, PAD : PAD + 6], 1 - raw[0])


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_bars_only_when_enabled_and_on_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert not progress.shown()  # off by default: the Python API prints nothing
    with progress.progress_bars(True):
        assert progress.shown()
        assert list(progress.bar(range(3), desc="x")) == [0, 1, 2]
        with progress.progress_bars(False):
            assert not progress.shown()
    assert "x:   0%" in __import__("sys").stderr.getvalue()  # drawn (and cleared when done)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal: a log or a pipe
    with progress.progress_bars(True):
        assert not progress.shown()
        assert list(progress.bar(range(2))) == [0, 1]
    assert __import__("sys").stderr.getvalue() == ""


def test_pretraining_logs_its_views_and_input(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from nacvae.data.sources import channel_stats
    from nacvae.runs import read_config
    from nacvae.train.config import resolve_config
    from nacvae.train.pretrain import pretrain

    cfg = resolve_config("digits", steps=2, warmup_steps=1, batch_size=64, code_dim=8)
    run = pretrain(cfg, tmp_path / "run", progress=False)
    events = EventAccumulator(str(run / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert "images/views" in events.Tags()["images"]
    picture = events.Images("images/views")[-1]
    assert (picture.height, picture.width) == (2 * 8 + 3 * PAD, 8 * 8 + 9 * PAD)
    mean, std = channel_stats("digits")
    assert read_config(run)["input"] == {"channels": 1, "image_size": 8, "mean": list(mean), "std": list(std)}
