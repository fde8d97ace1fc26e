#!/usr/bin/env python
r"""Energy + forces with the radial MLP vs with radial tables (``NequIPModel.use_radial_tables``), backend numba.

Not a test. Same weights, same edges; for each case two models (MLP path, table path) are called
ALTERNATELY (mlp, table, mlp, …; the first round is a discarded warm-up), and the median per call
is reported with the spread (min, max, and the interquartile range relative to the median) so that
the noise of a shared machine is visible. Each timing is taken twice: wall clock (``*_ms``) and the
process's CPU time (``*_cpu_ms``, ``time.process_time``: all threads of this process, so it does not
count time the process waited for the cores — on a machine shared with other jobs it is the steadier
number at 1 thread; at 2 threads it also counts Numba's workers spinning). Two timings per case:

* ``call_ms``: one whole ``model.compute(graph)`` (energy, forces, stress);
* ``radial_ms``: the radial part alone, all layers, forward + force reverse pass: MLP path =
  edge embedding + radial MLP forward and ``d_x`` backward (no weight gradients); table path =
  ``radial_table`` forward + backward.

Also recorded: the force difference between the paths (max |ΔF| / max |F|), the table's own error
estimate, and the table size. Systems and models are those of ``bench_cpu.py`` (aspirin frame 0,
rattled fcc Cu; 4 layers, radial MLP 8 → 128 → n_w, 32 features). One child process per thread
count, with ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS`` and Numba's threads set to it.

Usage (docs/benchmarks.md says what was run)::

    python benchmarks/bench_radial_table.py --out benchmarks/results/radial_table.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))


def _stats(ts):
    ms = sorted(1e3 * t for t in ts)
    q1, _, q3 = statistics.quantiles(ms, n=4) if len(ms) >= 2 else (ms[0], 0, ms[0])
    med = statistics.median(ms)
    return {"median": med, "min": ms[0], "max": ms[-1], "iqr_rel": (q3 - q1) / med, "all": ms}


def _radial_parts(model, graph):
    """Two callables running only the radial part of every layer (forward + d_x backward)."""
    import numba  # noqa: F401 - the numba ops

    from nequip_np.model.nequip import _alphas

    ops, c, p = model.ops, model.config, model.params
    vec = graph.edge_vectors()
    types, dst, src = graph.atom_types, graph.edge_index[0], graph.edge_index[1]
    rr = np.ascontiguousarray(model.buffers["rmax_recip"][types[dst], types[src]])
    bw = model._get("bessel_weights", p)
    layers = model.plan.layers
    radial = [[p[f"layer{lay.index}.radial.{m}"] for m in range(len(lay.radial_dims) - 1)] for lay in layers]

    def mlp():
        with ops.call_context():
            emb, ce = ops.edge_embedding.forward(vec, rr, bw, c.polynomial_cutoff_p, 2.0 * np.pi / c.r_max**2)
            d_emb = 0.0
            for lay, ws in zip(layers, radial):
                w, cm = ops.mlp.forward(emb, ws, _alphas(lay.radial_dims), "silu")
                d_emb = d_emb + ops.mlp.backward(w, cm, False)[0]  # w stands in for dE/dw
            return ops.edge_embedding.backward(d_emb, ce)[0]

    def table():
        with ops.call_context():
            d_vec = 0.0
            for lay in layers:
                w, ct = ops.radial_table.forward(vec, rr, model.radial_tables.layer(lay.index, model.dtype))
                d_vec = d_vec + ops.radial_table.backward(w, ct)
            return d_vec

    return mlp, table


def child(args) -> list:
    import copy

    import numba
    from bench_cpu import model_kwargs, structures

    from nequip_np.data.graph import graph_from_atoms
    from nequip_np.model.nequip import NequIPModel

    numba.set_num_threads(args.threads)
    rows = []
    for system, atoms in structures(args.systems).items():
        for l_max in args.lmax:
            kw = model_kwargs(system, l_max, "float64", args.features)
            graph = graph_from_atoms(atoms, kw["type_names"], kw["r_max"])
            mlp_model = NequIPModel(backend="numba", **kw)
            t0 = time.perf_counter()
            tab_model = copy.copy(mlp_model)
            tab_model.use_radial_tables(args.n_points)
            build_s = time.perf_counter() - t0
            repeats = args.repeats if graph.n_atoms <= 200 else max(3, args.repeats // 2)
            impls = {
                "mlp": lambda m=mlp_model, g=graph: m.compute(g),
                "table": lambda m=tab_model, g=graph: m.compute(g),
            }
            rmlp, rtab = _radial_parts(tab_model, graph)
            parts = {"mlp": rmlp, "table": rtab}
            times = {(k, kind): [] for k in impls for kind in ("call", "call_cpu", "radial", "radial_cpu")}
            out = {}
            for r in range(repeats + 1):  # round 0: warm-up (JIT compile, allocator), discarded
                for name, fn in impls.items():
                    for kind, f in (("call", fn), ("radial", parts[name])):
                        t, c = time.perf_counter(), time.process_time()
                        res = f()
                        if r:
                            times[name, kind].append(time.perf_counter() - t)
                            times[name, kind + "_cpu"].append(time.process_time() - c)
                        if kind == "call":
                            out[name] = res
            f_mlp, f_tab = out["mlp"]["forces"], out["table"]["forces"]
            call = {k: _stats(times[k, "call"]) for k in impls}
            rad = {k: _stats(times[k, "radial"]) for k in impls}
            call_cpu = {k: _stats(times[k, "call_cpu"]) for k in impls}
            rad_cpu = {k: _stats(times[k, "radial_cpu"]) for k in impls}
            row = dict(
                system=system,
                n_atoms=graph.n_atoms,
                n_edges=graph.n_edges,
                l_max=l_max,
                dtype="float64",
                features=args.features,
                threads=args.threads,
                repeats=repeats,
                n_points=args.n_points,
                n_w=[int(lay.radial_dims[-1]) for lay in mlp_model.plan.layers],
                table_build_s=build_s,
                table_error=tab_model.radial_tables.error,
                table_bytes_per_layer=int(tab_model.radial_tables.tables[0].nbytes),
                call_ms=call,
                radial_ms=rad,
                call_cpu_ms=call_cpu,
                radial_cpu_ms=rad_cpu,
                speedup_call=call["mlp"]["median"] / call["table"]["median"],
                speedup_radial=rad["mlp"]["median"] / rad["table"]["median"],
                speedup_call_cpu=call_cpu["mlp"]["median"] / call_cpu["table"]["median"],
                speedup_radial_cpu=rad_cpu["mlp"]["median"] / rad_cpu["table"]["median"],
                force_rel_diff=float(np.abs(f_tab - f_mlp).max() / np.abs(f_mlp).max()),
                energy_diff_eV=float(out["table"]["total_energy"][0] - out["mlp"]["total_energy"][0]),
                load_average=os.getloadavg(),
            )
            print(
                json.dumps(
                    {
                        k: row[k]
                        for k in (
                            "system",
                            "l_max",
                            "threads",
                            "speedup_call",
                            "speedup_call_cpu",
                            "speedup_radial",
                            "speedup_radial_cpu",
                            "force_rel_diff",
                        )
                    }
                    | {
                        f"{what}_ms": {k: (round(v["median"], 2), round(v["iqr_rel"], 3)) for k, v in d.items()}
                        for what, d in (
                            ("call", call),
                            ("call_cpu", call_cpu),
                            ("radial", rad),
                            ("radial_cpu", rad_cpu),
                        )
                    }
                    | {"load": row["load_average"][0]}
                ),
                flush=True,
            )
            rows.append(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--systems", nargs="+", default=["aspirin", "cu108", "cu864"])
    p.add_argument("--lmax", nargs="+", type=int, default=[1, 2])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--n-points", type=int, default=None, help="table nodes (default: the model default)")
    p.add_argument("--out", default=None, help="results JSON (refuses to overwrite an existing file)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.n_points is None:
        from nequip_np.model.radial_tables import DEFAULT_POINTS

        args.n_points = DEFAULT_POINTS
    if args.child:
        args.threads = args.threads[0]
        print("ROWS " + json.dumps(child(args)), flush=True)
        return 0
    if args.out and os.path.exists(args.out) and not args.child:
        raise SystemExit(f"{args.out} exists; give another --out (results are never overwritten)")
    import numba

    rows = []
    result = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "numba": numba.__version__,
            "numpy": np.__version__,
            "threading_layer": os.environ.get("NUMBA_THREADING_LAYER", "workqueue (nequip_np default)"),
            "load_average_at_start": os.getloadavg(),
        },
        "command": sys.argv,
        "rows": rows,
    }
    for t in args.threads:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": str(t), "OMP_NUM_THREADS": str(t), "MKL_NUM_THREADS": str(t)}
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--threads",
            str(t),
            "--systems",
            *args.systems,
            "--lmax",
            *map(str, args.lmax),
            "--features",
            str(args.features),
            "--repeats",
            str(args.repeats),
            "--n-points",
            str(args.n_points),
        ]
        with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) as proc:
            for line in proc.stdout:  # rows as they come (a long run shows progress)
                if line.startswith("ROWS "):
                    rows += json.loads(line[5:])
                else:
                    sys.stdout.write(line)
                    sys.stdout.flush()
        if proc.returncode:
            raise SystemExit(f"child ({t} threads) failed with exit code {proc.returncode}")
        result["machine"]["load_average_at_end"] = os.getloadavg()
        if args.out:  # after every thread count: a run stopped later keeps what it measured
            with open(args.out, "w") as f:
                json.dump(result, f, indent=1)
            print(f"wrote {args.out} ({len(rows)} rows)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
