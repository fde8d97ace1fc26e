"""Sync the course notebooks from their jupytext sources and execute them in place, saving outputs.

Each notebook is edited as a percent-format ``notebooks/NN_name.py`` (plain Python, linted like the
package) paired with ``notebooks/NN_name.ipynb``, which keeps the executed outputs
(``notebooks/jupytext.toml`` declares the pairing, so Jupyter with jupytext installed edits both).
This is the one command that produces the outputs committed in ``notebooks/``:

    python tools/run_notebooks.py                 # sync every pair, run all at full size
    python tools/run_notebooks.py 03 04           # only notebooks whose name starts with 03 or 04
    python tools/run_notebooks.py --smoke         # tiny sizes (what CI does), outputs still saved
    python tools/run_notebooks.py --sync-only     # .py -> .ipynb, keeping outputs of unchanged cells
    python tools/run_notebooks.py --check         # exit 1 if a .py and its .ipynb disagree

Syncing takes the cells from the ``.py`` and the outputs from the ``.ipynb`` (jupytext's
``combine_inputs_with_outputs``): editing prose or code never loses the outputs of other cells. The
kernel inherits this process's environment; ``NEQUIP_NP_NOTEBOOK_SMOKE`` is set to "1" or removed
explicitly, so a stray value in the shell cannot shrink the committed outputs. Execution timing
metadata is not recorded, so re-running an unchanged notebook changes only what really changed.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
SMOKE_VAR = "NEQUIP_NP_NOTEBOOK_SMOKE"
CELL_TIMEOUT_S = 600


def sources(path: pathlib.Path) -> list:
    """The (cell type, source) of every cell of a notebook file, ``.py`` (jupytext) or ``.ipynb``."""
    import jupytext

    return [(c.cell_type, c.source) for c in jupytext.read(path).cells]


def pairs(prefixes=()) -> list[tuple[pathlib.Path, pathlib.Path]]:
    """(source .py, .ipynb) of every notebook, in course order; a lone .ipynb is an error."""
    names = sorted({p.stem for p in NOTEBOOK_DIR.glob("[0-9]*.py")} | {p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")})
    if prefixes:
        names = [n for n in names if any(n.startswith(pre) for pre in prefixes)]
    lone = [n for n in names if not (NOTEBOOK_DIR / f"{n}.py").exists()]
    if lone:
        raise FileNotFoundError(
            f"notebooks without a jupytext source: {lone}; create one with "
            f"`jupytext --to py:percent notebooks/<name>.ipynb`"
        )
    return [(NOTEBOOK_DIR / f"{n}.py", NOTEBOOK_DIR / f"{n}.ipynb") for n in names]


def stale(prefixes=()) -> list[str]:
    """Names whose .ipynb cells differ from the .py source (or whose .ipynb is missing)."""
    return [py.stem for py, nb in pairs(prefixes) if not nb.exists() or sources(py) != sources(nb)]


def sync(py: pathlib.Path, ipynb: pathlib.Path) -> bool:
    """Write ``ipynb`` from ``py``, keeping the outputs of cells whose source is unchanged; True if written."""
    import jupytext
    import nbformat
    from jupytext.combine import combine_inputs_with_outputs

    new = jupytext.read(py)
    if ipynb.exists():
        old = nbformat.read(ipynb, as_version=4)
        if sources(py) == [(c.cell_type, c.source) for c in old.cells]:
            return False
        new = combine_inputs_with_outputs(new, old)
    for k, cell in enumerate(new.cells):  # stable ids: syncing an unchanged notebook is a no-op
        cell["id"] = f"{py.stem[:2]}-{k:03d}"
    nbformat.validate(new)
    nbformat.write(new, ipynb)
    return True


def execute_notebook(nb, cwd: pathlib.Path, smoke: bool, timeout: int = CELL_TIMEOUT_S) -> float:
    """Execute a notebook object in place with nbclient, running in ``cwd``; returns seconds."""
    from nbclient import NotebookClient

    previous = os.environ.get(SMOKE_VAR)
    if smoke:
        os.environ[SMOKE_VAR] = "1"
    else:
        os.environ.pop(SMOKE_VAR, None)
    try:  # the kernel is a child process: it inherits this environment
        start = time.perf_counter()
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", record_timing=False, resources={"metadata": {"path": str(cwd)}}
        )
        client.execute()
        return time.perf_counter() - start
    finally:
        if previous is None:
            os.environ.pop(SMOKE_VAR, None)
        else:
            os.environ[SMOKE_VAR] = previous


def execute(path: pathlib.Path, smoke: bool, timeout: int = CELL_TIMEOUT_S, save: bool = True):
    """Run one notebook file in its own folder; returns (notebook, seconds)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    seconds = execute_notebook(nb, path.parent, smoke, timeout)
    if save:
        nbformat.write(nb, path)
    return nb, seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prefixes", nargs="*", help="only notebooks whose file name starts with one of these")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (CI mode)")
    ap.add_argument("--sync-only", action="store_true", help="write the .ipynb from the .py, do not execute")
    ap.add_argument("--check", action="store_true", help="exit 1 if a .py and its .ipynb disagree")
    ap.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds allowed per cell")
    args = ap.parse_args(argv)
    if args.check:
        out = stale(args.prefixes)
        print(f"out of date: {', '.join(out) if out else 'none'}")
        return 1 if out else 0
    todo = pairs(args.prefixes)
    if not todo:
        print("no notebooks matched", file=sys.stderr)
        return 2
    for py, nb in todo:
        if sync(py, nb):
            print(f"synced {nb.name} from {py.name}")
    if args.sync_only:
        return 0
    total = 0.0
    for _, path in todo:
        _, seconds = execute(path, smoke=args.smoke, timeout=args.timeout)
        size = path.stat().st_size / 1024
        total += seconds
        print(f"{path.name:<50} {seconds:7.1f} s  {size:7.0f} KiB", flush=True)
    print(f"{'total':<50} {total:7.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
