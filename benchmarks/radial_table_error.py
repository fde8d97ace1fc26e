#!/usr/bin/env python
r"""Error of the radial tables against the radial MLP, by table size (float64).

Not a test. For the models of ``bench_cpu.py`` (4 layers, 32 features, radial MLP 8 → 128 → n_w,
random initial weights ``seed=123``) on aspirin (frame 0) and rattled fcc Cu 108, l_max 1 and 2, and
table sizes ``--sizes``: the tables' own estimate (interval midpoints vs the exact MLP: max relative
error of w and of dw/dx over all layers) and what reaches the user: max |F_table − F_mlp| / max |F_mlp|,
|ΔE| / |E| and, for Cu, max |Δσ| / max |σ|. Results JSON (``--out``) feeds the table in docs/kernels.md.

Usage::

    python benchmarks/radial_table_error.py --out benchmarks/results/radial_table_error.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--systems", nargs="+", default=["aspirin", "cu108"])
    p.add_argument("--lmax", nargs="+", type=int, default=[1, 2])
    p.add_argument("--sizes", nargs="+", type=int, default=[32, 64, 128, 256, 512, 1024, 2048])
    p.add_argument("--out", default=None, help="results JSON (refuses to overwrite an existing file)")
    args = p.parse_args(argv)
    if args.out and os.path.exists(args.out):
        raise SystemExit(f"{args.out} exists; give another --out (results are never overwritten)")
    from bench_cpu import model_kwargs, structures

    from nequip_np.data.graph import graph_from_atoms
    from nequip_np.model.nequip import NequIPModel

    rows = []
    for system, atoms in structures(args.systems).items():
        for l_max in args.lmax:
            kw = model_kwargs(system, l_max, "float64", 32)
            graph = graph_from_atoms(atoms, kw["type_names"], kw["r_max"])
            model = NequIPModel(backend="numba", **kw)
            ref = model.compute(graph)
            for n in args.sizes:
                tab = copy.copy(model)
                tab.use_radial_tables(n)
                out = tab.compute(graph)
                row = dict(
                    system=system,
                    l_max=l_max,
                    n_points=n,
                    n_edges=graph.n_edges,
                    table_bytes_per_layer=int(tab.radial_tables.tables[0].nbytes),
                    table_error_w=tab.radial_tables.error["w"],
                    table_error_dw=tab.radial_tables.error["dw"],
                    force_rel=float(np.abs(out["forces"] - ref["forces"]).max() / np.abs(ref["forces"]).max()),
                    energy_rel=float(
                        abs(out["total_energy"][0] - ref["total_energy"][0]) / abs(ref["total_energy"][0])
                    ),
                )
                if atoms.pbc.all():
                    row["stress_rel"] = float(np.abs(out["stress"] - ref["stress"]).max() / np.abs(ref["stress"]).max())
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rows": rows}, f, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
