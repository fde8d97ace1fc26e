"""The ``>>>`` examples in the package's docstrings run, and print what they say they print.

Every module under ``nequip_np/`` whose source holds a ``>>>`` line is imported and its docstrings are
run with :mod:`doctest` (``ELLIPSIS`` and ``NORMALIZE_WHITESPACE``), one test per module; every
``>>>`` line must belong to an example doctest sees (not a comment, not the docstring of a compiled
Numba function). A module that needs an optional extra which is not installed (its import raises
ImportError naming a module outside ``nequip_np``) is skipped with the reason. The last test runs the
checker on a planted wrong example to show it can fail.
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


def run_examples(module) -> tuple[int, int, int, str]:
    """``(failed, attempted, found, report)`` of the docstring examples defined in ``module``.

    ``found`` counts every example doctest sees (skipped ones included), to compare with the ``>>>``
    lines of the source: an example doctest cannot see (in a comment, or the docstring of a compiled
    Numba function) would otherwise never run.
    """
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report, found = [], 0
    for test in finder.find(module, module.__name__):
        found += len(test.examples)
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    return result.failed, result.attempted, found, "".join(report)


def example_lines(path: Path) -> int:
    return sum(line.lstrip().startswith(">>>") for line in path.read_text(encoding="utf-8").splitlines())


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
    failed, _, found, report = run_examples(module)
    assert failed == 0, report
    lines = example_lines(Path(module.__file__))
    assert found == lines, f"{name}: {lines - found} '>>>' lines are in no docstring that doctest sees"


def test_a_wrong_example_fails(tmp_path, monkeypatch):
    (tmp_path / "planted_examples.py").write_text(
        textwrap.dedent('''
        def double(x):
            """Twice ``x``.

            >>> double(2)
            4
            >>> double(3)
            7
            """
            return 2 * x

        NOT_A_DOCSTRING = """
        >>> double(4)
        8
        """
    '''),
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("planted_examples")
    try:
        failed, attempted, found, report = run_examples(module)
    finally:
        sys.modules.pop("planted_examples", None)
    assert (failed, attempted, found) == (1, 2, 2)
    assert example_lines(tmp_path / "planted_examples.py") == 3  # the third is in no docstring
    assert "Expected:\n    7\nGot:\n    6" in report
    assert modules_with_examples(tmp_path.parent, tmp_path.name) == [f"{tmp_path.name}.planted_examples"]
