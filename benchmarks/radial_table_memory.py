"""Peak memory of one energy + forces call, radial MLP vs radial tables (run once per mode: a fresh process).

Not a test. Cu 864 (the model of ``bench_cpu.py``), backend numba, 1 thread, float64; prints the peak
resident set size (``ru_maxrss``) before and after one ``model.compute``. Usage::

    python benchmarks/radial_table_memory.py 1 mlp; python benchmarks/radial_table_memory.py 1 table

``table-unfused``: the table path with the radial table and the tensor product as two operations (the
(E, n_w) weights materialised; ``ab_table_conv.unfused``), as before the fused ``table_conv`` kernel.
"""

import os
import resource
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))


def main(l_max: int, mode: str) -> None:
    import numba
    from bench_cpu import model_kwargs, structures

    from nequip_np.data.graph import graph_from_atoms
    from nequip_np.model.nequip import NequIPModel

    if mode not in ("mlp", "table", "table-unfused"):
        raise SystemExit(f"mode must be 'mlp', 'table' or 'table-unfused', got {mode!r}")
    numba.set_num_threads(1)
    atoms = structures(["cu864"])["cu864"]
    kw = model_kwargs("cu864", l_max, "float64", 32)
    graph = graph_from_atoms(atoms, kw["type_names"], kw["r_max"])
    model = NequIPModel(backend="numba", **kw)
    if mode != "mlp":
        model.use_radial_tables(512)
    if mode == "table-unfused":
        from ab_table_conv import unfused

        model = unfused(model)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model.compute(graph)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"cu864 l_max {l_max} {mode}: peak RSS {before:.0f} MB before the call, {after:.0f} MB after")


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
