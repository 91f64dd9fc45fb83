"""A read-only install and HOME: numba cannot cache the Hamming kernel where it usually does.

As root every folder is writable, so the test makes numba's own check of a cache folder
refuse every folder but nacvae's temporary one (what it meets when it can write neither the
package's __pycache__ nor HOME), with HOME and NUMBA_CACHE_DIR pointing at a file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nacvae.eval import hamming_kernel
from tests.faults.conftest import ROOT

pytestmark = pytest.mark.skipif(not hamming_kernel.available(), reason="numba is not installed")

# argv[1]: "temp" (the temporary folder is writable) or "nowhere" (no folder is).
DRIVER = """
import json, os, sys
import numba.core.caching as caching

real = caching._CacheLocator.ensure_cache_path

def ensure_cache_path(self):
    if sys.argv[1] == "nowhere" or "nacvae-numba-" not in self.get_cache_path():
        raise PermissionError(13, "Permission denied", self.get_cache_path())
    real(self)

caching._CacheLocator.ensure_cache_path = ensure_cache_path
import torch
from nacvae.eval.retrieval import mean_average_precision
from nacvae.eval import hamming_kernel

g = torch.Generator().manual_seed(5)
q, gal = torch.rand(40, 24, generator=g) > 0.5, torch.rand(300, 24, generator=g) > 0.5
ql, gl = torch.randint(0, 4, (40,), generator=g), torch.randint(0, 4, (300,), generator=g)
cache = getattr(hamming_kernel._kernel._cache, "_cache_path", None)
print(json.dumps([mean_average_precision(q, ql, gal, gl, backend=b) for b in ("numba", "numpy")] + [cache]))
"""


def run_driver(tmp_path, where: str) -> subprocess.CompletedProcess:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "XDG_CACHE_HOME"}
    env.update(HOME=str(not_a_folder), NUMBA_CACHE_DIR=str(not_a_folder), TMPDIR=str(tmp_path / "tmp"),
               OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", DRIVER, where], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)


@pytest.mark.parametrize("where", ["temp", "nowhere"])
def test_kernel_works_and_agrees_without_a_writable_cache(tmp_path, where):
    result = run_driver(tmp_path, where)
    assert result.returncode == 0, result.stderr
    kernel, numpy, cache = json.loads(result.stdout.splitlines()[-1])
    assert kernel == pytest.approx(numpy, rel=1e-12) and 0 < kernel < 1
    if where == "temp":
        assert cache.startswith(os.path.join(tmp_path, "tmp", f"nacvae-numba-{os.getuid()}", ""))
        assert any(name.endswith(".nbi") for name in os.listdir(cache))  # the index was written
    else:
        assert cache is None


def test_a_temporary_folder_of_someone_else_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setattr(hamming_kernel.tempfile, "gettempdir", lambda: str(tmp_path))
    theirs = tmp_path / f"nacvae-numba-{os.getuid()}"
    theirs.mkdir(mode=0o777)
    theirs.chmod(0o777)  # writable by anyone: they could plant a cache
    chosen = hamming_kernel._private_temp_dir()
    assert chosen is not None and chosen != str(theirs) and os.path.dirname(chosen) == str(tmp_path)
    assert os.stat(chosen).st_mode & 0o077 == 0


def test_without_any_cache_folder_the_function_compiles_without_cache(monkeypatch):
    import numba.core.caching as caching

    def refuse(self):
        raise PermissionError(13, "Permission denied", self.get_cache_path())

    monkeypatch.setattr(caching._CacheLocator, "ensure_cache_path", refuse)
    monkeypatch.setattr(hamming_kernel, "_private_temp_dir", lambda: None)
    monkeypatch.setenv("HOME", "/nonexistent")

    def double(x):
        return 2 * x

    compiled = hamming_kernel._jit(double)
    assert compiled(21) == 42
    assert type(compiled._cache).__name__ == "NullCache"
