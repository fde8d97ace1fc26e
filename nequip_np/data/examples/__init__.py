r"""Example data shipped with the package, found with :mod:`importlib.resources`.

The course notebooks and ``benchmarks/learning_curves.py`` read the aspirin frames from here, so they
run in a fresh environment after ``pip install nequip-np`` without a clone of the repository.

Example:
    >>> from nequip_np.data.examples import aspirin_path
    >>> aspirin_path().name
    'aspirin_xtb_300.extxyz'
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["ASPIRIN", "XTB_VIBRATIONS", "aspirin_path", "xtb_vibrations_path"]

#: 300 GFN2-xTB frames of aspirin from Langevin MD at 500 K, 50 fs apart (energies in eV, forces in eV/Å)
ASPIRIN = "aspirin_xtb_300.extxyz"
#: GFN2-xTB harmonic frequencies of relaxed aspirin (``tools/make_xtb_frequencies.py``)
XTB_VIBRATIONS = "xtb_aspirin_vibrations.npz"


def aspirin_path() -> Path:
    """Path of the shipped aspirin frames (every 5th frame of the first 1500 of the project's data set)."""
    path = resources.files(__name__) / ASPIRIN
    if not path.is_file():
        raise FileNotFoundError(f"{ASPIRIN} is missing from the installed package ({path}); reinstall nequip-np")
    return Path(str(path))


def xtb_vibrations_path() -> Path:
    """Path of GFN2-xTB's own harmonic frequencies of relaxed aspirin (positions, Hessian, frequencies)."""
    path = resources.files(__name__) / XTB_VIBRATIONS
    if not path.is_file():
        raise FileNotFoundError(f"{XTB_VIBRATIONS} is missing from the installed package ({path}); reinstall nequip-np")
    return Path(str(path))
