#!/usr/bin/env python
r"""Time per atom and peak memory of energy + forces + stress from 10² to 10⁵ atoms (fcc Cu), one fresh process per row.

Not a test. For each size a child process builds the rattled fcc Cu cell of ``bench_cpu.py`` (cubic
cells repeated: ``cu<N>`` rounds N to a cube), its neighbour list (r_max 5 Å), the benchmark model
(4 layers, 32 features, float64 unless ``--dtype``), switches on radial tables (``--path tables``, the
MD default) or keeps the radial MLP (``--path mlp``), makes one warm-up call and ``--repeats`` timed
calls, and reports the median, the time per atom and the process's peak resident memory (``ru_maxrss``,
which is why each row gets its own process). Freed memory stays in the heap for the next call, as
``NequIPCalculator`` sets it by default. Numba threads and the BLAS limit are ``--threads``.

Usage (docs/benchmarks.md says what was run)::

    python benchmarks/scaling_per_atom.py --path tables --threads 2 --out benchmarks/results/scaling_tables_2t.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

SIZES = ["cu108", "cu864", "cu4000", "cu10976", "cu32000", "cu100000"]


def child(system: str, path: str, l_max: int, dtype: str, threads: int, repeats: int) -> dict:
    import numba
    from bench_cpu import model_kwargs, structures

    from nequip_np.data.graph import graph_from_atoms
    from nequip_np.kernels.memory import retain_freed_memory
    from nequip_np.model.nequip import NequIPModel

    numba.set_num_threads(threads)
    retain_freed_memory()  # as NequIPCalculator does by default (docs/kernels.md, "Per-call memory")
    atoms = structures([system])[system]
    kw = model_kwargs(system, l_max, dtype, 32)
    t = time.perf_counter()
    graph = graph_from_atoms(atoms, kw["type_names"], kw["r_max"])
    graph_s = time.perf_counter() - t
    model = NequIPModel(backend="numba", **kw)
    if path == "tables":
        model.use_radial_tables(512)
    model.compute(graph)  # warm-up: compilation, allocator
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.compute(graph)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return dict(
        system=system,
        n_atoms=graph.n_atoms,
        n_edges=graph.n_edges,
        path=path,
        l_max=l_max,
        dtype=dtype,
        threads=threads,
        repeats=repeats,
        median_ms=1e3 * med,
        all_ms=[1e3 * x for x in times],
        us_per_atom=1e6 * med / graph.n_atoms,
        graph_build_s=graph_s,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        load_average=os.getloadavg(),
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", default=SIZES)
    p.add_argument("--path", choices=("tables", "mlp"), default="tables")
    p.add_argument("--lmax", type=int, default=1)
    p.add_argument("--dtype", default="float64")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help="results JSON (refuses to overwrite an existing file)")
    args = p.parse_args(argv)
    if args.child:
        row = child(args.child, args.path, args.lmax, args.dtype, args.threads, args.repeats)
        print("ROW " + json.dumps(row), flush=True)
        return 0
    if args.out and os.path.exists(args.out):
        raise SystemExit(f"{args.out} exists; give another --out (results are never overwritten)")
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    rows = []
    for system in args.sizes:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", system, "--path", args.path]
        cmd += ["--lmax", str(args.lmax), "--dtype", args.dtype, "--threads", str(args.threads)]
        cmd += ["--repeats", str(args.repeats)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        found = [line[4:] for line in proc.stdout.splitlines() if line.startswith("ROW ")]
        if not found:  # e.g. out of memory: record it and go on with the next size
            rows.append(dict(system=system, error=(proc.stderr or proc.stdout)[-800:], returncode=proc.returncode))
            print(json.dumps(rows[-1])[:400], flush=True)
            continue
        rows.append(json.loads(found[0]))
        r = rows[-1]
        print(
            f"{system}: {r['n_atoms']} atoms, {r['n_edges']} edges, {r['median_ms']:.0f} ms, "
            f"{r['us_per_atom']:.1f} µs/atom, peak {r['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    result = dict(command=" ".join(sys.argv), cpu_count=os.cpu_count(), rows=rows)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
