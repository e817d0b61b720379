"""House rule 1: ``pusherd/core`` is Sans-I/O.

It imports no event loop, network, clock, randomness or environment: every module of the
core, and every pusherd module the core imports, is parsed (not imported) and its imports
checked, including imports nested in functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "pusherd"
CORE = PACKAGE_ROOT / "core"
FORBIDDEN = frozenset({
    "asyncio", "redis", "starlette", "uvicorn", "websockets", "httptools", "socket", "time",
    "random", "os", "uvloop", "selectors", "threading", "subprocess", "secrets", "datetime",
})


def _imports(path: Path) -> set[str]:
    """Every module name `path` imports (absolute names; relative ones resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    if path.is_relative_to(PACKAGE_ROOT):
        package = ".".join(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts[:-1])
    else:
        package = "pusherd.core"
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            # "from pusherd.core import auth" imports the submodule pusherd.core.auth.
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
        ):
            names.add("__import__")
    return names


def _module_path(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != "pusherd":
        return None
    candidate = PACKAGE_ROOT.parent.joinpath(*parts)
    if candidate.with_suffix(".py").is_file():
        return candidate.with_suffix(".py")
    if (candidate / "__init__.py").is_file():
        return candidate / "__init__.py"
    return None


def _core_closure() -> dict[Path, set[str]]:
    """The core's modules and every pusherd module they import, transitively."""
    pending = sorted(CORE.glob("*.py"))
    seen: dict[Path, set[str]] = {}
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen[path] = _imports(path)
        for name in seen[path]:
            found = _module_path(name)
            if found is not None and found not in seen:
                pending.append(found)
    return seen


CLOSURE = _core_closure()


def test_the_core_package_has_modules_to_check() -> None:
    names = {p.name for p in CORE.glob("*.py")}
    assert {"auth.py", "channels.py", "messages.py", "state.py", "session.py",
            "api.py"} <= names


@pytest.mark.parametrize("path", sorted(CLOSURE), ids=lambda p: str(p.relative_to(PACKAGE_ROOT)))
def test_core_modules_import_nothing_that_does_io_or_reads_a_clock(path: Path) -> None:
    bad = sorted(
        name for name in CLOSURE[path]
        if name == "__import__" or name.split(".")[0] in FORBIDDEN
        or name in ("importlib", "importlib.import_module")
    )
    assert bad == [], f"{path.relative_to(PACKAGE_ROOT)} imports {bad}"


def test_the_core_does_not_import_the_server_adapters_or_cli() -> None:
    for path, names in CLOSURE.items():
        outward = sorted(
            n for n in names
            if n.startswith(("pusherd.server", "pusherd.adapters", "pusherd.cli",
                             "pusherd.config", "pusherd.webhooks", "pusherd.metrics"))
        )
        assert outward == [], f"{path.relative_to(PACKAGE_ROOT)} imports {outward}"


def test_the_import_checker_sees_nested_and_relative_imports(tmp_path: Path) -> None:
    # Guard against a checker that silently finds nothing.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    import time\n    from os import path\n    from . import ids\n"
        "    __import__('socket')\n"
    )
    names = _imports(probe)
    assert {"time", "os", "pusherd.core.ids", "__import__"} <= names
    auth_imports = _imports(CORE / "auth.py")
    assert "hmac" in auth_imports and "hashlib" in auth_imports
