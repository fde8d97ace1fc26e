#!/usr/bin/env python
r"""The tensor-product convolution's serial drivers against its parallel ones, by graph size, l_max, features, dtype.

Not a test. ``tp_conv`` forward + reverse pass (``edge_grads`` on for real dtypes, as for forces; off
for complex128, as in the training pass) of layer 1 of a 3-layer model, random inputs, on batches of
1, 2 and 5 aspirin frames (r_max 5 Å) and on Cu 108; three settings alternated in rounds: the serial
driver on 1 thread, the serial driver on 2 threads (it ignores them), the parallel drivers (CSR
forward, split one-sweep reverse) on 2 threads. Each setting: best of 7 calls per round, median over 3
rounds. ``work`` = E × Σ_paths mul·d₁·d₃ (× 4 for complex): the multiply-adds of the messages. The
results set ``tp_conv/cpu.py``'s ``SERIAL_EDGES``.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/ab_tp_drivers.py --out benchmarks/results/ab_tp_drivers.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
ASPIRIN = os.path.join(os.path.dirname(HERE), "..", "shared", "data", "aspirin_xtb_500K.extxyz")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.out and os.path.exists(args.out):
        raise SystemExit(f"{args.out} exists; give another --out (results are never overwritten)")
    import numba
    from ase.build import bulk
    from ase.io import read

    from nequip_np.data.graph import batch_graphs, graph_from_atoms
    from nequip_np.kernels.plan import D1, D3, MUL
    from nequip_np.kernels.tp_conv import cpu as tp
    from nequip_np.model.nequip import NequIPModel

    if numba.config.NUMBA_NUM_THREADS < 2:
        raise SystemExit("needs Numba with at least 2 threads")
    types = ["H", "C", "O"]
    cases = []
    for frames in (1, 2, 5):
        graph = batch_graphs([graph_from_atoms(a, types, 5.0) for a in read(ASPIRIN, index=f":{frames}")])
        for l_max in (1, 2):
            for features in (16, 32):
                for dtype in ("float64", "complex128"):
                    cases.append((f"aspirin x{frames}", graph, types, l_max, features, dtype))
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    cu.rattle(0.05, seed=0)
    cu_graph = graph_from_atoms(cu, ["Cu"], 5.0)
    for l_max in (1, 2):
        for dtype in ("float64", "complex128"):
            cases.append(("cu108", cu_graph, ["Cu"], l_max, 32, dtype))
    serial_rule, rows = tp._serial, []
    try:
        for name, graph, types_, l_max, features, dtype in cases:
            model = NequIPModel(
                backend="numba",
                type_names=types_,
                r_max=5.0,
                num_layers=3,
                l_max=l_max,
                num_features=features,
                avg_num_neighbors=20.0,
            )
            conv = model.plan.layers[1].conv
            rng = np.random.default_rng(0)
            n_edges, n_atoms = graph.n_edges, graph.n_atoms

            def rand(*shape, dtype=dtype):
                x = rng.standard_normal(shape)
                return (x + 1e-3j * rng.standard_normal(shape)).astype(dtype) if "complex" in dtype else x

            y, Y, w = (
                rand(n_atoms, conv.irreps_in.dim),
                rand(n_edges, conv.irreps_sh.dim),
                rand(n_edges, conv.n_weights),
            )
            dst, src = graph.edge_index[0], graph.edge_index[1]
            edge_grads = dtype == "float64"
            per_edge = int(sum(int(r[MUL]) * int(r[D1]) * int(r[D3]) for r in conv.tables.paths))
            settings = {
                "serial, 1 thread": (1, True),
                "serial, 2 threads": (2, True),
                "parallel, 2 threads": (2, False),
            }
            best = {k: [] for k in settings}
            for _ in range(3):
                for key, (threads, serial) in settings.items():
                    numba.set_num_threads(threads)
                    tp._serial = lambda n, s=serial: s

                    def call():
                        M, cache = tp.forward(y, Y, w, src, dst, n_atoms, conv)
                        tp.backward(M, cache, edge_grads=edge_grads)

                    call()
                    ts = []
                    for _ in range(7):
                        t = time.perf_counter()
                        call()
                        ts.append(time.perf_counter() - t)
                    best[key].append(min(ts))
            ms = {k: 1e3 * float(np.median(v)) for k, v in best.items()}
            row = dict(
                case=name,
                n_edges=n_edges,
                l_max=l_max,
                features=features,
                dtype=dtype,
                work=n_edges * per_edge * (4 if "complex" in dtype else 1),
                ms=ms,
                parallel_over_serial_2t=ms["parallel, 2 threads"] / ms["serial, 2 threads"],
            )
            rows.append(row)
            print(
                f"{name:11s} E={n_edges:5d} l{l_max} f{features} {dtype:10s} work {row['work'] / 1e6:6.1f}M  "
                + "  ".join(f"{k} {v:.2f}" for k, v in ms.items())
                + f"  parallel/serial {row['parallel_over_serial_2t']:.2f}",
                flush=True,
            )
    finally:
        tp._serial = serial_rule
    if args.out:
        with open(args.out, "w") as f:
            json.dump(dict(command=" ".join(sys.argv), cpu_count=os.cpu_count(), rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
