#!/usr/bin/env python
r"""A/B: radial tables fused into the tensor product (``kernels/table_conv/cpu.py``) vs the two operations
in sequence (``radial_table`` then ``tp_conv``, which materialise the (E, n_w) weights and their gradient).

Not a test. Same model, weights and graph; the only difference is ``model.ops.table_conv``: the fused
kernel (A) or the composition of the two Numba operations (B, what the table path ran before). Energy +
forces (+ stress on cells) with ``backend="numba"``, float64, 4 layers, 32 features (the models of
``bench_cpu.py``), ALTERNATED A, B, A, … after a discarded warm-up round; medians of wall clock and of
the process's CPU time (``time.process_time``), with the interquartile range relative to the median.
Peak memory is measured per variant in a fresh process by ``radial_table_memory.py``.

Usage (docs/benchmarks.md says what was run)::

    OPENBLAS_NUM_THREADS=1 python benchmarks/ab_table_conv.py --threads 1 --out benchmarks/results/ab_table_conv_1t.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from types import SimpleNamespace

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))


def _unfused_ops():
    """``table_conv`` as the two CPU operations in sequence (the table path before the fused kernel)."""
    from nequip_np.kernels.radial_table import cpu as radial_table
    from nequip_np.kernels.table_conv.reference import composed
    from nequip_np.kernels.tp_conv import cpu as tp_conv

    forward, backward = composed(radial_table, tp_conv)
    return SimpleNamespace(forward=forward, backward=backward)


def unfused(model):
    """A shallow copy of a table model whose ``table_conv`` runs the two CPU operations in sequence."""
    other = copy.copy(model)
    other.ops = SimpleNamespace(**vars(model.ops))
    other.ops.table_conv = _unfused_ops()
    return other


def _stats(ts):
    ms = sorted(1e3 * t for t in ts)
    q1, _, q3 = statistics.quantiles(ms, n=4) if len(ms) >= 2 else (ms[0], 0, ms[0])
    med = statistics.median(ms)
    return {"median": med, "min": ms[0], "iqr_rel": (q3 - q1) / med, "all": ms}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--systems", nargs="+", default=["aspirin", "cu108", "cu864"])
    p.add_argument("--lmax", nargs="+", type=int, default=[1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=None, help="results JSON (refuses to overwrite an existing file)")
    args = p.parse_args(argv)
    if args.out and os.path.exists(args.out):
        raise SystemExit(f"{args.out} exists; give another --out (results are never overwritten)")
    import numba
    from bench_cpu import model_kwargs, structures

    from nequip_np.data.graph import graph_from_atoms
    from nequip_np.model.nequip import NequIPModel

    numba.set_num_threads(args.threads)
    rows = []
    for system, atoms in structures(args.systems).items():
        for l_max in args.lmax:
            kw = model_kwargs(system, l_max, "float64", 32)
            graph = graph_from_atoms(atoms, kw["type_names"], kw["r_max"])
            fused = NequIPModel(backend="numba", **kw)
            fused.use_radial_tables(512)
            impls = {"fused": fused, "unfused": unfused(fused)}
            repeats = args.repeats if graph.n_atoms <= 200 else max(3, args.repeats // 2)
            wall = {k: [] for k in impls}
            cpu = {k: [] for k in impls}
            out = {}
            for r in range(repeats + 1):  # round 0: warm-up (compile, allocator), discarded
                for name, model in impls.items():
                    t, c = time.perf_counter(), time.process_time()
                    out[name] = model.compute(graph)
                    if r:
                        wall[name].append(time.perf_counter() - t)
                        cpu[name].append(time.process_time() - c)
            n_w = [int(lay.radial_dims[-1]) for lay in fused.plan.layers]
            f_a, f_b = out["fused"]["forces"], out["unfused"]["forces"]
            row = dict(
                system=system,
                n_atoms=graph.n_atoms,
                n_edges=graph.n_edges,
                l_max=l_max,
                threads=args.threads,
                repeats=repeats,
                n_w=n_w,
                # bytes the unfused path writes and reads back per call: w and d_w, (E, n_w) float64 each
                per_edge_weight_bytes=int(sum(2 * 8 * graph.n_edges * n for n in n_w)),
                wall_ms={k: _stats(v) for k, v in wall.items()},
                cpu_ms={k: _stats(v) for k, v in cpu.items()},
                force_rel_diff=float(np.abs(f_a - f_b).max() / np.abs(f_b).max()),
                load_average=os.getloadavg(),
            )
            row["speedup_wall"] = row["wall_ms"]["unfused"]["median"] / row["wall_ms"]["fused"]["median"]
            row["speedup_cpu"] = row["cpu_ms"]["unfused"]["median"] / row["cpu_ms"]["fused"]["median"]
            print(
                json.dumps(
                    {k: row[k] for k in ("system", "l_max", "threads", "speedup_wall", "speedup_cpu", "force_rel_diff")}
                    | {
                        f"{what}_ms": {k: round(v["median"], 2) for k, v in row[f"{what}_ms"].items()}
                        for what in ("wall", "cpu")
                    }
                    | {"load": row["load_average"][0]}
                ),
                flush=True,
            )
            rows.append(row)
    result = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "numba_threads": args.threads,
            "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            "numba": numba.__version__,
            "numpy": np.__version__,
        },
        "command": sys.argv,
        "rows": rows,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
