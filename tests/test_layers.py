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


def test_no_import_cycle_even_through_imports_inside_functions():
    """grimp reads every import statement, those kept inside functions included."""
    import grimp

    graph = grimp.build_graph("nacvae")
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        seen[module] = 1
        for other in edges[module]:
            if seen.get(other) == 1:
                return path + [module, other]
            if other not in seen:
                cycle = visit(other, path + [module])
                if cycle:
                    return cycle
        seen[module] = 2
        return None

    for module in sorted(edges):
        if module not in seen:
            cycle = visit(module, [])
            assert cycle is None, " -> ".join(cycle)


def test_training_does_not_load_numba():
    """numba's threading runtime changes torch's CPU results in multi-process training
    (tests/train/test_distributed.py's resumed job): the training modules leave it out."""
    import sys

    code = "import sys, nacvae.train.pretrain, nacvae.train.vae; print('numba' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
