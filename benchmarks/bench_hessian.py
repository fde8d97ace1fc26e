"""Cost of the exact Hessian against ASE's central-difference Vibrations, and its scaling with N.

Part 1, aspirin (C9H8O4, 21 atoms, 63 x 63), the architecture of ``examples/aspirin/train.yaml``
(random weights: the cost does not depend on their values), float64, per backend:

* one energy + forces evaluation (the unit);
* the exact Hessian with the default batching (all 63 directions in one complex pass) and with
  ``batch=1`` (63 separate complex passes);
* ``ase.vibrations.Vibrations`` (nfree=2, delta=0.01 Å: 6N + 1 = 127 force calls) with the same
  calculator; and the largest difference between the two Hessians.

Part 2, scaling: k aspirin molecules 20 Å apart (N = 21 k), numpy backend: wall time and peak
traced memory (``tracemalloc``; NumPy allocations are traced) of the full Hessian.

Usage::

    python benchmarks/bench_hessian.py [--backends numpy numba] [--copies 1 2 4] [--repeat 3]

Writes ``benchmarks/results/hessian.json``. On a shared machine compare the process CPU times
(``cpu_s``, BLAS on one thread), minimum of the repeats; wall times are recorded too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ASPIRIN = ROOT / "examples" / "aspirin" / "aspirin_xtb_300.extxyz"
MODEL = dict(
    type_names=["H", "C", "O"],
    r_max=4.0,
    num_layers=2,
    l_max=1,
    parity=True,
    num_features=8,
    radial_mlp_depth=1,
    radial_mlp_width=16,
    num_bessels=8,
    polynomial_cutoff_p=6,
    avg_num_neighbors=12.0,
    model_dtype="float64",
    seed=0,
)


def best_of(fn, repeat):
    """(min wall seconds, min CPU seconds of this process, result); CPU time is what a loaded machine keeps."""
    wall, cpu, out = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return min(wall), min(cpu), out


def aspirin_part(backend, repeat):
    from ase.io import read
    from ase.vibrations import Vibrations

    from nequip_np import NequIPModel
    from nequip_np.calculator import NequIPCalculator
    from nequip_np.model.hessian import hessian

    atoms = read(ASPIRIN, index=0)
    calc = NequIPCalculator(NequIPModel(backend=backend, **MODEL), skin=0.0)
    graph = calc.graph(atoms)
    hessian(calc.model, graph)  # warm-up (numba: compilation)
    calc.model.compute(graph)
    w_eval, t_eval, _ = best_of(lambda: calc.model.compute(graph), 5 * repeat)
    w_hess, t_hess, h = best_of(lambda: hessian(calc.model, graph), repeat)
    w_hess1, t_hess1, _ = best_of(lambda: hessian(calc.model, graph, batch=1), repeat)

    def ase_vib():
        a = atoms.copy()
        a.calc = calc
        with tempfile.TemporaryDirectory() as tmp:
            vib = Vibrations(a, name=os.path.join(tmp, "vib"), delta=0.01, nfree=2)
            vib.run()
            return vib.get_vibrations().get_hessian_2d()

    w_ase, t_ase, h_ase = best_of(ase_vib, repeat)
    row = {
        "backend": backend,
        "n_atoms": len(atoms),
        "n_edges": graph.n_edges,
        "cpu_s": {"eval": t_eval, "hessian": t_hess, "hessian_batch1": t_hess1, "ase_vibrations": t_ase},
        "wall_s": {"eval": w_eval, "hessian": w_hess, "hessian_batch1": w_hess1, "ase_vibrations": w_ase},
        "speedup_vs_ase_cpu": t_ase / t_hess,
        "speedup_vs_ase_wall": w_ase / w_hess,
        "hessian_in_evals_cpu": t_hess / t_eval,
        "ase_in_evals_cpu": t_ase / t_eval,
        "batching_gain_cpu": t_hess1 / t_hess,
        "max_rel_diff_vs_ase": float(np.abs(h - h_ase).max() / np.abs(h).max()),
    }
    print(json.dumps(row))
    return row


def scaling_part(copies, repeat):
    from ase.io import read

    from nequip_np import NequIPModel
    from nequip_np.data.graph import graph_from_atoms
    from nequip_np.model.hessian import default_batch, hessian

    mol = read(ASPIRIN, index=0)
    model = NequIPModel(backend="numpy", **MODEL)
    rows = []
    for k in copies:
        atoms = mol.copy()
        for c in range(1, k):
            other = mol.copy()
            other.positions += [20.0 * c, 0.0, 0.0]
            atoms += other
        graph = graph_from_atoms(atoms, MODEL["type_names"], MODEL["r_max"])
        _, t, _ = best_of(lambda g=graph: hessian(model, g), repeat)
        _, t_eval, _ = best_of(lambda g=graph: model.compute(g), 3 * repeat)
        tracemalloc.start()
        hessian(model, graph)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        batch = default_batch(graph)
        row = {
            "n_atoms": len(atoms),
            "n_edges": graph.n_edges,
            "directions": 3 * len(atoms),
            "batch": batch,
            "passes": -(-3 * len(atoms) // batch),
            "hessian_cpu_s": t,
            "eval_cpu_s": t_eval,
            "hessian_in_evals": t / t_eval,
            "peak_traced_MiB": peak / 2**20,
        }
        print(json.dumps(row))
        rows.append(row)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", nargs="*", default=["numpy", "numba"])
    ap.add_argument("--copies", nargs="*", type=int, default=[1, 2, 4, 8])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "hessian.json"))
    a = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # CPU time of one thread: comparable across runs on a loaded machine
    result = {
        "model": MODEL,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "note": "shared 2-core machine (load average > 10 during the run): compare cpu_s "
            "(process CPU time, BLAS on 1 thread), minimum of repeats",
        },
        "aspirin": [aspirin_part(b, a.repeat) for b in a.backends],
        "scaling_numpy": scaling_part(a.copies, a.repeat),
    }
    Path(a.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
