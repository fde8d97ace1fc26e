#!/usr/bin/env python
r"""CPU benchmark: backend="numba" vs backend="numpy" vs official nequip 0.19.1 (eager, CPU), same weights.

Not a test. Calls are ALTERNATED (numba, numpy, nequip, numba, …) so that load drift on a shared
machine hits every implementation alike; the median per call is reported. Official nequip runs in a
worker process (``--nequip-python``: an interpreter with torch + nequip, e.g. a scratch venv) that
builds the model with ``NequIPGNNModel(seed=…)``; its state_dict is imported here through
``nequip_np.interop`` so all three evaluate the same weights on the same edges. Thread counts: one
child process per count, with ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS`` set, ``numba.set_num_threads``
and ``torch.set_num_threads`` to the same value.

Flop model (multiply-adds of the forward pass, from the plan; ``flops`` = 2 · MACs · 3, taking the
reverse pass of an energy+forces call as two forward-equivalents):

.. math::

    \mathrm{MAC} = \sum_{\rm layers}\Big[E\sum_k d_k d_{k+1}
        + E\sum_{p\in\rm TP}\big(\mathrm{nnz}(\tilde C_p) + \mathrm{mul}_p d_{1p} d_{3p} + \mathrm{mul}_p d_{3p}\big)
        + N\!\!\sum_{p\in\rm lin_1, lin_2, sc}\!\!\mathrm{mul}_{\rm in}\mathrm{mul}_{\rm out} d_p\Big]
        + N\sum_k r_k r_{k+1}.

Usage (see docs/benchmarks.md for what was run)::

    python benchmarks/bench_cpu.py --nequip-python /path/to/venv/bin/python --out benchmarks/results/cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ASPIRIN = os.environ.get("ASPIRIN_XTB", os.path.join(ROOT, "..", "shared", "data", "aspirin_xtb_500K.extxyz"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ====================================================================== nequip worker (torch side)
def worker() -> None:
    """JSON-lines server: build / data / call / rss. Imports only torch, nequip, numpy."""
    import torch

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from export_nequip import build_model, export_state
    from nequip.data import AtomicDataDict, from_dict

    models, datas = {}, {}
    for line in sys.stdin:
        req = json.loads(line)
        cmd, out = req["cmd"], {}
        if cmd == "build":
            torch.set_default_dtype(torch.float64)
            model = build_model(req["kwargs"])
            model.eval()
            export_state(model, req["kwargs"], req["path"])
            models[req["key"]] = model
        elif cmd == "data":
            z = np.load(req["path"])
            d = from_dict(
                {
                    "pos": z["pos"],
                    "atom_types": z["atom_types"],
                    "cell": z["cell"],
                    "pbc": z["pbc"],
                    "edge_index": z["edge_index"],
                    "edge_cell_shift": z["edge_shift"],
                }
            )
            datas[req["key"]] = d
        elif cmd == "compile":  # nequip-compile --mode aotinductor --target ase of our exported checkpoint
            out.update(compile_official(req, datas[req["data"]]))
            if "path" in out:
                from nequip.model.inference_models.compiled import load_compiled_model

                models[req["key"]] = load_compiled_model(out["path"], "cpu")[0]
        elif cmd == "threads":
            torch.set_num_threads(int(req["n"]))
        elif cmd == "call":
            model, d = models[req["model"]], datas[req["data"]]
            t = time.perf_counter()
            res = model({k: (v.clone() if torch.is_tensor(v) else v) for k, v in d.items()})
            out["seconds"] = time.perf_counter() - t
            out["energy"] = float(res[AtomicDataDict.TOTAL_ENERGY_KEY].detach().double().sum())
            out["forces"] = (
                res[AtomicDataDict.FORCE_KEY].detach().double().numpy().tolist() if req.get("forces") else None
            )
        out["rss_mb"] = peak_rss_mb()
        print(json.dumps(out), flush=True)


def compile_official(req, data) -> dict:
    """Compile ``req["ckpt"]`` with official ``nequip-compile`` (AOTInductor, CPU, target ase), cached by path.

    The compile needs example data of realistic shapes (``--data-path``: a TorchScript module whose
    buffers are the fields): the benchmark's own graph. Returns ``{"path", "compile_s"}`` or ``{"error"}``
    (the tail of nequip-compile's output), so that a failing compile is recorded, not fatal.
    """
    import torch

    out_path = req["out"]
    if os.path.exists(out_path):
        return {"path": out_path, "compile_s": None, "cached": True}

    class Fields(torch.nn.Module):
        def __init__(self, fields):
            super().__init__()
            for k, v in fields.items():
                if torch.is_tensor(v):
                    self.register_buffer(k, v)

    fields = dict(data)
    cell = fields.get("cell")
    if cell is not None and float(torch.linalg.det(cell.reshape(3, 3).double()).abs()) < 1e-9:
        # a molecule: the compile check of target ase compares stress, NaN without a cell; a 50 Å box
        # with pbc (no periodic image within r_max, the same edges) makes it finite
        fields["cell"] = 50.0 * torch.eye(3, dtype=cell.dtype).reshape(cell.shape)
        fields["pbc"] = torch.ones_like(fields["pbc"]) if "pbc" in fields else None
    data_path = out_path + ".data.pt"
    torch.jit.script(Fields({k: v for k, v in fields.items() if v is not None})).save(data_path)
    exe = os.path.join(os.path.dirname(sys.executable), "nequip-compile")
    cmd = [exe, req["ckpt"], out_path, "--mode", "aotinductor", "--device", "cpu", "--target", "ase"]
    t = time.perf_counter()
    proc = subprocess.run(cmd + ["--data-path", data_path], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode or not os.path.exists(out_path):
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-6:]
        return {"error": " | ".join(tail)[-1500:], "compile_s": seconds}
    return {"path": out_path, "compile_s": seconds}


class Nequip:
    """Client of a JSON-lines worker (``script --worker``) run by the torch interpreter ``python``."""

    def __init__(self, python: str, script: str = __file__):
        self.proc = subprocess.Popen(
            [python, os.path.abspath(script), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def __call__(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the official-nequip worker died (see its stderr above)")
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


# ====================================================================== our side
def structures(names):
    from ase.build import bulk
    from ase.io import read

    out = {}
    for name in names:
        if name == "aspirin":
            out[name] = read(ASPIRIN, index=0)
        else:  # cu<N>: rattled fcc Cu, cubic cells repeated
            n = int(name[2:])
            rep = max(1, round((n / 4) ** (1 / 3)))
            at = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((rep, rep, rep))
            at.rattle(0.05, seed=1)
            out[name] = at
    return out


def model_kwargs(system, l_max, dtype, features):
    types = ["H", "C", "O"] if system == "aspirin" else ["Cu"]
    return dict(
        seed=123,
        type_names=types,
        r_max=5.0,
        l_max=l_max,
        num_layers=4,
        num_features=features,
        radial_mlp_depth=1,
        radial_mlp_width=128,
        num_bessels=8,
        model_dtype=dtype,
        avg_num_neighbors=20.0 if system == "aspirin" else 78.0,
        per_type_energy_scales={t: 1.0 for t in types},
        per_type_energy_shifts={t: 0.0 for t in types},
    )


def flop_count(model, n_atoms, n_edges) -> dict:
    macs = {"radial_mlp": 0, "tensor_product": 0, "linear": 0, "self_connection": 0, "readout": 0}
    for layer in model.plan.layers:
        macs["radial_mlp"] += n_edges * sum(a * b for a, b in zip(layer.radial_dims[:-1], layer.radial_dims[1:]))
        for row in layer.conv.tables.paths:  # in0, d1, sh0, d2, mid0, d3, woff, mul, nz0, nz1
            macs["tensor_product"] += n_edges * ((row[9] - row[8]) + row[7] * row[1] * row[5] + row[7] * row[5])
        for lin in (layer.linear_1, layer.linear_2):
            bi, bo = lin.bin, lin.bout
            macs["linear"] += n_atoms * sum(bi[i].mul * bo[o].mul * bi[i].dim for i, o, _ in lin.paths)
        if layer.self_connection is not None:
            from nequip_np.kernels.plan import blocks

            sc = layer.self_connection
            bi, bo = blocks(sc.irreps_in), blocks(sc.irreps_out)
            macs["self_connection"] += n_atoms * sum(bi[i].mul * bo[o].mul * bi[i].dim for i, o, _ in sc.paths)
    d = model.plan.readout_dims
    macs["readout"] = n_atoms * sum(a * b for a, b in zip(d[:-1], d[1:]))
    total = sum(macs.values())
    return {"forward_macs": {k: int(v) for k, v in macs.items()}, "flops_per_call": int(6 * total)}


def child(args) -> list:
    """One thread count: every (system, l_max, dtype) case, implementations alternated."""
    import numba

    from nequip_np.data.graph import graph_from_atoms
    from nequip_np.interop import nequip_npz

    numba.set_num_threads(args.threads)
    if args.retain_memory:  # as NequIPCalculator does by default: freed per-call arrays stay in the heap
        from nequip_np.kernels.memory import retain_freed_memory

        retain_freed_memory()
    nq = Nequip(args.nequip_python) if args.nequip_python else None
    if nq:
        nq(cmd="threads", n=args.threads)
    tmp = tempfile.mkdtemp(prefix="bench_cpu_")
    rows, compiled = [], {}
    atoms = structures(args.systems)
    for system, at in atoms.items():
        for l_max in args.lmax:
            for dtype in args.dtypes:
                kw = model_kwargs(system, l_max, dtype, args.features)
                graph = graph_from_atoms(at, kw["type_names"], kw["r_max"])
                key = f"{system}-l{l_max}-{dtype}"
                impls = {}
                if nq:
                    npz = os.path.join(tmp, key + ".npz")
                    nq(cmd="build", key=key, kwargs=kw, path=npz)
                    kws, state = nequip_npz.read_nequip_npz(npz)
                    gpath = os.path.join(tmp, key + "-graph.npz")
                    np.savez(
                        gpath,
                        pos=graph.pos,
                        atom_types=graph.atom_types,
                        cell=graph.cell[0],
                        pbc=graph.pbc[0],
                        edge_index=graph.edge_index,
                        edge_shift=graph.edge_shift,
                    )
                    nq(cmd="data", key=key, path=gpath)
                    make = lambda b: nequip_npz.model_from_state(kws, state, backend=b)  # noqa: E731
                    if args.compiled and graph.n_atoms <= args.nequip_max_atoms:
                        compiled[key] = compile_column(nq, key, make("numpy"), args.compiled_dir)
                    if args.compile_only:  # fill the --compiled-dir cache, time nothing
                        rows.append(dict(system=system, l_max=l_max, dtype=dtype, nequip_compiled=compiled.get(key)))
                        continue
                else:
                    from nequip_np.model.nequip import NequIPModel

                    make = lambda b: NequIPModel(backend=b, **kw)  # noqa: E731
                skip_numpy = graph.n_atoms > args.numpy_max_atoms
                for b in ["numba"] + ([] if skip_numpy else ["numpy"]):
                    m = make(b)
                    impls[b] = lambda m=m: m.compute(graph)
                if args.tables:  # the same weights, radial MLP read from 512-node tables (MD's default path)
                    mt = make("numba")
                    mt.use_radial_tables(512)
                    impls["numba_tables"] = lambda m=mt: m.compute(graph)
                if nq and graph.n_atoms <= args.nequip_max_atoms:
                    impls["nequip"] = lambda: nq(cmd="call", model=key, data=key)
                if "path" in compiled.get(key, {}):
                    impls["nequip_compiled"] = lambda: nq(cmd="call", model=key + "/aoti", data=key)
                times = {k: [] for k in impls}
                energies = {}
                for r in range(args.repeats + 1):  # first round = warm-up (JIT, allocator), discarded
                    for name, f in impls.items():
                        t = time.perf_counter()
                        res = f()
                        official = name.startswith("nequip")
                        dt = res["seconds"] if official else time.perf_counter() - t
                        if r:
                            times[name].append(dt)
                        energies[name] = res["energy"] if official else float(res["total_energy"][0])
                fl = flop_count(impls and make("numpy"), graph.n_atoms, graph.n_edges)
                row = dict(
                    system=system,
                    n_atoms=graph.n_atoms,
                    n_edges=graph.n_edges,
                    l_max=l_max,
                    dtype=dtype,
                    features=args.features,
                    threads=args.threads,
                    repeats=args.repeats,
                    median_ms={k: 1e3 * statistics.median(v) for k, v in times.items()},
                    all_ms={k: [1e3 * x for x in v] for k, v in times.items()},
                    energy=energies,
                    **fl,
                )
                med = row["median_ms"]
                row["atom_steps_per_s"] = {k: graph.n_atoms / (v / 1e3) for k, v in med.items()}
                row["us_per_atom"] = {k: 1e3 * v / graph.n_atoms for k, v in med.items()}
                row["gflops"] = {k: fl["flops_per_call"] / (v / 1e3) / 1e9 for k, v in med.items()}
                if "nequip" in med:
                    row["ratio_vs_nequip"] = {k: v / med["nequip"] for k, v in med.items() if k != "nequip"}
                if key in compiled:
                    row["nequip_compiled"] = compiled[key]  # compile seconds, or the error it gave
                    if "nequip_compiled" in med:
                        fastest = min(med["nequip"], med["nequip_compiled"])
                        row["ratio_vs_fastest_nequip"] = {
                            k: v / fastest for k, v in med.items() if not k.startswith("nequip")
                        }
                row["peak_rss_mb_ours"] = peak_rss_mb()
                if nq:
                    row["peak_rss_mb_nequip"] = nq(cmd="threads", n=args.threads)["rss_mb"]
                print(json.dumps({k: row[k] for k in ("system", "l_max", "dtype", "threads", "median_ms")}), flush=True)
                rows.append(row)
    if args.train:
        rows.append(train_step(args))
    if nq:
        nq.close()
    return rows


def compile_column(nq, key, model, directory) -> dict:
    """Export ``model`` as a checkpoint and have the worker compile it (cached in ``directory`` by key)."""
    from nequip_np.interop.export_ckpt import export_checkpoint

    os.makedirs(directory, exist_ok=True)
    ckpt, out = os.path.join(directory, key + ".ckpt"), os.path.join(directory, key + ".nequip.pt2")
    if not os.path.exists(ckpt):
        export_checkpoint(model, ckpt)
    res = nq(cmd="compile", key=key + "/aoti", ckpt=ckpt, out=out, data=key)
    res.pop("rss_mb", None)
    print(json.dumps({"compiled": key, **res}), flush=True)
    return res


def train_step(args) -> dict:
    """One force-trained optimisation step (loss_and_grad + Adam) on a batch of 5 aspirin frames."""
    from ase.io import read

    from nequip_np.data.graph import batch_graphs, graph_from_atoms
    from nequip_np.model.nequip import NequIPModel
    from nequip_np.train.loss import LossCoefficients, loss_and_grad
    from nequip_np.train.optim import Adam

    frames = read(ASPIRIN, index=":5")
    kw = model_kwargs("aspirin", args.lmax[0], "float64", args.features)
    models = {b: NequIPModel(backend=b, **kw) for b in ("numba", "numpy")}
    batch = batch_graphs([graph_from_atoms(a, kw["type_names"], kw["r_max"], with_labels=True) for a in frames])
    opts = {b: Adam(m.params, lr=1e-3) for b, m in models.items()}
    times = {b: [] for b in models}
    for r in range(args.repeats + 1):
        for b, m in models.items():
            t = time.perf_counter()
            _, _, grads, _ = loss_and_grad(m, batch, LossCoefficients(1.0, 1.0, 0.0))
            opts[b].step(grads)
            if r:
                times[b].append(time.perf_counter() - t)
    return dict(
        system="train_step_aspirin_x5",
        l_max=args.lmax[0],
        dtype="float64",
        threads=args.threads,
        n_atoms=batch.n_atoms,
        n_edges=batch.n_edges,
        repeats=args.repeats,
        median_ms={b: 1e3 * statistics.median(v) for b, v in times.items()},
        peak_rss_mb_ours=peak_rss_mb(),
    )


def machine(args) -> dict:
    import numba

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = dict(
        cpu=cpu,
        logical_cores=os.cpu_count(),
        python=platform.python_version(),
        numpy=np.__version__,
        numba=numba.__version__,
        threading_layer=os.environ.get("NUMBA_THREADING_LAYER", "default"),
        load_average_at_start=os.getloadavg(),
        platform=platform.platform(),
    )
    if args.nequip_python:
        v = subprocess.run(
            [args.nequip_python, "-c", "import torch, nequip; print(torch.__version__, nequip.__version__)"],
            capture_output=True,
            text=True,
        ).stdout.split()
        info.update(torch=v[0] if v else None, nequip=v[1] if len(v) > 1 else None)
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--nequip-python", default=None, help="interpreter with torch + nequip 0.19.1")
    p.add_argument("--systems", nargs="+", default=["aspirin", "cu108", "cu864", "cu4000"])
    p.add_argument("--lmax", nargs="+", type=int, default=[1, 2])
    p.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--threads-list", nargs="+", type=int, default=[1, 2])
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--numpy-max-atoms", type=int, default=10**9, help="skip the reference above this size")
    p.add_argument("--nequip-max-atoms", type=int, default=10**9)
    p.add_argument("--train", action="store_true", help="also time one force-trained step (5 aspirin frames)")
    p.add_argument(
        "--retain-memory",
        action="store_true",
        help="keep freed memory in this process's heap, as NequIPCalculator does by default (glibc)",
    )
    p.add_argument(
        "--tables", action="store_true", help="also numba with radial tables (column numba_tables; the MD default)"
    )
    p.add_argument(
        "--compiled",
        action="store_true",
        help="also official nequip compiled with nequip-compile --mode aotinductor --target ase (minutes per model)",
    )
    p.add_argument(
        "--compile-only", action="store_true", help="with --compiled: only fill the --compiled-dir cache (no timing)"
    )
    p.add_argument("--compiled-dir", default=os.path.join(tempfile.gettempdir(), "bench_cpu_compiled"))
    p.add_argument("--out", default=os.path.join(HERE, "results", "cpu.json"))
    p.add_argument("--table", nargs="+", default=None, help="print a markdown table of result files and exit")
    args = p.parse_args(argv)
    if args.table:
        return print(table(args.table))
    if args.worker:
        return worker()
    if args.child:
        print("ROWS " + json.dumps(child(args)), flush=True)
        return None
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")  # see docs/benchmarks.md (shared machine)
    rows = []
    for t in args.threads_list:
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(t), OMP_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t))
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--threads", str(t)] + _strip(
            list(argv if argv is not None else sys.argv[1:]), "--threads-list"
        )
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        sys.stderr.write(proc.stderr[-2000:])
        out = [line for line in proc.stdout.splitlines() if line.startswith("ROWS ")]
        if not out:
            raise RuntimeError(f"child for {t} threads failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        rows += json.loads(out[0][5:])
    argv = [("<torch env>/bin/python" if a == args.nequip_python else a) for a in sys.argv]  # no local paths
    result = dict(machine=machine(args), command=" ".join(argv), rows=rows)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")
    return result


def table(paths) -> str:
    """Markdown table of result files (``--table a.json b.json``), as in docs/benchmarks.md.

    Files with the compiled column (``--compiled``) get the layout of that section: numba (MLP), numba
    with radial tables, official eager and compiled, and each numba column over the faster official one.
    """
    rows = []
    for path in paths:
        with open(path) as f:
            rows += [r for r in json.load(f)["rows"] if "median_ms" in r]
    fmt = lambda d, k, f="{:.0f}": f.format(d[k]) if k in d else "–"  # noqa: E731
    if any("nequip_compiled" in r for r in rows):
        lines = [
            "| system | atoms | edges | l_max | dtype | threads | numba ms | numba tables ms | official eager ms "
            "| official compiled ms | numba / fastest official | tables / fastest official | peak RSS ours / official MB |",
            "|" + "---|" * 13,
        ]
        for r in rows:
            med, rat = r["median_ms"], r.get("ratio_vs_fastest_nequip", {})
            comp = fmt(med, "nequip_compiled") if "nequip_compiled" in med else "error"
            lines.append(
                f"| {r['system']} | {r['n_atoms']} | {r['n_edges']} | {r['l_max']} | {r['dtype']} | {r['threads']} "
                f"| {fmt(med, 'numba')} | {fmt(med, 'numba_tables')} | {fmt(med, 'nequip')} | {comp} "
                f"| {fmt(rat, 'numba', '{:.2f}')} | {fmt(rat, 'numba_tables', '{:.2f}')} "
                f"| {r.get('peak_rss_mb_ours', 0):.0f} / {r.get('peak_rss_mb_nequip', 0):.0f} |"
            )
        return "\n".join(lines)
    lines = [
        "| system | atoms | edges | l_max | dtype | threads | numba ms | numpy ms | nequip ms | numba/nequip "
        "| numpy/nequip | numba GFLOP/s | numba atom-steps/s |",
        "|" + "---|" * 13,
    ]
    for r in rows:
        med = r["median_ms"]
        ratio = r.get("ratio_vs_nequip", {})
        lines.append(
            f"| {r['system']} | {r['n_atoms']} | {r['n_edges']} | {r['l_max']} | {r['dtype']} | "
            f"{r['threads']} | {fmt(med, 'numba')} | {fmt(med, 'numpy')} | {fmt(med, 'nequip')} | "
            f"{fmt(ratio, 'numba', '{:.2f}')} | {fmt(ratio, 'numpy', '{:.2f}')} | "
            f"{fmt(r.get('gflops', {}), 'numba', '{:.2f}')} | "
            f"{fmt(r.get('atom_steps_per_s', {}), 'numba', '{:.0f}')} |"
        )
    return "\n".join(lines)


def _strip(cmd, flag):
    """Drop ``flag`` and its values from an argv list."""
    out, skip = [], False
    for a in cmd:
        if a == flag:
            skip = True
            continue
        if skip and not a.startswith("--"):
            continue
        skip = False
        out.append(a)
    return out


if __name__ == "__main__":
    main()
