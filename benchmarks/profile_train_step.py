#!/usr/bin/env python
r"""Where a force-trained step's time goes: per pass and per operation, with flops, bytes and floors.

Not a test. One step of ``nequip-np train`` (``loss_and_grad`` + Adam + EMA) on a batch of aspirin
frames, split into its passes:

* ``batching``     — ``batch_graphs`` of the step's frames and the edge vectors;
* ``forward``      — the real forward pass (energies);
* ``force_rev``    — the forces-only reverse pass (``param_grads=False``) and forces/stress;
* ``loss``         — residuals and adjoints (``loss_terms``) and the tangent of the edge vectors;
* ``c_forward``    — the complex-step forward pass (edge vectors :math:`\vec r + i h \dot r`);
* ``c_reverse``    — its reverse pass with parameter gradients (the second-order pass);
* ``optimizer``    — Adam (and the EMA update);
* ``validation``   — the forces-only evaluation of ``--val-frames`` frames (``model.compute``), per epoch.

Every operation of the model's backend (``model.ops``) is wrapped by a timer that also records the
bytes of the arrays it reads and writes (sum of ``nbytes`` of array arguments and results). Flops are
counted analytically for the arithmetic operations (linear, MLP, tensor-product convolution,
self-connection): a real multiply-add is 2 flops; in the complex pass each is counted as 8 (four real
products, four additions), which is what the hardware does. Reverse passes count the adjoint of every
input they produce (``docs/derivations/operations.md``). The floors are ``flops / GEMM rate`` and
``bytes / memory bandwidth``, both measured here, on the same thread count.

Usage::

    python benchmarks/profile_train_step.py --threads 1 --lmax 2 --features 32 \
        --out benchmarks/results/profile_train_step.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from types import SimpleNamespace

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
ASPIRIN = os.path.join(ROOT, "..", "shared", "data", "aspirin_xtb_500K.extxyz")
if not os.path.exists(ASPIRIN):
    ASPIRIN = os.path.join(ROOT, "examples", "data", "aspirin_slice.extxyz")


# ---------------------------------------------------------------------- machine rates
def gemm_rate(n: int = 384, repeats: int = 7) -> float:
    """Measured float64 GEMM rate (flop/s) of NumPy's BLAS, n×n×n, median of ``repeats``."""
    a, b = np.random.default_rng(0).standard_normal((2, n, n))
    a @ b
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t)
    return 2.0 * n**3 / statistics.median(ts)


