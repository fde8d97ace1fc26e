#!/usr/bin/env python
r"""CUDA backend: kernel launches and host↔device bytes per energy+forces call and per training step.

Not a test. Counts come from ``nequip_np.kernels._cuda_util`` (every launch and every copy of the
backend goes through it). Without a GPU the script re-runs itself under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``): launch and transfer counts are the same as on a device (same code path,
same grid decisions except the block size, which does not change the number of launches), but
wall-clock times of the simulator say nothing about a GPU and are not reported. On a GPU the script
also reports the median time per call (after warm-up; ``cuda.synchronize()`` before each clock read).

Scenarios, for a small molecule (the simulator runs every GPU thread as a Python thread):

- ``first_call``: energy + forces on a fresh model — uploads parameters, graph arrays, CSRs, tables;
- ``md_step``: the atoms moved, same neighbour list (Verlet skin) — the steady state of MD;
- ``md_step_new_neighbor_list``: the atoms moved and the edge list changed (a neighbour-list rebuild);
- ``train_step_energy_forces``: ``loss_and_grad`` (energy + force loss) after a parameter update;
- ``train_step_energy_only``: the same with an energy-only loss.

Usage::

    python benchmarks/bench_cuda.py --out benchmarks/results/cuda_sim_launches.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

if "NUMBA_ENABLE_CUDASIM" not in os.environ:  # must be decided before numba.cuda is imported
    from nequip_np.kernels._cuda_util import cuda_unavailable_reason

    if cuda_unavailable_reason() is not None:
        print(f"no GPU ({cuda_unavailable_reason()}): re-running under NUMBA_ENABLE_CUDASIM=1", flush=True)
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
        os.execv(sys.executable, [sys.executable, *sys.argv])

import numpy as np  # noqa: E402
from ase.build import molecule  # noqa: E402

from nequip_np.data.graph import graph_from_atoms  # noqa: E402
from nequip_np.kernels import _cuda_util as cu  # noqa: E402
from nequip_np.model.nequip import NequIPModel  # noqa: E402
from nequip_np.train.loss import LossCoefficients, loss_and_grad  # noqa: E402

CONFIG = dict(
    type_names=["H", "C", "O"],
    r_max=3.5,
    num_layers=2,
    l_max=2,
    parity=True,
    num_features=[4, 3, 2],
    radial_mlp_depth=1,
    radial_mlp_width=8,
    num_bessels=6,
    polynomial_cutoff_p=6,
    avg_num_neighbors=4.0,
    readout_mlp_hidden_layers_depth=1,
    readout_mlp_hidden_layers_width=4,
    per_type_energy_scales={"H": 0.7, "C": 1.3, "O": 1.1},
    per_type_energy_shifts={"H": -13.1, "C": -1030.5, "O": -2040.2},
    seed=0,
)


def measure(fn, gpu: bool, repeats: int) -> dict:
    """Counters of one call of ``fn`` (and, on a GPU, the median time of ``repeats`` further calls)."""
    cu.reset_counters()
    fn()
    h2d, d2h = cu.transfer_bytes()
    row = {
        "launches": cu.launch_count(),
        "h2d_bytes": h2d,
        "d2h_bytes": d2h,
        "launches_by_kernel": cu.launch_counts_by_kernel(),
    }
    if gpu:
        from numba import cuda

        times = []
        for _ in range(repeats):
            cuda.synchronize()
            t = time.perf_counter()
            fn()
            cuda.synchronize()
            times.append(time.perf_counter() - t)
        row["median_ms"] = 1e3 * statistics.median(times)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "results", "cuda_sim_launches.json"))
    ap.add_argument("--molecule", default="CH3OH", help="an ase.build.molecule name of H, C, O atoms")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--repeats", type=int, default=20, help="timed calls per scenario (GPU only)")
    args = ap.parse_args()
    sim = cu.simulator_enabled()
    gpu = not sim
    model = NequIPModel(backend="cuda", model_dtype=args.dtype, **CONFIG)
    atoms = molecule(args.molecule)
    rng = np.random.default_rng(0)

    def graph_of(a):
        g = graph_from_atoms(a, CONFIG["type_names"], CONFIG["r_max"])
        g.energy, g.forces = np.array([-1000.0]), rng.standard_normal((len(a), 3))
        return g

    graph = graph_of(atoms)
    n, e, f = graph.pos.shape[0], graph.edge_index.shape[1], graph.n_frames
    results = {}
    print(f"{args.molecule}: N={n} atoms, E={e} edges; {'simulator' if sim else 'GPU'}", flush=True)
    results["first_call"] = measure(lambda: model.compute(graph, stress=False), False, 0)
    graph.pos = graph.pos + 0.01 * rng.standard_normal(graph.pos.shape)  # same edges (checked below)
    results["md_step"] = measure(lambda: model.compute(graph, stress=False), gpu, args.repeats)
    moved = atoms.copy()
    moved.positions[0] += [8.0, 0.0, 0.0]  # beyond r_max of every other atom: fewer edges
    g2 = graph_of(moved)
    results["md_step_new_neighbor_list"] = measure(lambda: model.compute(g2, stress=False), False, 0)
    results["md_step_new_neighbor_list"]["n_edges"] = int(g2.edge_index.shape[1])
    assert g2.edge_index.shape[1] < e

    def train_step(coeffs):
        for v in model.params.values():  # what an optimiser step does: every parameter changes
            v *= 1.0 + 1e-6
        return loss_and_grad(model, graph, coeffs)

    results["train_step_energy_forces"] = measure(
        lambda: train_step(LossCoefficients(1.0, 1.0, 0.0)), gpu, args.repeats
    )
    results["train_step_energy_only"] = measure(lambda: train_step(LossCoefficients(1.0, 0.0, 0.0)), gpu, args.repeats)
    param_bytes = int(sum(v.nbytes for v in model.params.values()))
    report = {
        "what": "kernel launches and host<->device bytes per call, backend='cuda'",
        "device": "numba CUDA simulator (no GPU): counts only; timings await a GPU" if sim else "GPU",
        "numba": __import__("numba").__version__,
        "python": platform.python_version(),
        "system": {"molecule": args.molecule, "n_atoms": n, "n_edges": e, "n_frames": f},
        "model": {k: v for k, v in CONFIG.items() if k not in ("per_type_energy_scales", "per_type_energy_shifts")}
        | {
            "model_dtype": args.dtype,
            "n_params": int(sum(v.size for v in model.params.values())),
            "param_bytes": param_bytes,
        },
        "expected_md_step_bytes": {
            "h2d": "E*3*8 (edge vectors)",
            "h2d_value": e * 24,
            "d2h": "(N + 3N + 9F)*8 (atomic energies, forces, virial)",
            "d2h_value": (4 * n + 9 * f) * 8,
        },
        "scenarios": results,
    }
    assert results["md_step"]["h2d_bytes"] == e * 24 and results["md_step"]["d2h_bytes"] == (4 * n + 9 * f) * 8
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
        fh.write("\n")
    for name, row in results.items():
        t = f", {row['median_ms']:.3f} ms" if "median_ms" in row else ""
        print(f"{name:28s} launches {row['launches']:5d}  h2d {row['h2d_bytes']:8d} B  d2h {row['d2h_bytes']:8d} B{t}")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
