"""The package is built in layers, and imports go one way: down.

``LAYERS`` lists the top-level packages (and modules) of ``nequip_np`` from the bottom up. A module
may import from its own package and from lower layers, never from its own layer's neighbours or from
above — also not inside a function. The checks read the source (``ast``), so a function-level import
that only dodges a cycle is caught as well as a top-level one:

* every import of a ``nequip_np`` module, top-level or deferred, points down (``ALLOWED_UPWARD`` lists
  the few exceptions, each with its reason, and each must still be needed);
* the module import graph — deferred imports included, and importing ``a.b.c`` counting as importing
  the packages ``a`` and ``a.b`` it runs first — has no cycle;
* in a fresh interpreter every module imports on its own, whichever is imported first.

The last tests plant an upward import and a cycle in a temporary package to show the checks can fail.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "nequip_np"

#: bottom-up; a name is a top-level package or module of nequip_np
LAYERS = [
    ("conventions", "_version", "schema"),  # units, conventions; the version string; option checkers
    ("so3", "data"),  # irreps algebra and tables; neighbour lists, graphs, datasets
    ("kernels",),  # one folder per operation: reference, Numba, CUDA
    ("model",),  # the NequIP model assembled from kernels; its file format
    ("interop",),  # official nequip weights; opening a model file of either format
    ("parallel",),  # communicators, MD decompositions over ranks
    ("train",),  # losses, optimiser, trainer, data-parallel training
    ("calculator", "viz", "course"),  # ASE calculator; plots; helpers of the course notebooks
    ("md", "lammps", "testing"),  # MD drivers, LAMMPS coupling, the calculator harness
    ("cli",),  # the nequip-np command
]

#: (importer prefix, imported module) → why the upward import is there
ALLOWED_UPWARD = {
    (
        "nequip_np.parallel.mpi",
        "nequip_np.train.data_parallel",
    ): "compatibility module keeping the names of the former parallel/mpi.py; nothing in the package imports it",
    (
        "nequip_np.parallel",
        "nequip_np.train.data_parallel",
    ): "nequip_np.parallel keeps the data-parallel names reachable, looked up on first use (module __getattr__)",
}


# ----------------------------------------------------------------------------------- the checkers
def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` under ``root/package``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(modules: dict[str, Path], package: str) -> list[tuple[str, str, int, bool]]:
    """``(importer, imported, line, deferred)`` for every import of a module of ``package``.

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module, else ``a.b``; relative
    imports are resolved. ``deferred`` is True for an import inside a function.
    """
    out = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        in_function = _inside_functions(tree)
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            deferred = id(node) in in_function
            for target in dict.fromkeys(targets):
                if target.split(".")[0] == package and target != name:
                    while target not in modules:  # `import a.b.c.attr`-like: the module part
                        target = target.rsplit(".", 1)[0]
                    out.append((name, target, node.lineno, deferred))
    return out


def _inside_functions(tree) -> set[int]:
    """ids of the nodes inside a function body (they run when it is called, not at import)."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inside.update(id(n) for n in ast.walk(node) if n is not node)
    return inside


def layer_of(module: str, package: str, layers) -> int | None:
    """Index in ``layers`` of the top-level name ``module`` belongs to (the package root: above all)."""
    parts = module.split(".")
    if len(parts) == 1:
        return len(layers)
    for k, names in enumerate(layers):
        if parts[1] in names:
            return k
    return None


def _allowed(edge, allowed) -> str | None:
    src, dst = edge
    for (prefix, target), reason in allowed.items():
        if (src == prefix or src.startswith(prefix + ".")) and dst == target:
            return reason
    return None


def upward_imports(modules, edges, package: str, layers, allowed) -> list[str]:
    """Imports that point to the same layer's other packages or above, not in ``allowed``."""
    problems = []
    for src, dst, line, deferred in edges:
        a, b = layer_of(src, package, layers), layer_of(dst, package, layers)
        for name, k in ((src, a), (dst, b)):
            if k is None:
                problems.append(f"{name}: not in LAYERS; add its top-level name to the right layer")
        if a is None or b is None or src.split(".")[:2] == dst.split(".")[:2] or b < a:
            continue
        if _allowed((src, dst), allowed) is None:
            kind = "deferred import" if deferred else "import"
            problems.append(
                f"{modules[src].relative_to(modules[package].parents[1])}:{line}: {kind} of "
                f"{dst} (layer {b}) from layer {a}"
            )
    return sorted(set(problems))


