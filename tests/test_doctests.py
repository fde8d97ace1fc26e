"""The ``>>>`` examples in the package's docstrings run, and print what they say they print.

Every module under ``nequip_np/`` whose source holds a ``>>>`` line is imported and its docstrings are
run with :mod:`doctest` (``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``), one test per module. A module
that needs an optional extra which is not installed (its import raises ImportError naming a module
outside ``nequip_np``) is skipped with the reason. The same runs from the command line:
``python -m pytest -q tests/test_doctests.py``. The last test runs the checker on a planted wrong
example to show it can fail.
"""
from __future__ import annotations

import doctest
import importlib
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def modules_with_examples(root: Path, package: str) -> list[str]:
    """Dotted names of the modules of ``package`` with a ``>>>`` line in their source."""
    names = []
    for path in sorted((root / package).rglob("*.py")):
        if any(line.lstrip().startswith(">>>") for line in path.read_text(encoding="utf-8").splitlines()):
            parts = list(path.relative_to(root).with_suffix("").parts)
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def run_examples(module) -> tuple[int, int, str]:
    """``(failed, attempted, report)`` of the docstring examples defined in ``module``."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = []
    for test in finder.find(module, module.__name__):
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    return result.failed, result.attempted, "".join(report)


MODULES = modules_with_examples(ROOT, "nequip_np")


def test_the_package_has_examples():
    assert len(MODULES) >= 10, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        if missing.split(".")[0] in ("", "nequip_np"):
            raise
        pytest.skip(f"{name} needs the optional module {missing!r}")
    failed, attempted, report = run_examples(module)
    assert failed == 0, report
    if "# doctest: +SKIP" not in Path(module.__file__).read_text(encoding="utf-8"):
        assert attempted > 0, f"{name} has '>>>' lines but doctest ran none (not in a docstring?)"


def test_a_wrong_example_fails(tmp_path, monkeypatch):
    (tmp_path / "planted_examples.py").write_text(textwrap.dedent('''
        def double(x):
            """Twice ``x``.

            >>> double(2)
            4
            >>> double(3)
            7
            """
            return 2 * x
    '''), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("planted_examples")
    try:
        failed, attempted, report = run_examples(module)
    finally:
        sys.modules.pop("planted_examples", None)
    assert (failed, attempted) == (1, 2)
    assert "Expected:\n    7\nGot:\n    6" in report
    assert modules_with_examples(tmp_path.parent, tmp_path.name) == [f"{tmp_path.name}.planted_examples"]
