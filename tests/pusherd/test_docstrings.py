"""Every public class and function of pusherd states its contract in a docstring."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pusherd"


def _undocumented(path: Path) -> list[str]:
    """``line name`` of each public class, function or method without a docstring."""
    missing: list[str] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if child.name.startswith("_"):
                    continue
                if ast.get_docstring(child) is None:
                    missing.append(f"{child.lineno} {prefix}{child.name}")
                if isinstance(child, ast.ClassDef):
                    walk(child, f"{prefix}{child.name}.")

    walk(ast.parse(path.read_text()), "")
    return missing


def test_every_public_class_and_function_has_a_docstring() -> None:
    missing = [f"{path.relative_to(PACKAGE.parent)}:{entry}"
               for path in sorted(PACKAGE.rglob("*.py")) for entry in _undocumented(path)]
    assert missing == []


def test_the_check_finds_undocumented_public_names_only(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        'def public():\n    return 1\n\n\ndef _private():\n    return 2\n\n\n'
        'class Shown:\n    """Documented."""\n\n    def method(self):\n        return 3\n'
    )
    assert _undocumented(source) == ["1 public", "12 Shown.method"]