def unused_allowances(edges, allowed) -> list[str]:
    used = {key for key in allowed for src, dst, _, _ in edges if _allowed((src, dst), {key: ""}) is not None}
    return sorted(f"{k[0]} -> {k[1]}" for k in allowed if k not in used)


def import_cycles(modules, edges, allowed) -> list[list[str]]:
    """Cycles (strongly connected sets) of the module graph, deferred imports included.

    Importing ``a.b.c`` from outside ``a.b`` also runs ``a/__init__`` and ``a/b/__init__``: those
    edges are added. Edges in ``allowed`` are left out.
    """
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for src, dst, _, _ in edges:
        if _allowed((src, dst), allowed) is not None:
            continue
        graph[src].add(dst)
        parts = dst.split(".")
        for k in range(1, len(parts)):
            parent = ".".join(parts[:k])
            if parent in modules and not (src == parent or src.startswith(parent + ".")):
                graph[src].add(parent)
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


# --------------------------------------------------------------------------------- the real package
MODULES = module_files(ROOT, PACKAGE)
EDGES = imports(MODULES, PACKAGE)


def test_the_import_reader_sees_top_level_deferred_and_relative_imports():
    seen = {(s, d, deferred) for s, d, _, deferred in EDGES}
    assert ("nequip_np.train.trainer", "nequip_np.model.nequip", False) in seen
    assert ("nequip_np.so3.irreps", "nequip_np.so3.wigner", False) in seen  # relative: from .wigner
    assert ("nequip_np.so3.spherical_harmonics", "nequip_np.so3._generated_sh", False) in seen  # from . import x
    assert ("nequip_np.train.cli", "nequip_np.train.trainer", True) in seen  # inside run()


def test_imports_point_down_the_layers():
    assert upward_imports(MODULES, EDGES, PACKAGE, LAYERS, ALLOWED_UPWARD) == []


def test_every_allowed_upward_import_is_still_needed():
    assert unused_allowances(EDGES, ALLOWED_UPWARD) == []


def test_nothing_in_the_package_imports_the_compatibility_module():
    # nequip_np.parallel.mpi keeps the names of the module that was split; the package uses their homes
    assert [f"{s}:{line}" for s, d, line, _ in EDGES if d == "nequip_np.parallel.mpi"] == []


def test_no_import_cycles_even_through_deferred_imports():
    assert import_cycles(MODULES, EDGES, ALLOWED_UPWARD) == []


_IMPORT_EACH_FIRST = """
import importlib, importlib.machinery, sys, traceback

compile_source = importlib.machinery.SourceFileLoader.source_to_code
compiled = {}


def source_to_code(self, data, path, *, _optimize=-1):  # each file compiled once (no .pyc is written here)
    if (path, data) not in compiled:
        compiled[path, data] = compile_source(self, data, path, _optimize=_optimize)
    return compiled[path, data]


importlib.machinery.SourceFileLoader.source_to_code = source_to_code
package, failed = sys.argv[1], []
for name in sys.argv[2:]:
    for loaded in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ImportError as exc:
        if package in str(exc) or "partially initialized" in str(exc):
            failed.append(f"{name}: {exc!r}")
    except Exception:
        failed.append(f"{name}: " + traceback.format_exc(limit=3))
print("\\n".join(failed))
"""


def modules_failing_to_import_first(root: Path, package: str, modules) -> str:
    """Import each module as the first one of ``package`` (in one subprocess); the failures, one a line."""
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH_FIRST, package, *modules],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


