"""The package's layers only point down (.importlinter), and nothing in it imports the
command line but its entry point."""

import ast
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_lint_imports_passes():
    assert shutil.which("lint-imports"), "import-linter is a test dependency: pip install -e '.[test]'"
    result = subprocess.run(["lint-imports", "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_no_module_of_the_package_imports_the_command_line():
    offenders = []
    for path in (ROOT / "nacvae").rglob("*.py"):
        if path.name == "__main__.py" or "cli" in path.relative_to(ROOT / "nacvae").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.startswith("nacvae.cli")]
    assert not offenders
