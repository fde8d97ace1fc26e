r"""Harmonic vibrations of molecules and phonons of crystals from the exact Hessian.

Everything downstream of the Hessian is ASE's: normal modes and frequencies through
:class:`ase.vibrations.VibrationsData` (its tables, JSON files, mode animations), thermochemistry
through :class:`ase.thermochemistry.IdealGasThermo` (free molecules) and
:class:`ase.thermochemistry.HarmonicThermo` (crystals, adsorbates, partial Hessians), phonon band
structures and densities of states through :class:`ase.phonons.Phonons`. What this module adds is
where the numbers come from: the exact Hessian of :mod:`nequip_np.model.hessian` instead of 6N finite
differences of the forces.

Harmonic analysis assumes a minimum. :func:`check_minimum` counts the modes beyond the rigid
translations and rotations that are imaginary (and the largest force), so that a structure that was
not relaxed is reported rather than silently given a zero-point energy. Details: ``docs/vibrations.md``.

Example:
    >>> from ase.build import molecule
    >>> from nequip_np import NequIPModel
    >>> from nequip_np.calculator import NequIPCalculator
    >>> from nequip_np.md.vibrations import vibrations
    >>> model = NequIPModel(type_names=["H", "C", "O"], r_max=3.0, num_layers=1, l_max=1,
    ...                     num_features=4, avg_num_neighbors=3.0)
    >>> vib = vibrations(molecule("H2O"), NequIPCalculator(model))
    >>> vib.get_frequencies().shape
    (9,)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from ase import units
from ase.phonons import Phonons
from ase.vibrations import VibrationsData

#: cm^-1: |frequency| below which a mode counts as zero (rigid motion of a relaxed structure)
ZERO_MODE_CM = 20.0


def _hessian_rows(calc, atoms, rows):
    """Rows ``3n + a`` (n in ``rows``) of the Hessian of ``atoms`` from ``calc``."""
    if hasattr(calc, "model") and hasattr(calc, "graph"):  # NequIPCalculator: only the rows needed
        from nequip_np.model.hessian import hessian

        return hessian(calc.model, calc.graph(atoms), atoms=rows)
    if not hasattr(calc, "get_hessian"):
        raise TypeError(
            f"{type(calc).__name__} offers no get_hessian(atoms); use ase.vibrations.Vibrations "
            "(finite differences) for it"
        )
    full = np.asarray(calc.get_hessian(atoms), dtype=np.float64)
    idx = (3 * np.asarray(rows)[:, None] + np.arange(3)).ravel()
    return full[idx]


def vibrations(atoms, calc, indices=None) -> VibrationsData:
    r"""Normal modes of ``atoms`` (at its current geometry) from the exact Hessian.

    Args:
        atoms: the structure (not modified).
        calc: a calculator offering ``get_hessian(atoms)`` (:class:`~nequip_np.calculator.NequIPCalculator`).
        indices: atoms allowed to move (a partial Hessian, e.g. an adsorbate); default all.

    Returns:
        :class:`ase.vibrations.VibrationsData` (energies in eV, ``get_frequencies()`` in cm⁻¹, imaginary
        modes as imaginary numbers, ``tabulate()``, ``write()``, ``write_jmol()``, ``iter_animated_mode()``).
    """
    n = len(atoms)
    idx = np.arange(n) if indices is None else np.unique(np.asarray(indices, dtype=np.int64))
    if idx.size == 0 or idx.min() < 0 or idx.max() >= n:
        raise ValueError(f"indices must be a non-empty subset of [0, {n}), got {indices}")
    rows = _hessian_rows(calc, atoms, idx)
    cols = (3 * idx[:, None] + np.arange(3)).ravel()
    return VibrationsData.from_2d(atoms.copy(), rows[:, cols], indices=None if indices is None else idx)


def geometry(atoms) -> str:
    """'monatomic', 'linear' or 'nonlinear' (IdealGasThermo's names), from the moments of inertia."""
    if len(atoms) == 1:
        return "monatomic"
    moments = np.sort(atoms.get_moments_of_inertia())
    return "linear" if moments[0] < 1e-6 * moments[-1] else "nonlinear"


def n_rigid_modes(atoms, partial: bool = False) -> int:
    """Zero modes of a relaxed structure: 3N−(3N−6|5|3) for a free molecule, 3 for a periodic cell, 0 for a partial Hessian."""
    if partial:
        return 0
    if atoms.pbc.any():
        return 3
    return {"monatomic": 3, "linear": 5, "nonlinear": 6}[geometry(atoms)]


@dataclass
class MinimumCheck:
    """What :func:`check_minimum` found; ``ok`` when no vibrational mode is imaginary."""

    n_rigid: int
    imaginary_cm: np.ndarray  # |frequency| of the imaginary vibrational modes, cm^-1
    fmax: float | None  # largest |F| in eV/Å (None when not given)

    @property
    def ok(self) -> bool:
        return self.imaginary_cm.size == 0

    def message(self) -> str:
        f = "" if self.fmax is None else f" (max |F| = {self.fmax:.3g} eV/Å)"
        if self.ok:
            return f"no imaginary vibrational modes{f}"
        modes = ", ".join(f"{v:.1f}i" for v in self.imaginary_cm[:5]) + (" ..." if self.imaginary_cm.size > 5 else "")
        return (
            f"{self.imaginary_cm.size} imaginary vibrational mode(s) beyond the {self.n_rigid} rigid ones: "
            f"{modes} cm^-1{f}; the structure is not at a minimum (relax it first, e.g. with --relax); "
            "harmonic thermochemistry is not meaningful there"
        )


def check_minimum(
    vib: VibrationsData, forces=None, partial: bool = False, threshold_cm: float = ZERO_MODE_CM
) -> MinimumCheck:
    r"""Imaginary vibrational modes of ``vib`` once the rigid modes are set aside.

    The ``n_rigid`` modes of smallest :math:`|\nu|` are the translations/rotations (:func:`n_rigid_modes`);
    of the rest, those with imaginary frequency above ``threshold_cm`` are reported.
    """
    atoms = vib.get_atoms()
    n_rigid = n_rigid_modes(atoms, partial)
    freqs = np.asarray(vib.get_frequencies())
    order = np.argsort(np.abs(freqs), kind="stable")
    rest = freqs[order[n_rigid:]]
    imag = np.sort(rest.imag[rest.imag > threshold_cm])[::-1]  # ASE: sqrt of a negative eigenvalue = i|.|
    fmax = None if forces is None else float(np.sqrt((np.asarray(forces) ** 2).sum(axis=1)).max())
    return MinimumCheck(n_rigid, imag, fmax)


def vibrational_energies(vib: VibrationsData, partial: bool = False) -> np.ndarray:
    """Energies (eV) of the vibrational modes, rigid modes (smallest |E|) removed, ascending."""
    e = np.asarray(vib.get_energies())
    order = np.argsort(np.abs(e), kind="stable")
    return e[order[n_rigid_modes(vib.get_atoms(), partial) :]]


def thermochemistry(
    vib: VibrationsData,
    potential_energy: float,
    temperature: float = 298.15,
    pressure: float = 101325.0,
    kind: str = "auto",
    symmetrynumber: int = 1,
    spin: float = 0.0,
    partial: bool = False,
) -> dict:
    r"""Zero-point energy and harmonic free energies through ASE's thermochemistry classes.

    ``kind="ideal_gas"`` (default for a free molecule): :class:`~ase.thermochemistry.IdealGasThermo`,
    translations and rotations of an ideal gas at ``pressure`` (Pa), giving enthalpy H, entropy S and
    Gibbs energy G. ``kind="harmonic"`` (default for periodic cells and partial Hessians):
    :class:`~ase.thermochemistry.HarmonicThermo`, all vibrational modes harmonic, giving internal
    energy U, entropy S and Helmholtz energy F. Energies in eV, entropies in eV/K.

    Raises:
        ValueError: imaginary vibrational modes (see :func:`check_minimum`), or an unknown ``kind``.
    """
    from ase.thermochemistry import HarmonicThermo, IdealGasThermo

    atoms = vib.get_atoms()
    if kind == "auto":
        kind = "harmonic" if (partial or atoms.pbc.any()) else "ideal_gas"
    check = check_minimum(vib, partial=partial)
    if not check.ok:
        raise ValueError(check.message())
    energies = vibrational_energies(vib, partial)
    energies = np.abs(energies.real)  # after the check: only round-off imaginary parts are left
    out = {
        "kind": kind,
        "temperature_K": temperature,
        "vib_energies_eV": energies,
        "zpe_eV": 0.5 * float(energies.sum()),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "ideal_gas":
            th = IdealGasThermo(
                energies,
                geometry(atoms),
                potentialenergy=potential_energy,
                atoms=atoms,
                symmetrynumber=symmetrynumber,
                spin=spin,
                vib_selection="all",
            )
            out.update(
                pressure_Pa=pressure,
                enthalpy_eV=th.get_enthalpy(temperature, verbose=False),
                entropy_eV_per_K=th.get_entropy(temperature, pressure, verbose=False),
                gibbs_eV=th.get_gibbs_energy(temperature, pressure, verbose=False),
            )
        elif kind == "harmonic":
            th = HarmonicThermo(energies, potentialenergy=potential_energy)
            out.update(
                internal_energy_eV=th.get_internal_energy(temperature, verbose=False),
                entropy_eV_per_K=th.get_entropy(temperature, verbose=False),
                helmholtz_eV=th.get_helmholtz_energy(temperature, verbose=False),
            )
        else:
            raise ValueError(f"kind must be 'auto', 'ideal_gas' or 'harmonic', got {kind!r}")
    return out


# --------------------------------------------------------------------------------------------- phonons
class HessianPhonons(Phonons):
    r""":class:`ase.phonons.Phonons` whose force constants are rows of the exact supercell Hessian.

    ASE's finite-displacement class displaces each atom of the reference cell of the supercell
    ±δ along x, y, z (6·n_cell force calls) and forms :math:`C_{N}[3a+v, 3b+w] = -\partial F_{Nb,w}/\partial u_{0a,v}`.
    That is exactly the row :math:`(0a, v)` of the supercell Hessian, so :meth:`run` computes the
    3·n_cell rows of the reference cell by Hessian-vector products and :meth:`read` builds ``C_N`` from
    them; ``band_structure``, ``get_band_structure``, ``get_dos``, ``write_modes`` are ASE's, unchanged.
    Nothing is written to disk.

    Attributes:
        asr_error: acoustic-sum-rule violation of the raw force constants,
            :math:`\max_{a,v,w}|\sum_{N,b} C_N[3a+v, 3b+w]| / \max|C|` (0 up to round-off for a
            translation-invariant model), set by :meth:`read`.
    """

    def __init__(self, atoms, calc, supercell=(1, 1, 1), center_refcell: bool = False):
        super().__init__(atoms, calc, supercell=supercell, name="phonon-unused", center_refcell=center_refcell)
        self.rows = None
        self.asr_error = None

    def run(self):
        """Hessian rows of the reference cell's atoms in the supercell ``atoms * supercell``."""
        atoms_n = self.atoms * self.supercell
        natoms = len(self.atoms)
        ref = self.offset * natoms + np.asarray(self.indices)
        self.rows = _hessian_rows(self.calc, atoms_n, ref)
        return self.rows

    def read(
        self,
        method: str = "standard",
        symmetrize: int = 3,
        acoustic: bool = True,
        cutoff: float | None = None,
        born: bool = False,
        **kwargs,
    ):
        """Force constants from the Hessian rows (ASE's keyword arguments; ``method`` is ignored)."""
        if born:
            raise ValueError("Born effective charges are not provided by this model")
        if self.rows is None:
            self.run()
        natoms, ncell = len(self.indices), int(np.prod(self.supercell))
        c_xnav = self.rows.reshape(3 * natoms, ncell, len(self.atoms), 3)[:, :, self.indices]
        c_n = c_xnav.swapaxes(0, 1).reshape(ncell, 3 * natoms, 3 * natoms).copy()
        self.asr_error = acoustic_sum_rule_error(c_n)
        if cutoff is not None:
            self.apply_cutoff(c_n, float(cutoff))
        for _ in range(symmetrize):
            c_n = self.symmetrize(c_n)
            if not acoustic:
                break
            self.acoustic(c_n)
        self.C_N = c_n
        self.D_N = c_n.copy()
        masses = self.atoms.get_masses()
        self.m_inv_x = np.repeat(masses[self.indices] ** -0.5, 3)
        self.D_N *= np.outer(self.m_inv_x, self.m_inv_x)[None]


def acoustic_sum_rule_error(c_n: np.ndarray) -> float:
    r""":math:`\max|\sum_{N,b} C_N[3a+v, 3b+w]| / \max|C|` over (a, v, w): zero for exact translation invariance."""
    c = np.asarray(c_n)
    ncell, m, _ = c.shape
    sums = c.reshape(ncell, m, m // 3, 3).sum(axis=(0, 2))
    return float(np.abs(sums).max() / max(np.abs(c).max(), 1e-300))


def phonons(atoms, calc, supercell=(4, 4, 4), symmetrize: int = 0, acoustic: bool = False) -> HessianPhonons:
    """Phonons of the crystal ``atoms`` (primitive or any cell) from the exact Hessian of ``atoms * supercell``.

    Returns a :class:`HessianPhonons` ready for ``get_band_structure(atoms.cell.bandpath())`` and
    ``get_dos(kpts)``. By default the raw exact force constants are used (``symmetrize=0``,
    ``acoustic=False``: the model's translation invariance makes the sum rule hold to round-off,
    ``asr_error`` says how well); ASE's symmetrisation and sum-rule correction stay available.
    """
    if not np.all(atoms.pbc):
        raise ValueError(
            f"phonons need a structure periodic in x, y and z (pbc={atoms.pbc.tolist()}); "
            "use vibrations() for molecules"
        )
    ph = HessianPhonons(atoms, calc, supercell=tuple(int(s) for s in supercell))
    ph.read(symmetrize=symmetrize, acoustic=acoustic)
    return ph


def frequencies_cm(energies_ev) -> np.ndarray:
    """eV → cm⁻¹ (imaginary energies stay imaginary)."""
    return np.asarray(energies_ev) / units.invcm
