#!/usr/bin/env python
r"""A/B of training-loop variants, alternated in one process (medians, spread, thread count recorded).

Not a test. Variants, each timed round-robin (A, B, A, B, …) after a warm-up so that load from other
processes hits both sides alike:

* ``low_memory``   — the complex pass recomputing the radial MLP in the reverse pass (True) or keeping
  its caches (False); ``loss_and_grad(low_memory=...)``;
* ``val_batch``    — forces-only validation of ``--val-frames`` frames in batches of 5 or of all of them;
* ``batching``     — ``batch_graphs`` of one training batch (the work a precomputed batch would save),
  reported next to the step it belongs to;
* ``--silu``        — the step with the complex-step SiLU taking exp from NumPy (now) against the
  earlier Numba-scalar-exp loops (defined here, swapped in for the B side);
* ``--edge-grads``  — the step with the complex reverse pass forming parameter gradients only
  (``edge_grads=False``: the tensor products skip d_Y, no spherical-harmonics / edge-embedding
  reverse; now) against the full reverse pass whose edge-vector gradient is discarded (before);
* ``--scaling``     — the force-trained step (``loss_and_grad`` + Adam) at 1 and at 2 threads, alternated
  in one process (``numba.set_num_threads`` and the BLAS limit switched between calls), on 5 aspirin
  frames or on Cu 108 (fcc 3×3×3, rattled, r_max 5 Å).

Usage::

    python benchmarks/ab_train_step.py --threads 1 --out benchmarks/results/ab_train_step_1t.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from profile_train_step import ASPIRIN, _machine  # noqa: E402


def _stats(v):
    return {"median_ms": 1e3 * statistics.median(v), "min_ms": 1e3 * min(v), "max_ms": 1e3 * max(v), "n": len(v)}


def alternate(variants: dict, repeats: int) -> dict:
    """Time each callable ``repeats`` times, round-robin, after one warm-up call each."""
    for f in variants.values():
        f()
    times = {k: [] for k in variants}
    for _ in range(repeats):
        for k, f in variants.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: _stats(v) for k, v in times.items()}


def cu_graph(r_max=5.0):
    """Cu 108 (fcc 3×3×3, rattled) with zero labels: a periodic timing input."""
    from ase.build import bulk
    from ase.calculators.singlepoint import SinglePointCalculator

    from nequip_np.data.graph import graph_from_atoms

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((3, 3, 3))
    atoms.rattle(0.05, seed=0)
    atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=np.zeros((len(atoms), 3)))
    return graph_from_atoms(atoms, ["Cu"], r_max, with_labels=True)


def _scalar_exp_silu():
    """The complex-step SiLU loops as they were before NumPy's exp was used (for the A/B)."""
    import numba
    from numba import prange

    from nequip_np.kernels._numba_util import SCALAR

    silu, silu_grad, silu_grad2 = SCALAR.silu, SCALAR.silu_grad, SCALAR.silu_grad2

    @numba.njit(parallel=True, nogil=True)
    def silu_dual(z, e):
        out = np.empty_like(z)
        for i in prange(z.size):
            re, im = z[i].real, z[i].imag
            out[i] = complex(silu(re), im * silu_grad(re))
        return out

    @numba.njit(parallel=True, nogil=True)
    def dh_silu_grad_dual(dh, z, e):
        out = np.empty_like(dh)
        for i in prange(z.size):
            re, im = z[i].real, z[i].imag
            out[i] = dh[i] * complex(silu_grad(re), im * silu_grad2(re))
        return out

    return silu_dual, dh_silu_grad_dual, (lambda z: z.real)


