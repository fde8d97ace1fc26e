#!/usr/bin/env python
r"""Training-step benchmark: one force-trained optimisation step, nequip_np vs official nequip 0.19.1 (CPU).

Not a test. One step = the loss :math:`\tfrac12\,\overline{((E-E^*)/N)^2} + \tfrac12\,\overline{(F-F^*)^2}` of a
batch of aspirin frames, its exact parameter gradient (for nequip_np the complex-step forward-over-reverse
pass of ``loss_and_grad`` on the numba backend; for official nequip the model in training mode — forces
with ``create_graph=True`` — and ``loss.backward()``, i.e. double backward), and one Adam update.

Both sides use the same weights (official nequip builds the model with its seed; its state is imported
through ``nequip_np.interop``) and the same edges; the loss of the first step is compared as a check.
Steps are ALTERNATED (ours, official, ours, …) after one warm-up step each, the median is reported, one
child process per thread count with ``OPENBLAS_NUM_THREADS``/``OMP_NUM_THREADS``, ``numba.set_num_threads``
and ``torch.set_num_threads`` equal.

Usage::

    python benchmarks/bench_train_step.py --nequip-python /path/to/venv/bin/python \
        --out benchmarks/results/train_step.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_cpu import ASPIRIN, Nequip, machine, model_kwargs, peak_rss_mb  # noqa: E402


# ====================================================================== official nequip worker (torch side)
def worker() -> None:
    """JSON-lines server: threads / build / data / step. Imports torch, nequip and the fixture tools."""
    import torch

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    from export_nequip import build_model, export_state
    from make_training_fixtures import _attach_labels, _model_input, batch_of, loss_fn
    from nequip.data import from_dict

    models, batches = {}, {}
    for line in sys.stdin:
        req = json.loads(line)
        cmd, out = req["cmd"], {}
        if cmd == "threads":
            torch.set_num_threads(int(req["n"]))
        elif cmd == "build":
            torch.set_default_dtype(torch.float64)
            model = build_model(req["kwargs"])
            export_state(model, req["kwargs"], req["path"])
            model.train()  # forces with create_graph=True: the double-backward training path
            models[req["key"]] = (model, torch.optim.Adam(model.parameters(), lr=1e-3))
        elif cmd == "data":
            z = np.load(req["path"])
            datas = []
            for k in range(int(z["n_frames"])):
                d = from_dict(
                    {
                        "pos": z[f"pos{k}"],
                        "atom_types": z[f"types{k}"],
                        "cell": np.zeros((3, 3)),
                        "pbc": np.zeros(3, bool),
                        "edge_index": z[f"edges{k}"],
                        "edge_cell_shift": z[f"shifts{k}"],
                    }
                )
                datas.append(_attach_labels(d, float(z[f"energy{k}"]), z[f"forces{k}"], np.full((3, 3), np.nan)))
            batches[req["key"]] = batch_of(datas)
        elif cmd == "step":
            model, opt = models[req["model"]]
            batch = batches[req["data"]]
            t = time.perf_counter()
            opt.zero_grad()
            res = model(_model_input(batch))
            loss = loss_fn(res, batch, 1.0, 1.0, 0.0)
            loss.backward()
            opt.step()
            out["seconds"] = time.perf_counter() - t
            out["loss"] = float(loss.detach())
        out["rss_mb"] = peak_rss_mb()
        print(json.dumps(out), flush=True)


# ====================================================================== our side
def child(args) -> list:
    import numba
    from ase.io import read

    from nequip_np.data.graph import batch_graphs, graph_from_atoms
    from nequip_np.interop import nequip_npz
    from nequip_np.train.loss import LossCoefficients, loss_and_grad
    from nequip_np.train.optim import Adam

    numba.set_num_threads(args.threads)
    nq = Nequip(args.nequip_python, script=__file__)
    nq(cmd="threads", n=args.threads)
    tmp = tempfile.mkdtemp(prefix="bench_train_")
    frames = read(ASPIRIN, index=f":{args.frames}")
    rows = []
    for l_max in args.lmax:
        for dtype in args.dtypes:
            kw = model_kwargs("aspirin", l_max, dtype, args.features)
            key = f"l{l_max}-{dtype}"
            npz = os.path.join(tmp, key + ".npz")
            nq(cmd="build", key=key, kwargs=kw, path=npz)
            kws, state = nequip_npz.read_nequip_npz(npz)
            model = nequip_npz.model_from_state(kws, state, backend="numba")
            graphs = [graph_from_atoms(a, kw["type_names"], kw["r_max"], with_labels=True) for a in frames]
            data = {"n_frames": len(graphs)}
            for k, g in enumerate(graphs):
                data.update(
                    {
                        f"pos{k}": g.pos,
                        f"types{k}": g.atom_types,
                        f"edges{k}": g.edge_index,
                        f"shifts{k}": g.edge_shift,
                        f"energy{k}": g.energy[0],
                        f"forces{k}": g.forces,
                    }
                )
            dpath = os.path.join(tmp, key + "-data.npz")
            np.savez(dpath, **data)
            nq(cmd="data", key=key, path=dpath)
            batch = batch_graphs(graphs)
            opt = Adam(model.params, lr=1e-3)
            coeffs = LossCoefficients(1.0, 1.0, 0.0)
            times = {"numba": [], "nequip": []}
            first_loss = {}
            for r in range(args.repeats + 1):  # round 0 = warm-up (JIT, allocator), discarded
                t = time.perf_counter()
                loss, _, grads, _ = loss_and_grad(model, batch, coeffs)
                opt.step(grads)
                dt = time.perf_counter() - t
                res = nq(cmd="step", model=key, data=key)
                if r == 0:
                    first_loss = {"numba": float(loss), "nequip": res["loss"]}
                else:
                    times["numba"].append(dt)
                    times["nequip"].append(res["seconds"])
            med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
            row = dict(
                system=f"aspirin x {len(graphs)} frames",
                n_atoms=batch.n_atoms,
                n_edges=batch.n_edges,
                l_max=l_max,
                dtype=dtype,
                features=args.features,
                threads=args.threads,
                repeats=args.repeats,
                median_ms=med,
                all_ms={k: [1e3 * x for x in v] for k, v in times.items()},
                ratio_vs_nequip=med["numba"] / med["nequip"],
                first_step_loss=first_loss,
                first_step_loss_rel_diff=abs(first_loss["numba"] - first_loss["nequip"]) / abs(first_loss["nequip"]),
                peak_rss_mb_ours=peak_rss_mb(),
                peak_rss_mb_nequip=nq(cmd="threads", n=args.threads)["rss_mb"],
            )
            print(
                json.dumps(
                    {
                        k: row[k]
                        for k in (
                            "l_max",
                            "dtype",
                            "threads",
                            "median_ms",
                            "ratio_vs_nequip",
                            "first_step_loss_rel_diff",
                        )
                    }
                ),
                flush=True,
            )
            rows.append(row)
    nq.close()
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--nequip-python", required="--worker" not in (argv or sys.argv), help="interpreter with torch + nequip 0.19.1"
    )
    p.add_argument("--lmax", nargs="+", type=int, default=[1, 2])
    p.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--frames", type=int, default=5, help="aspirin frames in the batch")
    p.add_argument("--threads-list", nargs="+", type=int, default=[1, 2])
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=os.path.join(HERE, "results", "train_step.json"))
    args = p.parse_args(argv)
    if args.worker:
        return worker()
    if args.child:
        print("ROWS " + json.dumps(child(args)), flush=True)
        return None
    rows = []
    for n in args.threads_list:
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(n), OMP_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n))
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            "--threads",
            str(n),
            "--nequip-python",
            args.nequip_python,
            "--lmax",
            *map(str, args.lmax),
            "--dtypes",
            *args.dtypes,
            "--features",
            str(args.features),
            "--frames",
            str(args.frames),
            "--repeats",
            str(args.repeats),
        ]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        sys.stdout.write("".join(l + "\n" for l in proc.stdout.splitlines() if not l.startswith("ROWS ")))
        if proc.returncode:
            sys.stderr.write(proc.stderr[-4000:])
            raise SystemExit(f"child with {n} thread(s) failed")
        rows += json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("ROWS "))[5:])
    result = {
        "benchmark": "train_step",
        "machine": machine(args),
        "rows": rows,
        "load_average_at_end": list(os.getloadavg()),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
