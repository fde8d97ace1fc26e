"""``nequip-np vib`` (harmonic vibrations, ZPE, free energies) and ``nequip-np phonons`` (bands, DOS).

Both use the exact Hessian (``docs/vibrations.md``). Output paths are checked before any work, and a
structure that is not at a minimum is reported (largest force, imaginary modes) instead of being given
a zero-point energy silently.
"""

from __future__ import annotations

import sys

import numpy as np

from nequip_np.md import run as md_run
from nequip_np.md.cli import _calculator, _common


def _paths(prefix, suffixes, overwrite):
    return {s: md_run.check_writable(f"{prefix}{s}", overwrite, "output") for s in suffixes}


# ----------------------------------------------------------------------------------------------- vib
def _parse_indices(text: str) -> list[int]:
    try:
        indices = [int(i) for i in text.split(",") if i.strip()]
    except ValueError:
        raise ValueError(f"--indices {text!r}: expected comma-separated atom indices, e.g. 0,1,5") from None
    if not indices:
        raise ValueError("--indices is empty; give comma-separated atom indices, e.g. 0,1,5")
    return indices


def add_vib_parser(subparsers):
    p = subparsers.add_parser(
        "vib",
        help="harmonic frequencies, normal modes, ZPE and free energies from the exact Hessian",
        description="Normal modes through ase.vibrations.VibrationsData and thermochemistry through "
        "ase.thermochemistry (IdealGasThermo for molecules, HarmonicThermo for crystals and "
        "partial Hessians). The Hessian is exact (no finite differences).",
    )
    _common(p)
    p.add_argument("--relax", action="store_true", help="relax the positions first (BFGS to --fmax)")
    p.add_argument(
        "--fmax",
        type=float,
        default=1e-3,
        help="eV/Å: --relax target; without --relax, a larger force is reported (default 1e-3)",
    )
    p.add_argument("--relax-steps", type=int, default=2000, help="at most this many optimiser steps")
    p.add_argument("--indices", default=None, help="atoms allowed to move, e.g. 0,1,5 (partial Hessian)")
    p.add_argument(
        "--thermo",
        default="auto",
        choices=["auto", "ideal_gas", "harmonic", "none"],
        help="auto: ideal_gas for a free molecule, harmonic otherwise",
    )
    p.add_argument("--temperature", type=float, default=298.15, help="K (default 298.15)")
    p.add_argument("--pressure", type=float, default=101325.0, help="Pa, ideal gas only (default 101325)")
    p.add_argument("--symmetry-number", type=int, default=1, help="rotational symmetry number (ideal gas)")
    p.add_argument("--spin", type=float, default=0.0, help="total electronic spin (ideal gas)")
    p.add_argument(
        "--output",
        default=None,
        help="prefix of output files: PREFIX.json (VibrationsData, ase.io.jsonio), PREFIX.xyz "
        "(all modes, Jmol), PREFIX.relaxed.xyz with --relax",
    )
    return p


def run_vib(args) -> int:
    from nequip_np.md.vibrations import check_minimum, thermochemistry, vibrations

    partial = args.indices is not None
    indices = _parse_indices(args.indices) if partial else None
    outs = (
        {}
        if args.output is None
        else _paths(args.output, [".json", ".xyz"] + [".relaxed.xyz"] * args.relax, args.overwrite)
    )
    atoms = md_run.read_structure(args.structure, args.index)
    calc = _calculator(args, atoms)
    print(f"# nequip-np vib: {len(atoms)} atoms ({atoms.get_chemical_formula()}); {calc!r}")
    if args.relax:
        res = md_run.relax(atoms, calc, fmax=args.fmax, steps=args.relax_steps, optimizer="BFGS")
        state = "converged" if res.converged else "NOT converged"
        print(f"# relax {state} after {res.steps} steps: max |F| {res.fmax:.3g} eV/Å")
        if ".relaxed.xyz" in outs:
            from ase.io import write

            write(str(outs[".relaxed.xyz"]), atoms)
    atoms.calc = calc
    energy, forces = float(atoms.get_potential_energy()), atoms.get_forces()
    fmax = float(np.linalg.norm(forces, axis=1).max())
    if fmax > args.fmax:
        print(
            f"nequip-np vib: warning: the structure is not relaxed: max |F| = {fmax:.3g} eV/Å > "
            f"--fmax {args.fmax:g}; frequencies of a non-stationary point (use --relax)",
            file=sys.stderr,
        )
    vib = vibrations(atoms, calc, indices=indices)
    print(vib.tabulate())
    check = check_minimum(vib, forces=forces, partial=partial)
    if outs:
        vib.write(str(outs[".json"]))
        vib.write_jmol(str(outs[".xyz"]))
        print(f"# wrote {', '.join(str(p) for p in outs.values())}")
    if not check.ok:
        print(f"nequip-np vib: warning: {check.message()}", file=sys.stderr)
        return 1
    if args.thermo != "none":
        th = thermochemistry(
            vib, energy, args.temperature, args.pressure, args.thermo, args.symmetry_number, args.spin, partial
        )
        print(_thermo_lines(th, energy))
    return 0