def _aspirin_step_setup(args):
    """Threads set, the (model, batch, loss coefficients) of one force-trained step on aspirin frames."""
    import numba
    from ase.io import read
    from threadpoolctl import threadpool_limits

    from nequip_np.data.graph import batch_graphs, graph_from_atoms
    from nequip_np.model.nequip import NequIPModel
    from nequip_np.train.loss import LossCoefficients

    numba.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    types = ["H", "C", "O"]
    batch = batch_graphs(
        [graph_from_atoms(a, types, 5.0, with_labels=True) for a in read(ASPIRIN, index=f":{args.frames}")]
    )
    model = NequIPModel(
        backend="numba",
        type_names=types,
        r_max=5.0,
        num_layers=args.layers,
        l_max=args.lmax,
        num_features=args.features,
        avg_num_neighbors=20.0,
        seed=0,
    )
    return model, batch, LossCoefficients(1.0, 1.0, 0.0)


def silu_ab(args) -> dict:
    """Force-trained step with the NumPy-exp complex SiLU (current) vs the scalar-exp loops."""
    from nequip_np.kernels.mlp import cpu as mlp
    from nequip_np.train.loss import loss_and_grad

    model, batch, coeffs = _aspirin_step_setup(args)
    now = (mlp._silu_dual_e, mlp._dh_silu_grad_dual_e, mlp._exp_neg_real)
    before = _scalar_exp_silu()

    def with_kernels(k):
        def f():
            mlp._silu_dual_e, mlp._dh_silu_grad_dual_e, mlp._exp_neg_real = k
            try:
                return loss_and_grad(model, batch, coeffs)
            finally:
                mlp._silu_dual_e, mlp._dh_silu_grad_dual_e, mlp._exp_neg_real = now

        return f

    ga, gb = with_kernels(now)()[2], with_kernels(before)()[2]
    diff = max(float(np.max(np.abs(ga[k] - gb[k])) / (np.max(np.abs(ga[k])) + 1e-300)) for k in ga)
    res = alternate(
        {"SiLU exp from NumPy (now)": with_kernels(now), "SiLU scalar exp in Numba (before)": with_kernels(before)},
        args.repeats,
    )
    return {
        "threads": args.threads,
        "l_max": args.lmax,
        "features": args.features,
        "layers": args.layers,
        "n_edges": batch.n_edges,
        "steps": res,
        "max_rel_grad_diff": diff,
        "load_average": list(os.getloadavg()),
    }


def edge_grads_ab(args) -> dict:
    """Force-trained step: complex reverse pass with parameter gradients only (now) vs the full one."""
    from nequip_np.train.loss import loss_and_grad

    model, batch, coeffs = _aspirin_step_setup(args)
    lean = model.backward

    def full(*a, **kw):  # what the step did before: the edge-vector gradient formed, then dropped
        kw["edge_grads"] = True
        return lean(*a, **kw)

    def step(backward):
        def f():
            model.backward = backward
            try:
                return loss_and_grad(model, batch, coeffs)
            finally:
                model.backward = lean

        return f

    ga, gb = step(lean)()[2], step(full)()[2]
    diff = max(float(np.max(np.abs(ga[k] - gb[k])) / (np.max(np.abs(ga[k])) + 1e-300)) for k in ga)
    res = alternate(
        {"parameter gradients only (now)": step(lean), "full reverse pass (before)": step(full)}, args.repeats
    )
    return {
        "threads": args.threads,
        "l_max": args.lmax,
        "features": args.features,
        "layers": args.layers,
        "n_edges": batch.n_edges,
        "steps": res,
        "max_rel_grad_diff": diff,
        "load_average": list(os.getloadavg()),
    }


