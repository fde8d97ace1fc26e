r"""The noise floor of a calculator on one structure, and the profile it suggests.

Every check compares two evaluations that agree exactly in exact arithmetic. A float64 model
agrees to round-off (~1e-15); a float32 model to ~1e-7; a self-consistent-field (SCF) method such as
DFT or tight binding only to its convergence threshold, and its result also depends on where the
SCF started (most codes restart from the previous geometry's wavefunction). Judging such a
calculator against round-off tolerances reports its convergence noise as broken physics.

:func:`estimate_noise` measures that noise directly, with evaluations whose exact answers are known:

* **re-evaluation** of the unchanged structure after evaluating a different one in between (a
  rattled copy, two rotated copies and the inverted one): exact arithmetic and a history-free code
  give identical numbers;
* a **rigid translation** by ``1e-6`` Å: changes only round-off (and, in any model, a translation
  dependence of size 1e-6 times the one the ``translation`` check sees at a few Å);
* a **permutation** of the atoms (forces permuted back).

The floor of each output is the largest deviation from the reference over these probes, in absolute
units (eV, eV/Å, eV/Å³). A check converts it to its own unit (see each check) and then passes when

.. math:: \mathrm{error} \le \max(\mathrm{tolerance},\ K\,\mathrm{floor}), \qquad K = 10,

unless the caller gave that check's tolerance explicitly, which then wins. ``K`` covers the spread of
a maximum over a handful of noisy samples; systematic faults sit orders of magnitude above it (see
``docs/harness.md`` for measured numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from nequip_np.testing.adapter import Evaluation, Evaluator, random_rotation, transformed

#: safety factor between the measured noise floor and what a check may attribute to noise.
NOISE_FACTOR = 10.0

#: relative spread above which a deterministic calculator is taken to compute in float32.
_FLOAT32_SPREAD = 1e-10
#: relative re-evaluation difference above which a calculator is history dependent (SCF).
_HISTORY_SPREAD = 1e-12


@dataclass(frozen=True)
class NoiseEstimate:
    """Largest deviation of equivalent evaluations from the reference, per output.

    Attributes:
        energy: eV (total energy).
        forces: eV/Å (max over components).
        stress: eV/Å³, or None when the calculator gave no stress.
        history: largest deviation of plain re-evaluations, relative to max|F| (forces) -- nonzero
            means the result depends on what was evaluated before (an SCF restart).
        spread: largest deviation of translated / permuted copies, relative to max|F|.
        float32: the calculator returned float32 arrays.
        evaluations: model evaluations spent.
    """

    energy: float
    forces: float
    stress: float | None
    history: float
    spread: float
    float32: bool
    evaluations: int

    @classmethod
    def zero(cls) -> NoiseEstimate:
        """No noise assumed (``noise=False``): every floor is 0 and tolerances alone decide."""
        return cls(0.0, 0.0, None, 0.0, 0.0, False, 0)

    def suggested_profile(self) -> str:
        """``"scf"`` if history dependent, ``"float32"`` if float32-sized spread, else ``"float64"``."""
        if self.history > _HISTORY_SPREAD:
            return "scf"
        if self.float32 or self.spread > _FLOAT32_SPREAD:
            return "float32"
        return "float64"

    def __str__(self) -> str:
        s = "-" if self.stress is None else f"{self.stress:.1e}"
        return (
            f"noise floor E {self.energy:.1e} eV, F {self.forces:.1e} eV/Å, sigma {s} eV/Å^3 "
            f"(re-evaluation {self.history:.1e}, translation/permutation {self.spread:.1e} of max|F|; "
            f"{self.evaluations} evaluations)"
        )


def _deviation(got: Evaluation, ref: Evaluation, perm=None) -> tuple[float, float, float | None]:
    forces = got.forces if perm is None else got.forces[np.argsort(perm)]
    ds = None
    if got.stress is not None and ref.stress is not None:
        ds = float(np.max(np.abs(got.stress - ref.stress)))
    return abs(got.energy - ref.energy), float(np.max(np.abs(forces - ref.forces))), ds


def estimate_noise(
    ev: Evaluator, atoms: Atoms, reference: Evaluation, rng: np.random.Generator, rattle: float = 0.05
) -> NoiseEstimate:
    """Probe ``ev`` around ``atoms`` (whose evaluation is ``reference``) and return the noise floor.

    Spends 11 evaluations (plus one for the permutation when there are two or more atoms).
    """

    calls = ev.calls
    history, spread = [], []
    rattled = atoms.copy()
    rattled.positions += rattle * rng.standard_normal(rattled.positions.shape)
    histories = [rattled] + [transformed(atoms, random_rotation(rng)) for _ in range(2)]
    histories.insert(2, transformed(atoms, -np.eye(3)))
    for before in histories:
        ev(before)  # a different history; its result is not compared
        history.append(_deviation(ev(atoms), reference))
    shifted = atoms.copy()
    shifted.positions += 1e-6 * rng.standard_normal(3)
    spread.append(_deviation(ev(shifted), reference))
    if len(atoms) > 1:
        p = rng.permutation(len(atoms))
        spread.append(_deviation(ev(atoms[p]), reference, perm=p))
    history.append(_deviation(ev(atoms), reference))  # after the permutation: a cold restart
    raw = ev.last_raw_dtype
    scale = max(float(np.max(np.abs(reference.forces))), 1e-3)
    rows = history + spread
    stresses = [r[2] for r in rows if r[2] is not None]
    return NoiseEstimate(
        energy=max(r[0] for r in rows),
        forces=max(r[1] for r in rows),
        stress=max(stresses) if stresses else None,
        history=max(max(r[1] for r in history) / scale, max(r[0] for r in history) / max(abs(reference.energy), 1.0)),
        spread=max(max(r[1] for r in spread) / scale, max(r[0] for r in spread) / max(abs(reference.energy), 1.0)),
        float32=raw == np.float32,
        evaluations=ev.calls - calls,
    )