def _thermo_lines(th, energy) -> str:
    t = th["temperature_K"]
    lines = [
        f"# thermochemistry ({th['kind']}, {len(th['vib_energies_eV'])} vibrational modes) at {t:g} K",
        f"potential energy      {energy:16.6f} eV",
        f"zero-point energy     {th['zpe_eV']:16.6f} eV",
    ]
    if th["kind"] == "ideal_gas":
        lines += [
            f"enthalpy H            {th['enthalpy_eV']:16.6f} eV",
            f"entropy S             {th['entropy_eV_per_K']:16.8f} eV/K  (at {th['pressure_Pa']:g} Pa)",
            f"Gibbs energy G        {th['gibbs_eV']:16.6f} eV",
        ]
    else:
        lines += [
            f"internal energy U     {th['internal_energy_eV']:16.6f} eV",
            f"entropy S             {th['entropy_eV_per_K']:16.8f} eV/K",
            f"Helmholtz energy F    {th['helmholtz_eV']:16.6f} eV",
        ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- phonons
def add_phonons_parser(subparsers):
    p = subparsers.add_parser(
        "phonons",
        help="phonon band structure and DOS of a crystal from the exact supercell Hessian",
        description="Force constants from 3·n_cell rows of the exact Hessian of STRUCTURE * SUPERCELL, then "
        "ase.phonons: band structure along the standard path of the lattice and the DOS.",
    )
    _common(p)
    p.add_argument("--supercell", type=int, nargs=3, default=(4, 4, 4), metavar=("N1", "N2", "N3"))
    p.add_argument("--path", default=None, help="special points, e.g. GXWKGLUWLK (default: ASE's for the lattice)")
    p.add_argument("--npoints", type=int, default=200, help="q points along the path")
    p.add_argument("--dos-kpts", type=int, default=20, help="Monkhorst-Pack q mesh n x n x n for the DOS")
    p.add_argument(
        "--output",
        required=True,
        help="prefix: PREFIX.bands.json (ase BandStructure), PREFIX.dos.csv, PREFIX.png (plot, with matplotlib)",
    )
    return p


def run_phonons(args) -> int:
    import importlib.util

    from nequip_np.md.vibrations import phonons

    can_plot = importlib.util.find_spec("matplotlib") is not None  # the optional extra 'plot'
    outs = _paths(args.output, [".bands.json", ".dos.csv"] + [".png"] * can_plot, args.overwrite)
    if not can_plot:
        print("# no plot: matplotlib is not installed (pip install 'nequip-np[plot]')")
    atoms = md_run.read_structure(args.structure, args.index)
    calc = _calculator(args, atoms)
    print(
        f"# nequip-np phonons: {len(atoms)} atoms per cell ({atoms.get_chemical_formula()}), supercell "
        f"{tuple(args.supercell)}; {calc!r}"
    )
    ph = phonons(atoms, calc, supercell=args.supercell)
    print(f"# acoustic sum rule: max |sum_N,b C| / max |C| = {ph.asr_error:.1e}")
    path = atoms.cell.bandpath(args.path, npoints=args.npoints)
    bands = ph.get_band_structure(path, verbose=False)
    dos = ph.get_dos(kpts=(args.dos_kpts,) * 3, verbose=False)
    energies = bands.energies[0]
    n_imag = int((energies < -1e-5).sum())
    bands.write(str(outs[".bands.json"]))
    grid = dos.sample_grid(npts=400, width=1e-3)
    np.savetxt(
        outs[".dos.csv"],
        np.column_stack([grid.get_energies() * 1e3, grid.get_weights()]),
        delimiter=",",
        header="energy_meV,dos_per_eV",
        comments="",
    )
    if can_plot:
        _plot(bands, grid, outs[".png"])
    gamma = np.sort(ph.band_structure([[0, 0, 0]], verbose=False)[0]) * 1e3
    print(f"# Gamma (meV): {' '.join(f'{w:.3f}' for w in gamma)}")
    print(f"# max along the path {energies.max() * 1e3:.3f} meV; wrote {', '.join(str(p) for p in outs.values())}")
    if n_imag:
        print(
            f"nequip-np phonons: warning: {n_imag} imaginary (negative) band energies along the path, "
            f"down to {energies.min() * 1e3:.3f} meV: the structure is not at a minimum or is unstable",
            file=sys.stderr,
        )
        return 1
    return 0


def _plot(bands, dos, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8, 4), sharey=True, gridspec_kw={"width_ratios": [3, 1]})
    e = bands.energies[0] * 1e3
    x, xt, labels = bands.path.get_linear_kpoint_axis()
    ax.plot(x, e, color="k", lw=1)
    ax.set_xticks(xt, [lb.replace("G", "Γ") for lb in labels])
    ax.set_xlim(x[0], x[-1])
    ax.set_ylabel("energy (meV)")
    ax2.plot(dos.get_weights(), dos.get_energies() * 1e3, color="k", lw=1)
    ax2.set_xlabel("DOS")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class _Sub:
    def __init__(self, add_parser, run):
        self.add_parser, self.run = add_parser, run


vib = _Sub(add_vib_parser, run_vib)
phonons_cmd = _Sub(add_phonons_parser, run_phonons)
