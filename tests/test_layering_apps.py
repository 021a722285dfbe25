"""files depends on tablos (a file belongs to a tablo); tablos never depends on files.

Every module under tablos/ is parsed, so imports inside functions count too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = "files"
DYNAMIC_IMPORTS = {"import_module", "__import__"}


def _is_forbidden(module: str) -> bool:
    return module == FORBIDDEN or module.startswith(f"{FORBIDDEN}.")


def _resolve(package: str, level: int, module: str | None) -> str:
    """The absolute module of ``from <level dots><module> import ...`` in ``package``."""
    if level == 0:
        return module or ""
    parts = package.split(".")
    base = parts[: len(parts) - (level - 1)] if level > 1 else parts
    return ".".join([*base, module] if module else base)


def forbidden_imports(source: str, *, package: str) -> list[str]:
    """The imports of ``files`` in ``source``, a module of ``package``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_forbidden(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(package, node.level, node.module)
            # "from . import files" names a module in the imported names.
            candidates = [base] + [f"{base}.{a.name}" if base else a.name for a in node.names]
            found += [name for name in candidates if _is_forbidden(name)][:1]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0] if node.args else None
            if (
                name in DYNAMIC_IMPORTS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and _is_forbidden(first.value)
            ):
                found.append(first.value)
    return found


def _tablos_modules() -> list[Path]:
    return sorted((ROOT / "tablos").rglob("*.py"))


def test_tablos_never_imports_files():
    offenders = {}
    for path in _tablos_modules():
        package = ".".join(path.relative_to(ROOT).parent.parts)
        if found := forbidden_imports(path.read_text(encoding="utf-8"), package=package):
            offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}


def test_tablos_templates_link_no_files_urls():
    pattern = re.compile(r"""{%\s*url\s+['"]files:""")
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "tablos").rglob("*.html"))
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_walk_covers_tablos():
    names = {path.name for path in _tablos_modules()}
    assert {"admin.py", "urls.py", "views.py", "selectors.py", "services.py"} <= names


@pytest.mark.parametrize(
    ("source", "package"),
    [
        ("import files", "tablos"),
        ("import files.models as m", "tablos"),
        ("from files import selectors", "tablos"),
        ("from files.forms import UploadForm", "tablos"),
        ("def view():\n    from files.models import TabloFile\n", "tablos"),
        ("class A:\n    def f(self):\n        import files.views\n", "tablos"),
        ("from .. import files", "tablos"),
        ("from ..files import views", "tablos"),
        ("from ...files.models import TabloFile", "tablos.migrations"),
        ("import importlib\nimportlib.import_module('files.views')", "tablos"),
        ("__import__('files')", "tablos"),
    ],
)
def test_the_check_catches(source, package):
    assert forbidden_imports(source, package=package)


@pytest.mark.parametrize(
    ("source", "package"),
    [
        ("import filesystem", "tablos"),
        ("from tablos import files", "tablos"),  # a (hypothetical) tablos.files module
        ("from . import files", "tablos"),
        ("from .models import Tablo", "tablos"),
        ("from django.core.files.storage import default_storage", "tablos"),
    ],
)
def test_the_check_allows(source, package):
    assert forbidden_imports(source, package=package) == []
