"""Per-step cost of the LAMMPS coupling: everything that is not the model.

For rattled diamond-structure H/C/O crystals of several sizes and a small model (2 layers, l_max 1,
4 features, r_max 2.6 Å, numpy backend, float64) it runs ``--steps`` NVE steps in LAMMPS through
``fix nequip all external pf/callback 1 1`` and splits the wall time per step into

* ``model_ms``         — the model's forward + reverse pass + forces/virial (on owned atoms + shell);
* ``coupling_ms``      — the rest of the callback: allgather, types, box, neighbour list, receptive
  shell, the sum over ranks, copies into LAMMPS (``callback - model``);
* ``lammps_ms``        — LAMMPS outside the callback (integrator, communication, thermo);

and, for comparison, ``ase_ms``: one step of ASE's VelocityVerlet with the project calculator (graph
built from scratch each step, as the coupling does). ``neighbor_list_ms`` is the neighbour list alone.

Usage::

    python benchmarks/lammps_coupling_cost.py                       # 1 rank
    mpirun -np 2 python benchmarks/lammps_coupling_cost.py          # 2 ranks, ghost decomposition
    mpirun -np 2 python benchmarks/lammps_coupling_cost.py --decomposition gather

Writes ``benchmarks/results/lammps_coupling_cost_np<ranks>[_<decomposition>].json`` (rank 0; the
suffix only for ``--decomposition`` other than ``auto``). On several ranks ``n_computed_per_rank``
is the number of atoms (owned + shell, ghost images included) each rank evaluates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TYPES = ["H", "C", "O"]
MODEL = dict(
    type_names=TYPES,
    r_max=2.6,
    num_layers=2,
    l_max=1,
    parity=True,
    num_features=4,
    radial_mlp_depth=1,
    radial_mlp_width=8,
    num_bessels=6,
    polynomial_cutoff_p=6,
    avg_num_neighbors=4.0,
    readout_mlp_hidden_layers_depth=1,
    readout_mlp_hidden_layers_width=4,
    per_type_energy_shifts={"H": -13.1, "C": -1030.5, "O": -2040.2},
    seed=0,
)


def crystal(repeat, seed=0):
    from ase.build import bulk

    atoms = bulk("C", "diamond", a=3.6, cubic=True).repeat(repeat)
    atoms.set_chemical_symbols([TYPES[k % 3] for k in range(len(atoms))])
    atoms.positions += 0.05 * np.random.default_rng(seed).standard_normal(atoms.positions.shape)
    return atoms


def write_data(path, atoms):
    """A LAMMPS data file of an orthorhombic cell (written here: ase.io.write is collective under MPI)."""
    lines = ["LAMMPS data", "", f"{len(atoms)} atoms", f"{len(TYPES)} atom types", ""]
    lines += [f"0 {float(atoms.cell[k, k])!r} {a}lo {a}hi" for k, a in enumerate("xyz")]
    masses = {s: m for s, m in zip(atoms.get_chemical_symbols(), atoms.get_masses())}
    lines += (
        ["", "Masses", ""] + [f"{t} {float(masses[s])!r}" for t, s in enumerate(TYPES, 1)] + ["", "Atoms # atomic", ""]
    )
    lines += [
        f"{i} {TYPES.index(s) + 1} {x!r} {y!r} {z!r}"
        for i, (s, (x, y, z)) in enumerate(zip(atoms.get_chemical_symbols(), atoms.positions.tolist()), 1)
    ]
    Path(path).write_text("\n".join(lines) + "\n")


def lammps_run(atoms, model, steps, comm, workdir, decomposition="auto"):
    from nequip_np.lammps import run_lammps

    data = Path(workdir) / f"data_{len(atoms)}.lmp"
    if comm.rank == 0:
        write_data(data, atoms)
    comm.barrier()
    inp = Path(workdir) / f"in_{len(atoms)}.lmp"
    if comm.rank == 0:
        inp.write_text(
            f"units metal\natom_style atomic\natom_modify map array\nboundary p p p\nread_data {data}\n"
            "fix nequip all external pf/callback 1 1\nfix nve all nve\ntimestep 0.0005\n"
            "velocity all create 300 1 loop geom\nthermo 1000\nrun 2\n"
        )  # run 2: warm-up
    comm.barrier()
    lmp, coupling = run_lammps(
        inp, model, TYPES, comm=comm, cmdargs=["-log", "none", "-screen", "none"], decomposition=decomposition
    )
    coupling.timings.update(calls=0, callback_s=0.0, model_s=0.0)
    comm.barrier()
    t0 = time.perf_counter()
    lmp.command(f"run {steps}")
    wall = time.perf_counter() - t0
    coupling.raise_pending()
    t = coupling.timings
    out = {
        "wall_ms": 1e3 * wall / steps,
        "callback_ms": 1e3 * t["callback_s"] / t["calls"],
        "model_ms": 1e3 * t["model_s"] / t["calls"],
        "calls": t["calls"],
        "n_computed": coupling.last["n_computed"],
        "lammps_version": lmp.version(),
        "decomposition": coupling.decomposition,
    }
    out["coupling_ms"] = out["callback_ms"] - out["model_ms"]
    out["lammps_ms"] = out["wall_ms"] - out["callback_ms"]
    lmp.close()
    return out


def ase_step_ms(atoms, model, steps):
    from ase.md.verlet import VelocityVerlet

    from nequip_np.calculator import NequIPCalculator

    atoms = atoms.copy()
    atoms.calc = NequIPCalculator(model)
    dyn = VelocityVerlet(atoms, timestep=0.5 * 0.09822694788464063)  # 0.5 fs in ASE units
    dyn.run(2)
    t0 = time.perf_counter()
    dyn.run(steps)
    return 1e3 * (time.perf_counter() - t0) / steps


def neighbor_list_ms(atoms, r_max, repeats=20):
    from nequip_np.data.neighborlist import neighbor_list

    pos, cell = atoms.positions.copy(), atoms.cell.array.copy()
    neighbor_list(pos, cell, atoms.pbc, r_max)
    t0 = time.perf_counter()
    for _ in range(repeats):
        neighbor_list(pos, cell, atoms.pbc, r_max)
    return 1e3 * (time.perf_counter() - t0) / repeats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--sizes", default="2x2x2,3x3x3,4x4x4", help="cubic-cell repeats, comma separated")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--decomposition", default="auto", choices=("auto", "ghost", "gather"))
    parser.add_argument("--skip-ase", action="store_true", help="do not time ASE's VelocityVerlet")
    args = parser.parse_args(argv)

    from nequip_np.lammps import import_lammps, mpich_library
    from nequip_np.model.nequip import NequIPModel
    from nequip_np.parallel.comm import world

    import_lammps()
    comm = world()
    model = NequIPModel(**MODEL)
    rows = []
    workdir = Path(tempfile.gettempdir()) / f"nequip_np_lammps_bench_{os.getuid()}"
    workdir.mkdir(exist_ok=True)
    if True:
        for size in args.sizes.split(","):
            repeat = tuple(int(k) for k in size.split("x"))
            atoms = crystal(repeat)
            row = {
                "atoms": len(atoms),
                "repeat": size,
                **lammps_run(atoms, model, args.steps, comm, workdir, args.decomposition),
            }
            if comm.size > 1:
                row["n_computed_per_rank"] = [int(v) for v in comm.allgatherv(np.array([row.pop("n_computed")]))[0]]
            if comm.rank == 0:
                row["neighbor_list_ms"] = neighbor_list_ms(atoms, MODEL["r_max"])
                if comm.size == 1 and not args.skip_ase:
                    row["ase_ms"] = ase_step_ms(atoms, model, max(args.steps // 2, 5))
                print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
            rows.append(row)
    if comm.rank == 0:
        import importlib.metadata as md

        result = {
            "benchmark": "lammps_coupling_cost",
            "ranks": comm.size,
            "steps": args.steps,
            "model": MODEL,
            "backend": "numpy",
            "dtype": "float64",
            "rows": rows,
            "versions": {
                name: md.version(name) for name in ("lammps", "mpich", "numpy", "numba") if _installed(md, name)
            }
            | ({"mpi4py": md.version("mpi4py")} if _installed(md, "mpi4py") else {}),
            "lammps_version": rows[0]["lammps_version"],
            "mpich_library": str(mpich_library()).replace(sys.prefix, "<venv>"),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "threads": {k: os.environ.get(k) for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")},
        }
        suffix = "" if args.decomposition == "auto" else f"_{args.decomposition}"
        path = Path(args.out) / f"lammps_coupling_cost_np{comm.size}{suffix}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written {path}")


def _installed(md, name):
    try:
        md.version(name)
        return True
    except md.PackageNotFoundError:
        return False


if __name__ == "__main__":
    main()
