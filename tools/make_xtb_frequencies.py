#!/usr/bin/env python
"""Generate ``nequip_np/data/examples/xtb_aspirin_vibrations.npz``: GFN2-xTB harmonic frequencies of relaxed aspirin.

The reference method of the shipped aspirin data is GFN2-xTB (``examples/aspirin/README.md``). This
script, run once in an environment with ``tblite`` (``pip install tblite``), relaxes the first frame
of ``examples/aspirin/aspirin_xtb_300.extxyz`` with xTB and computes its Hessian by ASE's
central-difference ``Vibrations`` (xTB has no analytic Hessian in tblite's ASE interface)::

    python tools/make_xtb_frequencies.py [--out nequip_np/data/examples/xtb_aspirin_vibrations.npz]

Contents: ``numbers`` (21,), ``positions`` (21, 3) Å of the xTB minimum, ``energy`` (eV), ``fmax``
(eV/Å reached), ``hessian`` (63, 63) eV/Å², ``frequencies_cm`` (63,) complex (ASE's convention:
imaginary modes imaginary), ``delta`` (Å, displacement), ``nfree``, ``method``, ``tblite_version``.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ASPIRIN = os.path.join(ROOT, "examples", "aspirin", "aspirin_xtb_300.extxyz")


def main(argv=None):
    import tblite
    from ase.io import read
    from ase.optimize import BFGS
    from ase.vibrations import Vibrations
    from tblite.ase import TBLite

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join("nequip_np", "data", "examples", "xtb_aspirin_vibrations.npz"))
    ap.add_argument("--fmax", type=float, default=1e-4, help="eV/Å")
    ap.add_argument("--delta", type=float, default=0.005, help="Å")
    ap.add_argument("--nfree", type=int, default=4, help="2 or 4 point central differences")
    a = ap.parse_args(argv)
    atoms = read(ASPIRIN, index=0)
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    opt = BFGS(atoms, logfile=None)
    converged = opt.run(fmax=a.fmax, steps=2000)
    fmax = float(np.linalg.norm(atoms.get_forces(), axis=1).max())
    energy = float(atoms.get_potential_energy())
    print(f"relaxed: converged={converged} after {opt.nsteps} steps, E={energy:.6f} eV, max|F|={fmax:.2e} eV/A")
    with tempfile.TemporaryDirectory() as tmp:
        vib = Vibrations(atoms, name=os.path.join(tmp, "vib"), delta=a.delta, nfree=a.nfree)
        vib.run()
        data = vib.get_vibrations()
    freqs = data.get_frequencies()
    print(data.tabulate())
    np.savez_compressed(
        a.out,
        numbers=atoms.numbers,
        positions=atoms.positions,
        energy=energy,
        fmax=fmax,
        hessian=data.get_hessian_2d(),
        frequencies_cm=freqs,
        delta=a.delta,
        nfree=a.nfree,
        method=np.array("GFN2-xTB"),
        tblite_version=np.array(getattr(tblite, "__version__", "unknown")),
    )
    print(f"wrote {a.out} ({os.path.getsize(a.out) / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