def memory_bandwidth(mb: int = 128, repeats: int = 7) -> float:
    """Measured copy bandwidth (bytes/s: read + write) of a ``mb`` MB array, median of ``repeats``."""
    src = np.ones(mb * 2**20 // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        ts.append(time.perf_counter() - t)
    return 2.0 * src.nbytes / statistics.median(ts)


# ---------------------------------------------------------------------- timing wrappers
class Recorder:
    """Accumulates (phase, operation) → [seconds, bytes, calls]."""

    def __init__(self):
        self.phase = "?"
        self.rows = defaultdict(lambda: [0.0, 0, 0])

    def add(self, name, dt, nbytes):
        r = self.rows[(self.phase, name)]
        r[0] += dt
        r[1] += nbytes
        r[2] += 1


def _nbytes(obj, depth=0) -> int:
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if depth < 2 and isinstance(obj, (tuple, list)) and not hasattr(obj, "_fields"):
        return sum(_nbytes(o, depth + 1) for o in obj)
    return 0


def _wrap(fn, name, rec):
    def timed(*a, **k):
        t = time.perf_counter()
        out = fn(*a, **k)
        dt = time.perf_counter() - t
        res = out[0] if isinstance(out, tuple) and len(out) == 2 and name.endswith("forward") else out
        rec.add(name, dt, sum(_nbytes(x) for x in a) + _nbytes(res))
        return out

    return timed


def instrument(model, rec: Recorder) -> None:
    """Replace ``model.ops`` by timed wrappers of every operation's forward/backward (and the glue)."""
    ops = model.ops
    wrapped = {}
    for op, mod in vars(ops).items():
        if op == "call_context":
            wrapped[op] = mod
            continue
        ns = {}
        for attr in dir(mod):
            f = getattr(mod, attr)
            if attr.startswith("_") or not callable(f) or isinstance(f, type):
                continue
            label = op if op == "glue" else f"{op}.{attr}"
            ns[attr] = _wrap(f, label, rec) if (op == "glue" or attr in ("forward", "backward")) else f
        wrapped[op] = SimpleNamespace(**ns)
    model.ops = SimpleNamespace(**wrapped)


# ---------------------------------------------------------------------- analytic flop counts
def flop_counts(model, n_atoms: int, n_edges: int) -> dict:
    """Real multiply-add flops of each arithmetic operation's forward and reverse (all layers summed).

    Reverse counts: linear/self-connection/MLP 2× forward with parameter gradients (input adjoint +
    weight gradient), 1× without; the convolution 3× (adjoints of y, Y and w; w's is needed even
    without parameter gradients, for the edge-vector gradient through the radial MLP).
    """
    from nequip_np.kernels.plan import blocks

    fw = defaultdict(float)
    for layer in model.plan.layers:
        for lin in (layer.linear_1, layer.linear_2):
            for i, o, _w in lin.paths:
                bi, bo = lin.bin[i], lin.bout[o]
                fw["linear"] += 2.0 * n_atoms * bi.mul * bo.mul * bi.dim
        dims = layer.radial_dims
        fw["mlp"] += 2.0 * n_edges * sum(a * b for a, b in zip(dims[:-1], dims[1:]))
        for p in layer.conv.paths:
            l1, l2 = p.cg.shape[0], p.cg.shape[1]
            l3 = p.cg.shape[2]
            mul = blocks(layer.conv.irreps_in)[p.i_in].mul
            fw["tp_conv"] += n_edges * (2.0 * l1 * l2 * l3 + 2.0 * mul * l1 * l3 + 2.0 * mul * l3)
        sc = layer.self_connection
        if sc is not None:
            for i, o, _w in sc.paths:
                bi, bo = blocks(sc.irreps_in)[i], blocks(sc.irreps_out)[o]
                # the kernel first contracts the one-hot species row with the weights (per species),
                # then applies one (mul_in × mul_out) map per atom
                fw["self_connection"] += 2.0 * n_atoms * bi.mul * bo.mul * bi.dim
    rd = model.plan.readout_dims
    fw["mlp"] += 2.0 * n_atoms * sum(a * b for a, b in zip(rd[:-1], rd[1:]))
    return dict(fw)


# ---------------------------------------------------------------------- the step, by phase
def run(args) -> dict:
    import numba
    from ase.io import read
    from threadpoolctl import threadpool_limits

    from nequip_np.data.graph import batch_graphs, graph_from_atoms
    from nequip_np.kernels.common import scatter_sum
    from nequip_np.model.nequip import NequIPModel, forces_and_stress
    from nequip_np.train import loss as L
    from nequip_np.train.ema import EMA
    from nequip_np.train.optim import Adam

    numba.set_num_threads(args.threads)
    threadpool_limits(args.threads)  # BLAS on the same thread count (its idle threads spin otherwise)
    frames = read(ASPIRIN, index=f":{args.frames + args.val_frames}")
    types = ["H", "C", "O"]
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
    opt = Adam(model.params, lr=1e-4)
    ema = EMA(model.params, decay=0.99)
    coeffs = L.LossCoefficients(1.0, 1.0, 0.0)
    rec = Recorder()
    instrument(model, rec)

    def step():
        phase = {}

        def mark(name, t0):
            phase[name] = phase.get(name, 0.0) + time.perf_counter() - t0
            return time.perf_counter()

        rec.phase = "batching"
        t = time.perf_counter()
        g = batch_graphs(train_g)
        vec = g.edge_vectors()
        t = mark("batching", t)
        rec.phase = "forward"
        atomic, cache = model.forward(g, vec)
        t = mark("forward", t)
        rec.phase = "force_rev"
        d_vec, _ = model.backward(np.ones_like(atomic), cache, g, param_grads=False)
        pred = {"atomic_energy": atomic, "total_energy": scatter_sum(atomic, g.batch, g.n_frames)}
        pred.update(forces_and_stress(g, vec, d_vec))
        t = mark("force_rev", t)
        rec.phase = "loss"
        loss, _, a, W, _S = L.loss_terms(g, pred, coeffs)
        dst, src = g.edge_index
        tangent = W[dst] - W[src]
        del cache
        t = mark("loss", t)
        rec.phase = "c_forward"
        h = L.COMPLEX_STEP
        low = args.low_memory or L.radial_cache_bytes(model, g.n_edges) > L.LOW_MEMORY_BYTES
        _, cache_c = model.forward(g, vec + 1j * h * tangent, low_memory=low)
        t = mark("c_forward", t)
        rec.phase = "c_reverse"
        _, grads = model.backward((a - 1j / h)[g.batch], cache_c, g)
        grads = L._real(grads)
        t = mark("c_reverse", t)
        rec.phase = "optimizer"
        opt.step(grads)
        ema.update(model.params)
        mark("optimizer", t)
        return phase, g

    def validation(batch_size):
        rec.phase = f"validation(bs={batch_size})"
        t = time.perf_counter()
        for s in range(0, len(val_g), batch_size):
            b = batch_graphs(val_g[s : s + batch_size])
            model.compute(b, params=ema.params)
        return time.perf_counter() - t

    for _ in range(2):  # warm-up: JIT, allocator
        _, g = step()
        validation(args.val_batch)
    rec.rows.clear()
    phases = defaultdict(list)
    vals = defaultdict(list)
    for _ in range(args.repeats):
        p, g = step()
        for k, v in p.items():
            phases[k].append(v)
        for bs in sorted({args.batch_size_small, args.val_batch}):
            vals[bs].append(validation(bs))
    R = args.repeats
    gemm, bw = gemm_rate(), memory_bandwidth()
    fw = flop_counts(model, g.n_atoms, g.n_edges)
    ops_rows = []
    for (ph, name), (sec, nb, calls) in sorted(rec.rows.items(), key=lambda kv: -kv[1][0]):
        op, _, kind = name.partition(".")
        f = 0.0
        if op in fw and ph in ("forward", "force_rev", "c_forward", "c_reverse"):
            base = fw[op]
            if kind == "backward":
                base *= 3.0 if op == "tp_conv" else (2.0 if ph == "c_reverse" else 1.0)
            f = base * (4.0 if ph.startswith("c_") else 1.0)
        if ph.startswith("validation"):
            continue
        ops_rows.append(
            dict(
                phase=ph,
                op=name,
                calls_per_step=calls / R,
                ms=1e3 * sec / R,
                mflop=f / 1e6,
                mbyte=nb / R / 1e6,
                floor_ms=1e3 * max(f / gemm, nb / R / bw),
            )
        )
    phase_ms = {k: 1e3 * statistics.median(v) for k, v in phases.items()}
    step_ms = sum(phase_ms.values())
    flops_total = sum(r["mflop"] for r in ops_rows) * 1e6
    bytes_total = sum(r["mbyte"] for r in ops_rows) * 1e6
    out = dict(
        benchmark="profile_train_step",
        threads=args.threads,
        low_memory_forced=args.low_memory,
        l_max=args.lmax,
        features=args.features,
        layers=args.layers,
        frames=args.frames,
        n_atoms=g.n_atoms,
        n_edges=g.n_edges,
        gemm_gflops=gemm / 1e9,
        bandwidth_gbs=bw / 1e9,
        phase_median_ms=phase_ms,
        step_ms=step_ms,
        step_gflop=flops_total / 1e9,
        step_floor_ms=1e3 * max(flops_total / gemm, bytes_total / bw),
        kernel_ms_per_step=sum(r["ms"] for r in ops_rows),
        validation_ms={f"{args.val_frames} frames, batch {bs}": 1e3 * statistics.median(v) for bs, v in vals.items()},
        ops=ops_rows,
        load_average=list(os.getloadavg()),
    )
    return out


def _machine() -> dict:
    from bench_cpu import machine

    return machine(argparse.Namespace(nequip_python=None))


def table(res: dict, top: int = 25) -> str:
    lines = [
        f"threads {res['threads']}, l_max {res['l_max']}, {res['features']} features, {res['layers']} layers, "
        f"{res['frames']} frames ({res['n_atoms']} atoms, {res['n_edges']} edges); GEMM "
        f"{res['gemm_gflops']:.1f} GFLOP/s, bandwidth {res['bandwidth_gbs']:.1f} GB/s",
        "",
        "| pass | median ms |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {v:.2f} |" for k, v in res["phase_median_ms"].items()]
    lines += [
        f"| **step** | **{res['step_ms']:.2f}** (floor {res['step_floor_ms']:.2f}: {res['step_gflop']:.3f} GFLOP) |"
    ]
    lines += [f"| validation {k} | {v:.1f} |" for k, v in res["validation_ms"].items()]
    lines += ["", "| pass | operation | calls | ms | MFLOP | MB | floor ms |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in res["ops"][:top]:
        lines.append(
            f"| {r['phase']} | {r['op']} | {r['calls_per_step']:.0f} | {r['ms']:.2f} | {r['mflop']:.1f} | "
            f"{r['mbyte']:.1f} | {r['floor_ms']:.3f} |"
        )
    lines.append(
        f"\nsum of kernel times {res['kernel_ms_per_step']:.1f} ms of a {res['step_ms']:.1f} ms step "
        "(the rest: Python between operations, allocation, loss arithmetic)"
    )
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lmax", type=int, default=2)
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--frames", type=int, default=5)
    p.add_argument("--val-frames", type=int, default=50)
    p.add_argument("--val-batch", type=int, default=50)
    p.add_argument("--batch-size-small", type=int, default=5, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--low-memory",
        action="store_true",
        help="recompute the radial MLP in the complex reverse pass (every step did, before the size rule)",
    )
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    res = run(args)
    res["machine"] = _machine()
    print(table(res))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=1)
        print(f"written {args.out}")


if __name__ == "__main__":
    sys.exit(main())
