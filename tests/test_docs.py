"""Runs every command block of README.md and docs/*.md that is marked runnable.

A block is runnable when the line before its opening fence is ``<!-- runnable -->``. Its
lines run in order, in one fresh folder per file, through the click application in this
process (``nacvae ...`` only; comments and blank lines are skipped), and each must succeed.
"""

import re
import shlex
from pathlib import Path

import pytest

from tests.clitools import nacvae

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- runnable -->"
BLOCK = re.compile(re.escape(MARK) + r"\s*\n```(?:bash|sh|console)?\n(.*?)```", re.S)


def runnable_blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text())


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def commands(block: str) -> list[list[str]]:
    lines = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        assert words[0] == "nacvae", f"runnable blocks hold nacvae commands only, not: {line}"
        lines.append(words[1:])
    return lines


def test_every_mark_is_followed_by_a_block():
    for path in documents():
        assert path.read_text().count(MARK) == len(runnable_blocks(path)), path


def test_there_is_something_to_run():
    assert sum(len(runnable_blocks(p)) for p in documents()) >= 1


@pytest.mark.parametrize("path", [p for p in documents() if runnable_blocks(p)], ids=lambda p: p.name)
def test_runnable_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NACVAE_RUNS", raising=False)
    for block in runnable_blocks(path):
        for args in commands(block):
            result = nacvae(*args)
            assert result.exit_code == 0, f"{path.name}: nacvae {' '.join(args)}\n{result.output}"