def scaling(args) -> dict:
    """Step time at 1 and 2 threads, alternated in one process."""
    import numba
    from ase.io import read
    from threadpoolctl import threadpool_limits

    from nequip_np.data.graph import batch_graphs, graph_from_atoms
    from nequip_np.model.nequip import NequIPModel
    from nequip_np.train.loss import LossCoefficients, loss_and_grad
    from nequip_np.train.optim import Adam

    if args.system == "cu108":
        types, batch = ["Cu"], cu_graph()
    else:
        types = ["H", "C", "O"]
        batch = batch_graphs(
            [graph_from_atoms(a, types, 5.0, with_labels=True) for a in read(ASPIRIN, index=f":{args.frames}")]
        )
    model = NequIPModel(
        backend="numba",
        type_names=types,
        r_max=5.0,
        num_layers=args.layers,
        l_max=args.lmax,
        num_features=args.features,
        avg_num_neighbors=20.0,
        seed=0,
    )
    opt = Adam(model.params, lr=1e-6)
    coeffs = LossCoefficients(1.0, 1.0, 0.0)

    def step(n):
        def f():
            numba.set_num_threads(n)
            with threadpool_limits(n):
                opt.step(loss_and_grad(model, batch, coeffs)[2])

        return f

    res = alternate({f"{n} thread(s)": step(n) for n in (1, 2)}, args.repeats)
    return {
        "system": args.system,
        "n_atoms": batch.n_atoms,
        "n_edges": batch.n_edges,
        "l_max": args.lmax,
        "features": args.features,
        "layers": args.layers,
        "steps": res,
        "speedup_2_over_1": res["1 thread(s)"]["median_ms"] / res["2 thread(s)"]["median_ms"],
        "load_average": list(os.getloadavg()),
    }


def run(args) -> dict:
    import numba
    from ase.io import read
    from threadpoolctl import threadpool_limits

    from nequip_np.data.graph import batch_graphs, graph_from_atoms
    from nequip_np.model.nequip import NequIPModel
    from nequip_np.train.loss import LossCoefficients, loss_and_grad

    numba.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    types = ["H", "C", "O"]
    frames = read(ASPIRIN, index=f":{args.frames + args.val_frames}")
    graphs = [graph_from_atoms(a, types, 5.0, with_labels=True) for a in frames]
    train_g, val_g = graphs[: args.frames], graphs[args.frames :]
    model = NequIPModel(
        backend="numba",
        type_names=types,
        r_max=5.0,
        num_layers=args.layers,
        l_max=args.lmax,
        num_features=args.features,
        avg_num_neighbors=20.0,
        seed=0,
    )
    coeffs = LossCoefficients(1.0, 1.0, 0.0)
    batch = batch_graphs(train_g)
    ref = loss_and_grad(model, batch, coeffs, low_memory=True)[2]
    other = loss_and_grad(model, batch, coeffs, low_memory=False)[2]
    same = max(float(np.max(np.abs(ref[k] - other[k])) / (np.max(np.abs(ref[k])) + 1e-300)) for k in ref)
    out = {
        "threads": args.threads,
        "l_max": args.lmax,
        "features": args.features,
        "layers": args.layers,
        "frames": args.frames,
        "n_atoms": batch.n_atoms,
        "n_edges": batch.n_edges,
        "low_memory_max_rel_grad_diff": same,
    }
    out["low_memory"] = alternate(
        {
            "low_memory=True (recompute)": lambda: loss_and_grad(model, batch, coeffs, low_memory=True),
            "low_memory=False (keep)": lambda: loss_and_grad(model, batch, coeffs, low_memory=False),
        },
        args.repeats,
    )
    out["batching"] = alternate({"batch_graphs of one training batch": lambda: batch_graphs(train_g)}, args.repeats)

    def validate(bs):
        def f():
            for s in range(0, len(val_g), bs):
                model.compute(batch_graphs(val_g[s : s + bs]))

        return f

    out["val_batch"] = alternate(
        {f"{len(val_g)} frames, batch {bs}": validate(bs) for bs in (args.frames, len(val_g))},
        max(3, args.repeats // 2),
    )
    out["load_average"] = list(os.getloadavg())
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lmax", type=int, default=2)
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--val-frames", type=int, default=50)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--scaling", action="store_true", help="1 vs 2 threads for the step")
    p.add_argument("--silu", action="store_true", help="complex SiLU: NumPy exp vs scalar exp")
    p.add_argument("--edge-grads", action="store_true", help="complex reverse pass: parameter gradients only vs full")
    p.add_argument("--system", choices=("aspirin", "cu108"), default="aspirin")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.scaling:
        res = scaling(args)
    elif args.silu:
        res = silu_ab(args)
    elif args.edge_grads:
        res = edge_grads_ab(args)
    else:
        res = run(args)
    res["machine"] = _machine()
    print(json.dumps(res, indent=1))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
