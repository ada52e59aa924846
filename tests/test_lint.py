"""ruff finds nothing in the package, the tests and the benchmarks (the rules: pyproject.toml's [tool.ruff])."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    """ruff comes with the `test` extra (pip install -e '.[test]')."""
    command = [sys.executable, "-m", "ruff", "check", "--no-cache", "codelutra", "tests", "benchmarks"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
