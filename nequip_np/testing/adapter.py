"""One adapter for everything the harness can test: an ASE calculator or a plain callable.

The checks see only :class:`Evaluator`: ``ev(atoms) -> Evaluation(energy, forces, stress)``,
``ev.energy(atoms)`` and, for molecular dynamics, ``ev.as_calculator()``. Every call receives a copy
of the atoms, so neither the caller's ``Atoms`` nor the harness' own reference copy can be changed by
the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from nequip_np.conventions import stress_to_voigt, voigt_to_stress


@dataclass(frozen=True)
class Evaluation:
    """Energy (eV), forces (N, 3) eV/Å and stress (3, 3) eV/Å^3 in ASE's sign, or None."""

    energy: float
    forces: np.ndarray
    stress: np.ndarray | None


def _as_stress(stress) -> np.ndarray | None:
    if stress is None:
        return None
    stress = np.asarray(stress, dtype=np.float64)
    if stress.shape == (6,):
        return voigt_to_stress(stress)
    if stress.shape == (3, 3):
        return stress
    raise ValueError(f"stress must be 3x3 or Voigt (6,), got shape {stress.shape}")


class Evaluator:
    """Wraps ``fn(atoms) -> (energy, forces[, stress])`` and counts its calls."""

    def __init__(self, fn: Callable, calculator: Calculator | None = None, label: str = ""):
        self._fn = fn
        self._calculator = calculator
        self.label = label or getattr(fn, "__name__", type(fn).__name__)
        self.calls = 0
        self.last_raw_dtype = None  # dtype of the forces the model itself returned (float32 models)

    @classmethod
    def from_calculator(cls, calc: Calculator) -> Evaluator:
        def fn(atoms: Atoms):
            atoms.calc = calc
            energy = atoms.get_potential_energy()
            forces = atoms.get_forces()
            stress = None
            if atoms.pbc.all():
                try:
                    stress = atoms.get_stress(voigt=False)
                except (PropertyNotImplementedError, NotImplementedError):
                    stress = None
            return energy, forces, stress

        return cls(fn, calculator=calc, label=type(calc).__name__)

    @classmethod
    def from_function(cls, fn: Callable) -> Evaluator:
        return cls(fn)

    def __call__(self, atoms: Atoms) -> Evaluation:
        self.calls += 1
        out = self._fn(atoms.copy())
        if not isinstance(out, (tuple, list)) or len(out) not in (2, 3):
            raise ValueError("the function must return (energy, forces) or (energy, forces, stress)")
        self.last_raw_dtype = np.asarray(out[1]).dtype
        energy, forces = float(out[0]), np.asarray(out[1], dtype=np.float64)
        if forces.shape != (len(atoms), 3):
            raise ValueError(f"forces must have shape ({len(atoms)}, 3), got {forces.shape}")
        stress = _as_stress(out[2]) if len(out) == 3 else None
        return Evaluation(energy, forces.copy(), None if stress is None else stress.copy())

    def energy(self, atoms: Atoms) -> float:
        if self._calculator is not None:  # a calculator may compute energy alone more cheaply
            self.calls += 1
            a = atoms.copy()
            a.calc = self._calculator
            return float(a.get_potential_energy())
        return self(atoms).energy

    def as_calculator(self) -> Calculator:
        """An ASE calculator for ``ase.md``: the wrapped one, or :class:`FunctionCalculator`."""
        return self._calculator if self._calculator is not None else FunctionCalculator(self)


class FunctionCalculator(Calculator):
    """ASE calculator around an :class:`Evaluator` (used to run ``ase.md`` on a plain function)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, evaluator: Evaluator, **kwargs):
        super().__init__(**kwargs)
        self.evaluator = evaluator

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        ev = self.evaluator(self.atoms)
        self.results = {"energy": ev.energy, "free_energy": ev.energy, "forces": ev.forces}
        if ev.stress is not None:
            self.results["stress"] = stress_to_voigt(ev.stress)  # ASE stores Voigt


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Haar-random proper rotation (3, 3), det = +1 (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def transformed(atoms: Atoms, q: np.ndarray) -> Atoms:
    """Copy of ``atoms`` with positions and cell mapped by ``x -> x q^T``.

    An improper ``q`` makes the cell left-handed; two cell vectors (and their pbc flags) are then
    swapped, which describes the same lattice with a right-handed basis.
    """
    a = atoms.copy()
    a.positions = atoms.positions @ q.T
    cell = np.asarray(atoms.cell) @ q.T
    pbc = atoms.pbc.copy()
    if np.linalg.det(cell) < 0:
        cell, pbc = cell[[1, 0, 2]], pbc[[1, 0, 2]]
    a.set_cell(cell, scale_atoms=False)
    a.pbc = pbc
    return a
