#!/usr/bin/env python
r"""A/B timing of ``model.compute`` (energy + forces) between two checkouts of this project.

Not a test. Each checkout runs in its own worker process (its directory first on ``sys.path``), builds
the same model (same seed, same options) on the same aspirin frame and warms up (Numba compilation);
then the parent alternates blocks of calls — A, B, A, B, … — so that load drift on a shared machine hits
both alike, and reports the median (and the minimum) per call of each and the ratio of medians. Numba threads: ``--threads``
(``numba.set_num_threads`` and ``NUMBA_NUM_THREADS``); BLAS as the package sets it.

Usage::

    git archive <old commit> | tar -x -C /tmp/old
    python benchmarks/ab_compute.py --a /tmp/old --b . --lmax 1 2 --threads 1 --out ab.json
    python benchmarks/ab_compute.py --a /tmp/old --b . --systems aspirin cu108 --tables --out ab_tables.json

``median_cpu_ms``: process CPU time per call (user + system, all threads): on a shared machine it is
less inflated by other people's work than the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ASPIRIN = os.path.join(ROOT, "examples", "aspirin", "aspirin_xtb_300.extxyz")


def structure(system: str):
    """``aspirin`` (frame 0 of the shipped slice) or ``cu<N>``: rattled fcc Cu, cubic cells repeated."""
    from ase.build import bulk
    from ase.io import read

    if system == "aspirin":
        return read(ASPIRIN, index=0), ["H", "C", "O"], 20.0
    rep = max(1, round((int(system[2:]) / 4) ** (1 / 3)))
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((rep, rep, rep))
    atoms.rattle(0.05, seed=1)
    return atoms, ["Cu"], 78.0


def worker(lmax: int, features: int, backend: str, system: str = "aspirin", tables: bool = False) -> None:
    """JSON-lines server on stdin/stdout: ``n`` → [[wall s, CPU s of this thread], …] of n compute() calls."""
    import numba
    import numpy as np

    from nequip_np.data.graph import graph_from_atoms
    from nequip_np.model.nequip import NequIPModel

    atoms, types, avg = structure(system)
    model = NequIPModel(
        backend=backend,
        seed=123,
        type_names=types,
        r_max=5.0,
        l_max=lmax,
        num_layers=4,
        num_features=features,
        radial_mlp_depth=1,
        radial_mlp_width=128,
        num_bessels=8,
        avg_num_neighbors=avg,
        per_type_energy_scales={t: 1.0 for t in types},
        per_type_energy_shifts={t: 0.0 for t in types},
    )
    if tables:
        model.use_radial_tables("auto")
    graph = graph_from_atoms(atoms, types, 5.0)
    first = model.compute(graph, stress=False)  # compiles
    for _ in range(2):
        model.compute(graph, stress=False)
    print(
        json.dumps(
            {
                "ready": True,
                "threads": numba.get_num_threads(),
                "energy": float(first["total_energy"][0]),
                "fmax": float(np.abs(first["forces"]).max()),
                "edges": int(graph.edge_index.shape[1]),
                "atoms": int(graph.n_atoms),
            }
        ),
        flush=True,
    )
    for line in sys.stdin:
        times = []
        for _ in range(int(line)):
            t0, c0 = time.perf_counter(), time.process_time()
            model.compute(graph, stress=False)
            times.append((time.perf_counter() - t0, time.process_time() - c0))
        print(json.dumps(times), flush=True)


def start(
    path: str, lmax: int, features: int, threads: int, backend: str, system: str = "aspirin", tables: bool = False
):
    env = dict(
        os.environ,
        PYTHONPATH=os.path.abspath(path),
        NUMBA_NUM_THREADS=str(threads),
        OPENBLAS_NUM_THREADS=str(threads),
        OMP_NUM_THREADS=str(threads),
    )
    code = (
        f"import sys; sys.path.insert(0, {os.path.abspath(path)!r}); sys.path.insert(0, {HERE!r}); "
        f"import ab_compute; ab_compute.worker({lmax}, {features}, {backend!r}, {system!r}, {tables!r})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=os.path.abspath(path),
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    return proc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--a", required=True, help="checkout A (e.g. the previous commit, extracted)")
    p.add_argument("--b", required=True, help="checkout B (e.g. this one)")
    p.add_argument("--lmax", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--backend", default="numba")
    p.add_argument("--systems", nargs="+", default=["aspirin"], help="aspirin, cu<N> (e.g. cu108 cu864)")
    p.add_argument("--tables", action="store_true", help="radial tables on (model.use_radial_tables('auto'))")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--block", type=int, default=5)
    p.add_argument("--out")
    args = p.parse_args()
    rows = []
    for system in args.systems:
        for lmax in args.lmax:
            procs = {
                k: start(path, lmax, args.features, args.threads, args.backend, system, args.tables)
                for k, path in (("A", args.a), ("B", args.b))
            }
            info = {k: json.loads(proc.stdout.readline()) for k, proc in procs.items()}
            times = {"A": [], "B": []}
            for _ in range(args.rounds):
                for k, proc in procs.items():
                    proc.stdin.write(f"{args.block}\n")
                    proc.stdin.flush()
                    times[k].extend(json.loads(proc.stdout.readline()))
            for proc in procs.values():
                proc.stdin.close()
                proc.wait()
            wall = {k: [t[0] for t in v] for k, v in times.items()}
            cpu = {k: [t[1] for t in v] for k, v in times.items()}
            med = {k: statistics.median(v) for k, v in wall.items()}
            row = {
                "system": system,
                "atoms": info["A"]["atoms"],
                "edges": info["A"]["edges"],
                "l_max": lmax,
                "features": args.features,
                "tables": args.tables,
                "threads": info["A"]["threads"],
                "calls_each": len(wall["A"]),
                "median_ms_A": 1e3 * med["A"],
                "median_ms_B": 1e3 * med["B"],
                "ratio_B_over_A": med["B"] / med["A"],
                "min_ms_A": 1e3 * min(wall["A"]),
                "min_ms_B": 1e3 * min(wall["B"]),
                "median_cpu_ms_A": 1e3 * statistics.median(cpu["A"]),
                "median_cpu_ms_B": 1e3 * statistics.median(cpu["B"]),
                "energy_A": info["A"]["energy"],
                "energy_B": info["B"]["energy"],
                "load_average": os.getloadavg(),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {
                    "machine": platform.platform(),
                    "cpus": os.cpu_count(),
                    "load_average": os.getloadavg(),
                    "a": args.a,
                    "b": args.b,
                    "rows": rows,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
