"""Every notebook in notebooks/ executes in smoke mode and draws at least one figure.

The notebooks are found by glob at collection time, so a new notebook is executed without touching
this file; ``test_every_notebook_is_parametrised`` re-globs at run time and fails if the two lists
differ. Smoke mode (``NEQUIP_NP_NOTEBOOK_SMOKE=1`` in the kernel's environment) shrinks the sizes
set in each notebook's first code cell; the full-size outputs committed in notebooks/ come from
``python tools/run_notebooks.py``. Each notebook is edited as its jupytext percent-format ``.py``;
``test_notebook_matches_its_jupytext_source`` fails when the pair disagrees.
"""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SMOKE_VAR = "NEQUIP_NP_NOTEBOOK_SMOKE"
CELL_TIMEOUT_S = 300


def _load(path: pathlib.Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _requirements():
    for mod in ("nbformat", "nbclient", "ipykernel", "matplotlib", "jupytext"):
        pytest.importorskip(mod, reason=f"notebook tests need {mod}: pip install -e '.[dev]'")


def _read(path):
    import nbformat

    return nbformat.read(path, as_version=4)


def test_every_notebook_is_parametrised():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"
    now = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    assert [p.name for p in now] == [p.name for p in NOTEBOOKS], "notebooks changed since collection"
    collected = {p.name for p in NOTEBOOKS}
    assert collected == {p.name for p in now}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_conventions(path):
    """First cell says what it covers and not; sizes come from the smoke variable."""
    _requirements()
    nb = _read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown", f"{path.name}: the first cell must be markdown"
    assert "What this covers" in first.source and "does not" in first.source, (
        f"{path.name}: the first cell must say what the notebook covers and what it does not"
    )
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert any(SMOKE_VAR in src for src in code), (
        f"{path.name}: no code cell reads {SMOKE_VAR}; CI could not run it with tiny sizes"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_in_smoke_mode(path):
    _requirements()
    import nbformat

    runner = _load(ROOT / "tools" / "run_notebooks.py", "_run_notebooks")
    nb = _read(path)
    n_cells = len(nb.cells)
    # a probe cell proves that the kernel itself saw smoke mode
    nb.cells.append(nbformat.v4.new_code_cell(f"import os; print(os.environ.get({SMOKE_VAR!r}))"))
    seconds = runner.execute_notebook(nb, path.parent, smoke=True, timeout=CELL_TIMEOUT_S)
    probe = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert probe.strip() == "1", f"the kernel did not run in smoke mode ({SMOKE_VAR}={probe.strip()!r})"
    outputs = [o for c in nb.cells[:n_cells] if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} produced no figure (image/png output)"
    print(f"{path.name}: {seconds:.1f} s in smoke mode, {len(images)} figure(s)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_matches_its_jupytext_source(path):
    """Each .ipynb has a percent-format .py with the same cells (the .py is what is edited)."""
    _requirements()
    pytest.importorskip("jupytext", reason="the notebook sources are jupytext files: pip install -e '.[dev]'")
    runner = _load(ROOT / "tools" / "run_notebooks.py", "_run_notebooks")
    source = path.with_suffix(".py")
    assert source.exists(), f"{path.name} has no jupytext source {source.name}"
    py, nb = runner.sources(source), runner.sources(path)
    assert len(py) == len(nb), (
        f"{source.name} has {len(py)} cells, {path.name} {len(nb)}; "
        f"run python tools/run_notebooks.py --sync-only {path.stem[:2]}"
    )
    for k, (a, b) in enumerate(zip(py, nb)):
        assert a == b, (
            f"cell {k} of {path.name} differs from {source.name}; "
            f"run python tools/run_notebooks.py --sync-only {path.stem[:2]}"
        )


def test_every_notebook_source_has_a_notebook():
    sources = sorted(p.stem for p in NOTEBOOK_DIR.glob("[0-9]*.py"))
    assert sources == [p.stem for p in NOTEBOOKS], "a notebooks/NN_*.py source without its .ipynb (or vice versa)"
