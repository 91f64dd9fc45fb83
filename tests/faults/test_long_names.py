"""A folder or file name longer than the file system allows (255 bytes on most): one
sentence and exit code 2 from every command, and nothing left behind."""

import errno
import os

import pytest

from nacvae.files import storage_error
from tests.clitools import assert_clean_failure, nacvae
from tests.faults.conftest import PRETRAIN_TINY

LONG = "x" * 300


@pytest.mark.parametrize("parent_exists", [True, False])
def test_pretrain_refuses_a_long_run_folder_name(tmp_path, parent_exists):
    runs = tmp_path / "runs"
    if parent_exists:
        runs.mkdir()
    result = nacvae("pretrain", "--steps", "3", "--out", runs / LONG, *PRETRAIN_TINY[2:])
    assert_clean_failure(result, "has 300 bytes, more than the")
    assert sorted(tmp_path.iterdir()) == ([runs] if parent_exists else [])
    if parent_exists:
        assert not list(runs.iterdir())


def test_vae_and_reproduce_refuse_a_long_name(tmp_path):
    assert_clean_failure(nacvae("vae", "--init", "random", "--steps", "2", "--out", tmp_path / LONG), "has 300 bytes")
    assert_clean_failure(nacvae("reproduce", "--out", tmp_path / LONG / "study"), "has 300 bytes")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("where", ["name", "folder"])
def test_export_refuses_a_long_name(tmp_path, pretrain_run, where):
    out = tmp_path / LONG if where == "name" else tmp_path / LONG / "backbone.pt"
    assert_clean_failure(nacvae("export", "--run", pretrain_run, "--out", out), "has 300 bytes")
    assert not list(tmp_path.iterdir())


def test_a_long_name_read_anywhere_is_one_sentence(tmp_path):
    # Paths that are only read (a run to export or evaluate) meet ENAMETOOLONG in pathlib.
    assert_clean_failure(nacvae("export", "--run", tmp_path / LONG, "--out", tmp_path / "b.pt"),
                         "is longer than the file system allows")
    assert_clean_failure(nacvae("eval", "linear", "--run", tmp_path / LONG), "is longer than the file system allows")
    assert not list(tmp_path.iterdir())


def test_storage_error_names_a_long_path():
    exc = OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), "runs/" + LONG)
    message = str(storage_error(exc, exc.filename))
    assert message == f"runs/{LONG} cannot be used: a folder or file name in it is longer than the file system allows."
    assert storage_error(exc, None).errno == errno.ENAMETOOLONG
