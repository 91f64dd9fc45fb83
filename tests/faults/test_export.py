"""``nacvae export``: an unwritable folder, a damaged checkpoint, an existing file."""

import errno
import os

import torch

from nacvae import files
from nacvae.runs import CHECKPOINT
from tests.clitools import assert_clean_failure, nacvae
from tests.faults.conftest import no_temporary_files


def test_an_unwritable_folder(tmp_path, pretrain_run, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: refuse as the kernel would for a user
        def refuse(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        monkeypatch.setattr(files, "_create_temp", refuse)
    else:
        folder.chmod(0o555)
    result = nacvae("export", "--run", pretrain_run, "--out", folder / "b.pt")
    folder.chmod(0o755)
    assert_clean_failure(result, f"{folder / 'b.pt'} could not be written: {folder} is not writable")
    assert list(folder.iterdir()) == []


def test_a_checkpoint_with_a_wrong_shape_is_not_exported(tmp_path, pretrain_run, copy_run):
    run = copy_run(pretrain_run)
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if k.startswith("encoder.backbone.") and v.dim() == 4)
    ckpt["model"][name] = torch.zeros(2, 2)
    torch.save(ckpt, run / CHECKPOINT)
    out = tmp_path / "b.pt"
    assert_clean_failure(nacvae("export", "--run", run, "--out", out), "so it was not exported")
    assert not out.exists() and no_temporary_files(tmp_path)


def test_an_existing_file_is_replaced_only_with_force(tmp_path, pretrain_run):
    out = tmp_path / "b.pt"
    out.write_bytes(b"precious")
    assert_clean_failure(nacvae("export", "--run", pretrain_run, "--out", out), "already exists; pass --force")
    assert out.read_bytes() == b"precious"
    result = nacvae("export", "--run", pretrain_run, "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert all(isinstance(v, torch.Tensor) for v in torch.load(out, weights_only=True).values())
