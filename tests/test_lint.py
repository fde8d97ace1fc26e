"""House habits: the code passes ``ruff check`` and ``ruff format --check`` (configuration in pyproject.toml).

Both run over the whole repository (package, tests, tools, benchmarks, the notebooks' jupytext sources),
so CI fails on a lint error or an unformatted file. ``ruff`` comes with the ``dev`` extra.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = shutil.which("ruff")
    if exe:
        return [exe]
    pytest.importorskip("ruff", reason="the lint tests need ruff: pip install -e '.[dev]'")
    return [sys.executable, "-m", "ruff"]


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["check", "format"])
def test_ruff(args):
    proc = subprocess.run([*_ruff(), *args], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, f"ruff {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


def test_ruff_catches_a_planted_fault(tmp_path):
    """The configuration is live: an unused import in a file under the same settings is reported."""
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "bad.py").write_text("import os\n")
    proc = subprocess.run([*_ruff(), "check", "bad.py"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1 and "F401" in proc.stdout
