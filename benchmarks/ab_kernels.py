#!/usr/bin/env python
r"""A/B timing of single Numba CPU kernels: another checkout's ``cpu.py`` files against this one's.

Not a test. The other checkout's ``kernels/<op>/cpu.py`` files are loaded under new module names into
this process (they import only helpers that still exist here), so both versions run on the same
arrays, alternating call by call; medians of forward+backward per operation are reported. Used to show
that writing each scalar formula once (``kernels/scalar_math.py``) costs no speed.

Usage::

    git archive <old commit> | tar -x -C /tmp/old
    python benchmarks/ab_kernels.py --old /tmp/old --edges 20000 --threads 1
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import statistics
import time

import numpy as np


def load(path: str, op: str, tag: str):
    file = os.path.join(path, "nequip_np", "kernels", op, "cpu.py")
    spec = importlib.util.spec_from_file_location(f"ab_{tag}_{op}", file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cases(edges: int, rng):
    from nequip_np.kernels.plan import gate_plan
    from nequip_np.so3 import Irreps

    v = rng.standard_normal((edges, 3))
    v = 3.0 * v / np.linalg.norm(v, axis=1, keepdims=True) * rng.uniform(0.3, 1.6, (edges, 1))
    hidden = Irreps("32x0e+32x0o+32x1e+32x1o+32x2e+32x2o")
    gp = gate_plan(Irreps("32x0e+32x1o+32x2e"), Irreps.spherical_harmonics(2), hidden)
    n = max(edges // 20, 1)
    z = rng.standard_normal((n, gp.irreps_in.dim))
    w = [rng.standard_normal((8, 64)), rng.standard_normal((64, 480))]
    x = rng.standard_normal((edges, 8))
    return {
        "edge_embedding": (lambda m: m.forward(v, np.full(edges, 1 / 5.0), np.arange(1.0, 9.0), 6.0, 0.25), "emb"),
        "spherical_harmonics": (lambda m: m.forward(v, 2), "Y"),
        "gate": (lambda m: m.forward(z, gp), "h"),
        "mlp": (lambda m: m.forward(x, w, [8**-0.5, 2**0.5 / 8], "silu"), "w"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old", required=True)
    p.add_argument("--edges", type=int, default=20000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args()
    import numba

    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for op, (call, _) in cases(args.edges, rng).items():
        mods = {"old": load(args.old, op, "old"), "new": importlib.import_module(f"nequip_np.kernels.{op}.cpu")}
        outs = {}
        for tag, m in mods.items():  # compile, and check both agree
            out, cache = call(m)
            grads = m.backward(np.ones_like(out), cache)
            outs[tag] = (out, grads if isinstance(grads, tuple) else (grads,))
        err = float(np.max(np.abs(outs["old"][0] - outs["new"][0])) / np.max(np.abs(outs["new"][0])))
        times = {"old": [], "new": []}
        for _ in range(args.repeats):
            for tag, m in mods.items():
                t0 = time.perf_counter()
                out, cache = call(m)
                m.backward(np.ones_like(out), cache)
                times[tag].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {
            "op": op,
            "edges": args.edges,
            "threads": numba.get_num_threads(),
            "old_ms": 1e3 * med["old"],
            "new_ms": 1e3 * med["new"],
            "new_over_old": med["new"] / med["old"],
            "forward_rel_diff": err,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
