"""``nequip-np md`` and ``nequip-np relax``: MD and geometry optimisation with a model file.

Every check that can fail before the simulation does (model file, structure file, species the model
does not know, output paths missing, not writable or already there) runs first, so a long run never
dies at its end for a typo. See docs/md.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from nequip_np.calculator import add_radial_table_argument
from nequip_np.md import run as md_run


def _common(p):
    p.add_argument("model", help="model file: nequip-np .npz, official nequip .ckpt or .nequip.zip, or an export .npz")
    p.add_argument("structure", help="starting structure, any ASE-readable file")
    p.add_argument("--index", default="-1", help="frame of STRUCTURE to use (ASE index; default the last)")
    p.add_argument("--backend", default=None, help="numpy (reference) or numba; default numpy")
    p.add_argument("--dtype", default=None, choices=["float64", "float32"], help="default: the model's")
    p.add_argument("--skin", type=float, default=0.5, help="neighbour-list skin in Å (0: rebuild every step)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_radial_table_argument(p)


def _calculator(args, atoms):
    from nequip_np.calculator import NequIPCalculator

    calc = NequIPCalculator(
        args.model, backend=args.backend, dtype=args.dtype, skin=args.skin, radial_table=args.radial_table or False
    )
    calc.species_types(atoms)  # unknown elements: fail now, naming them and the known ones
    return calc


# ------------------------------------------------------------------------------------------------ md
def add_md_parser(subparsers):
    p = subparsers.add_parser(
        "md",
        help="molecular dynamics (NVE, Langevin, Nosé-Hoover chain)",
        description="Molecular dynamics with ASE's integrators; Maxwell-Boltzmann start at --temperature, "
        "zero net momentum; a log line every --log-interval steps.",
    )
    _common(p)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--timestep", type=float, default=0.5, help="fs (default 0.5)")
    p.add_argument("--temperature", type=float, default=300.0, help="K: initial velocities and thermostat")
    p.add_argument("--ensemble", choices=md_run.ENSEMBLES, default="nve")
    p.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs (default 0.01)")
    p.add_argument("--tdamp", type=float, default=None, help="Nosé-Hoover damping time in fs (default 100 steps)")
    p.add_argument("--trajectory", required=True, help="output trajectory: .traj, .extxyz or .xyz")
    p.add_argument("--traj-interval", type=int, default=None, help="steps between frames (default --log-interval)")
    p.add_argument("--log", default=None, help="log file (default: the trajectory path with suffix .log)")
    p.add_argument("--log-interval", type=int, default=10, help="steps between log lines")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="random seed (velocities, Langevin noise); default: fresh entropy, printed",
    )
    p.add_argument("--keep-momenta", action="store_true", help="start from the structure's stored momenta")
    p.add_argument("--max-force", type=float, default=1e3, help="stop when any |F| exceeds this (eV/Å)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run_md(args) -> int:
    import numpy as np

    traj = Path(args.trajectory)
    md_run.trajectory_format(traj)
    log = Path(args.log) if args.log else traj.with_suffix(".log")
    if log.resolve() == traj.resolve():
        raise ValueError(f"the log and the trajectory are the same file {str(traj)!r}; give --log")
    md_run.check_writable(traj, args.overwrite, "trajectory")
    md_run.check_writable(log, args.overwrite, "log file")
    atoms = md_run.read_structure(args.structure, args.index)
    calc = _calculator(args, atoms)
    if args.keep_momenta and not atoms.has("momenta"):
        raise ValueError(f"--keep-momenta: {args.structure!r} stores no momenta")
    seed = args.seed if args.seed is not None else int(np.random.SeedSequence().entropy % 2**31)
    print(
        f"# nequip-np md: {len(atoms)} atoms ({atoms.get_chemical_formula()}), {args.ensemble}, "
        f"{args.steps} x {args.timestep} fs at {args.temperature} K, seed {seed}; {calc!r}"
    )
    print(f"# trajectory {traj}, log {log}")
    try:
        res = md_run.run_md(
            atoms,
            calc,
            steps=args.steps,
            timestep_fs=args.timestep,
            temperature_K=args.temperature,
            ensemble=args.ensemble,
            trajectory=traj,
            traj_interval=args.traj_interval or args.log_interval,
            log=log,
            log_interval=args.log_interval,
            friction=args.friction,
            tdamp_fs=args.tdamp,
            seed=seed,
            init_velocities=not args.keep_momenta,
            max_force=args.max_force,
            progress=not args.no_progress,
            stdout=sys.stdout,
        )
    except md_run.MDBlowUpError as exc:
        print(f"nequip-np md: error: {exc}", file=sys.stderr)
        return 3
    rate = res.steps / res.wall_seconds if res.wall_seconds > 0 else float("inf")
    print(
        f"# done: {res.steps} steps in {res.wall_seconds:.1f} s ({rate:.1f} steps/s), {res.frames_written} "
        f"frames, {res.nl_builds} neighbour-list builds"
    )
    return 0


# --------------------------------------------------------------------------------------------- relax
def add_relax_parser(subparsers):
    p = subparsers.add_parser(
        "relax",
        help="relax atomic positions (BFGS or FIRE)",
        description="Relax atomic positions until max |F| < --fmax; the cell is fixed.",
    )
    _common(p)
    p.add_argument("--fmax", type=float, default=0.05, help="force convergence threshold, eV/Å")
    p.add_argument("--steps", type=int, default=500, help="at most this many optimiser steps")
    p.add_argument("--optimizer", default="BFGS", type=str.upper, choices=md_run.OPTIMIZERS)
    p.add_argument("--output", required=True, help="relaxed structure (any ASE format, by suffix)")
    p.add_argument("--trajectory", default=None, help="optional .traj of the optimisation path")
    return p


def run_relax(args) -> int:
    from ase.io import write

    out = md_run.check_writable(args.output, args.overwrite, "output")
    if args.trajectory:
        if Path(args.trajectory).suffix.lower() != ".traj":
            raise ValueError(f"--trajectory {args.trajectory!r}: the optimiser writes ASE .traj files")
        md_run.check_writable(args.trajectory, args.overwrite, "trajectory")
    atoms = md_run.read_structure(args.structure, args.index)
    calc = _calculator(args, atoms)
    res = md_run.relax(
        atoms, calc, fmax=args.fmax, steps=args.steps, optimizer=args.optimizer, trajectory=args.trajectory, logfile="-"
    )
    write(str(out), atoms)
    state = "converged" if res.converged else f"NOT converged (max |F| {res.fmax:.4g} > {args.fmax} eV/Å)"
    print(f"# {state} after {res.steps} steps: energy {res.energy:.6f} eV, max |F| {res.fmax:.4g} eV/Å; wrote {out}")
    return 0 if res.converged else 1


class _Sub:
    def __init__(self, add_parser, run):
        self.add_parser, self.run = add_parser, run


md = _Sub(add_md_parser, run_md)
relax = _Sub(add_relax_parser, run_relax)
