"""The code passes its static checks: mypy --strict (pyproject) and ruff, as CI runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_mypy_strict_passes_on_pusherd_and_attendance_api() -> None:
    result = _run("mypy", "--no-incremental")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Success: no issues found" in result.stdout


def test_ruff_passes_on_pusherd() -> None:
    result = _run("ruff", "check", "pusherd")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
