"""The dependency rule between packages (docs/architecture.md), as import-linter checks it.

The contracts live in pyproject.toml: the operations side of ``jobs`` uses the engine
and never the other way round, the apps use only the engine's API, ``files`` uses
``tablos`` and never the other way round, and no package or module imports another
that imports it back (imports inside functions count too). Imports inside functions
are only where docs/architecture.md lists them. And one module,
``jobs.engine.transitions``, writes the queue's ``jobs.Job`` rows.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
         "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip


def test_the_code_keeps_the_dependency_rule() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _copy_of_the_code(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    for name in ("config", "accounts", "tablos", "files", "jobs"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def test_the_engine_importing_the_operations_side_breaks_the_rule(tmp_path: Path) -> None:
    copy = _copy_of_the_code(tmp_path)
    backend = copy / "jobs" / "engine" / "backend.py"
    backend.write_text(backend.read_text() + "\n\ndef probe():\n    from jobs import health\n")
    result = _lint_imports(copy)
    assert result.returncode == 1
    assert "jobs.engine.backend -> jobs.health" in result.stdout


def test_a_cycle_hidden_in_a_function_breaks_the_rule(tmp_path: Path) -> None:
    copy = _copy_of_the_code(tmp_path)
    results = copy / "jobs" / "engine" / "results.py"
    results.write_text(
        results.read_text() + "\n\ndef probe():\n    from jobs.engine import transitions\n"
    )
    result = _lint_imports(copy)
    assert result.returncode == 1
    assert "No import cycles, function-level imports included BROKEN" in result.stdout


def test_the_operations_importing_an_engine_internal_breaks_the_rule(tmp_path: Path) -> None:
    copy = _copy_of_the_code(tmp_path)
    health = copy / "jobs" / "health.py"
    health.write_text(health.read_text() + "\n\nfrom jobs.engine import transitions  # noqa\n")
    result = _lint_imports(copy)
    assert result.returncode == 1
    assert "jobs.health -> jobs.engine.transitions" in result.stdout


def test_tablos_importing_files_breaks_the_rule(tmp_path: Path) -> None:
    copy = _copy_of_the_code(tmp_path)
    views = copy / "tablos" / "views.py"
    views.write_text(views.read_text() + "\n\ndef probe():\n    from files import selectors\n")
    result = _lint_imports(copy)
    assert result.returncode == 1
    assert "tablos.views -> files.selectors" in result.stdout


def _function_level_imports() -> set[tuple[str, str]]:
    """(module path, qualified function) of every import inside a function, in the code."""
    found = set()

    def visit(node: ast.AST, path: str, scope: list[str], in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom) and in_function:
                found.add((path, ".".join(scope)))
            is_function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if is_function or isinstance(child, ast.ClassDef):
                visit(child, path, [*scope, child.name], in_function or is_function)
            else:
                visit(child, path, scope, in_function)

    for package in ("config", "accounts", "tablos", "files", "jobs"):
        for file in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in file.parts:
                path = file.relative_to(ROOT).as_posix()
                visit(ast.parse(file.read_text(), path), path, [], in_function=False)
    return found


def _documented_function_level_imports() -> set[tuple[str, str]]:
    text = (ROOT / "docs/architecture.md").read_text()
    return set(re.findall(r"^\| `([\w/]+\.py)` \| `([\w.]+)` \|", text, flags=re.M))


def test_function_level_imports_are_only_where_docs_architecture_lists_them() -> None:
    documented = _documented_function_level_imports()
    assert documented  # the table is there and read
    found = _function_level_imports()
    assert not found - documented, "import at the module's top, or list it in the table"
    assert not documented - found, "a listed function-level import is gone: drop its row"


_JOB_MODELS = {"Job", "FailedJob", "QueuedJob"}
_WRITES = {
    "update", "delete", "create", "bulk_create", "bulk_update", "get_or_create",
    "update_or_create", "select_for_update", "save",
}  # fmt: skip


def _job_writes(source: str) -> list[int]:
    """Lines of ``source`` that write ``jobs.Job`` rows through the ORM or name its table."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _WRITES
            and any(
                isinstance(inner, ast.Name) and inner.id in _JOB_MODELS
                for inner in ast.walk(node.func.value)
            )
        ):
            lines.append(node.lineno)
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "db_table"
            and isinstance(node.value, ast.Attribute)
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id in _JOB_MODELS
        ):
            lines.append(node.lineno)
    return lines


def test_only_the_transitions_module_writes_job_rows() -> None:
    root = ROOT / "jobs"
    owner = root / "engine" / "transitions.py"
    writers = {
        str(path.relative_to(root.parent)): found
        for path in sorted(root.rglob("*.py"))
        if "migrations" not in path.parts and path != owner
        if (found := _job_writes(path.read_text()))
    }
    assert writers == {}
    assert _job_writes(owner.read_text())  # the scan sees the writes where they are


def test_the_scan_finds_a_write_outside_the_transitions_module() -> None:
    source = "from jobs.models import Job\nJob.objects.filter(id=1).update(state='dead')\n"
    assert _job_writes(source) == [2]
    assert _job_writes("f'DELETE FROM {Job._meta.db_table}'") == [1]