def test_every_module_imports_first_in_a_fresh_interpreter():
    # One interpreter; before each module the nequip_np modules already loaded are dropped, so each
    # is the first one imported (third-party modules and compiled code stay cached: 6 s, not 60 s).
    # An ImportError of a missing optional extra (lammps, mpi4py, a CUDA driver) is not a layering fault.
    assert modules_failing_to_import_first(ROOT, PACKAGE, MODULES) == ""


# --------------------------------------------------------------------------- the checks can fail
def _plant(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        path = tmp_path / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return module_files(tmp_path, "pkg")


def test_checks_detect_planted_faults(tmp_path):
    modules = _plant(
        tmp_path,
        {
            "__init__.py": "",
            "low/__init__.py": "",
            "low/a.py": "def f():\n    from pkg.high import b  # dodges the cycle below\n",
            "low/c.py": "from . import a\n",
            "high/__init__.py": "",
            "high/b.py": "from pkg.low.a import f\nfrom pkg.low import c\n",
            "stray.py": "import pkg.low.c\n",
        },
    )
    edges = imports(modules, "pkg")
    layers = [("low",), ("high",)]
    assert upward_imports(modules, edges, "pkg", layers, {}) == [
        "pkg.stray: not in LAYERS; add its top-level name to the right layer",
        "pkg/low/a.py:2: deferred import of pkg.high.b (layer 1) from layer 0",
    ]
    allowed = {("pkg.low.a", "pkg.high.b"): "planted", ("pkg.low", "pkg.nowhere"): "stale"}
    assert upward_imports(modules, edges, "pkg", layers + [("stray",)], allowed) == []
    assert unused_allowances(edges, allowed) == ["pkg.low -> pkg.nowhere"]
    assert import_cycles(modules, edges, {}) == [["pkg.high.b", "pkg.low.a", "pkg.low.c"]]
    assert import_cycles(modules, edges, allowed) == []


@pytest.mark.parametrize(
    "layer, expected",
    [("nequip_np", 10), ("nequip_np.so3.irreps", 1), ("nequip_np.data.verlet", 1), ("nequip_np.cli", 9)],
)
def test_layer_of(layer, expected):
    assert layer_of(layer, PACKAGE, LAYERS) == expected


def test_import_first_check_detects_a_top_level_cycle(tmp_path):
    modules = _plant(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from pkg.b import g\n\n\ndef f():\n    return 1\n",
            "b.py": "from pkg.a import f\n\n\ndef g():\n    return f()\n",
            "c.py": "X = 1\n",
        },
    )
    failures = modules_failing_to_import_first(tmp_path, "pkg", modules).splitlines()
    assert [line.split(":")[0] for line in failures] == ["pkg.a", "pkg.b"]
    assert all("partially initialized" in line for line in failures)


def test_names_moved_between_modules_are_still_importable_from_their_old_homes():
    import nequip_np.calculator as calculator
    import nequip_np.model.io as io
    import nequip_np.parallel as parallel
    import nequip_np.parallel.mpi as mpi
    from nequip_np.data.verlet import NeighborListCache
    from nequip_np.model import file_format
    from nequip_np.parallel import comm, gather, ghost, receptive
    from nequip_np.so3 import irreps, irreps_D
    from nequip_np.train import data_parallel

    assert calculator.NeighborListCache is NeighborListCache
    assert io.atomic_savez is file_format.atomic_savez and io.FORMAT == file_format.FORMAT
    assert irreps_D is irreps.irreps_D
    for name in ("DataParallel", "data_parallel_from_environment", "shard_loss_and_grad"):
        assert getattr(parallel, name) is getattr(data_parallel, name)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        parallel.nothing  # noqa: B018
    homes = {
        comm: ["Comm", "SerialComm", "world", "launched_size", "local_ranks", "share_cores_between_ranks"],
        gather: ["decomposed_energy_forces"],
        ghost: ["GhostCache", "OwnerMap", "ghost_energy_forces"],
        receptive: ["hop_distance", "owned_energy_forces", "receptive_subgraph"],
        data_parallel: ["DataParallel", "shard_frames", "shard_loss_and_grad", "data_parallel_from_environment"],
    }
    for home, names in homes.items():
        for name in names:
            assert getattr(mpi, name) is getattr(home, name), name
