#!/usr/bin/env python
r"""System time and page faults of repeated energy+forces calls, with and without retained freed memory.

Not a test. One process per setting (``--retain`` applies :func:`nequip_np.kernels.memory.retain_freed_memory`
before the timed calls); ``resource.getrusage`` over ``--calls`` calls of ``model.compute`` after one
warm-up. Results: ``benchmarks/results/memory_retention_cu864.json``, docs/kernels.md.

Usage::

    NUMBA_NUM_THREADS=2 python benchmarks/memory_retention.py --lmax 1 --threads 2
    NUMBA_NUM_THREADS=2 python benchmarks/memory_retention.py --lmax 1 --threads 2 --retain
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--system", default="cu864")
    p.add_argument("--lmax", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--retain", action="store_true")
    args = p.parse_args()
    import numba
    from ab_compute import structure

    from nequip_np.data.graph import graph_from_atoms
    from nequip_np.kernels.memory import retain_freed_memory
    from nequip_np.model.nequip import NequIPModel

    numba.set_num_threads(args.threads)
    atoms, types, avg = structure(args.system)
    model = NequIPModel(
        backend="numba",
        seed=123,
        type_names=types,
        r_max=5.0,
        l_max=args.lmax,
        num_layers=4,
        num_features=32,
        radial_mlp_depth=1,
        radial_mlp_width=128,
        num_bessels=8,
        avg_num_neighbors=avg,
    )
    graph = graph_from_atoms(atoms, types, 5.0)
    applied = retain_freed_memory() if args.retain else False
    model.compute(graph)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(args.calls):
        model.compute(graph)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    n = args.calls
    print(
        json.dumps(
            {
                "system": args.system,
                "l_max": args.lmax,
                "threads": args.threads,
                "calls": n,
                "retain_freed_memory": applied,
                "wall_s_per_call": (t1 - t0) / n,
                "user_s_per_call": (r1.ru_utime - r0.ru_utime) / n,
                "sys_s_per_call": (r1.ru_stime - r0.ru_stime) / n,
                "minor_faults_per_call": (r1.ru_minflt - r0.ru_minflt) / n,
                "peak_rss_mb": r1.ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
