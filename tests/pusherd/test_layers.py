"""Layer rules: imports in pusherd point one way, and the core stays pure (import-linter).

The contracts live in pyproject.toml (``[tool.importlinter]``). The second test breaks a
copy of the package on purpose, so the check is shown to catch a violation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=120,
    )


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "pusherd", tree / "pusherd",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_every_layer_contract_is_kept(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_an_import_from_the_core_up_into_the_server_breaks_the_contract(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    ids = tree / "pusherd" / "core" / "ids.py"
    ids.write_text(ids.read_text() + "\nimport pusherd.server.state  # noqa\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "pusherd.core.ids -> pusherd.server.state" in result.stdout
