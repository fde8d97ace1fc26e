r"""Toy ASE calculators with planted faults, and a correct reference, to exercise the harness.

Each fault breaks exactly one physical property, so the check that should catch it is known:

===========================  =====================================  ==========================
calculator                   fault                                  caught by
===========================  =====================================  ==========================
:class:`SmoothPair`          none (Morse x polynomial cutoff)       -- passes everything
:class:`NonConservativePair` ``mode="scaled"``: F = 1.1 (-grad E)   ``forces_gradient``
:class:`NonConservativePair` ``mode="missing_term"``: environment-  ``forces_gradient``,
                             dependent pair energy, forces drop      ``curl_free``
                             the chain rule through the environment
:class:`AnisotropicPair`     E depends on x-components of bonds     ``rotation_invariance``
:class:`ChiralPair`          adds a pseudoscalar (chiral) energy    ``inversion`` only
:class:`TruncatedLJ`         LJ cut at r_c without shift: E jumps   ``cutoff_smoothness``
===========================  =====================================  ==========================

Wrappers plant a fault on top of *any* calculator (an SCF code included): :class:`ScaledForces`,
:class:`CurlForces`, :class:`AnisotropicEnergy`; :class:`Noisy` emulates SCF convergence noise;
:class:`Coulomb` adds a correct long-range term and :class:`NonExtensive` a broken one.

All toy potentials are pair sums over ASE's neighbour list, :math:`E = \tfrac12\sum_{(i,j)} e(r_{ij})` with
:math:`r_{ij} = x_j - x_i + S_{ij}\,\mathrm{cell}` over ordered pairs. With :math:`g = \partial e /
\partial r_{ij}`, :math:`F_i = \tfrac12\sum_{j} g_{ij} - \tfrac12\sum_{j} g_{ji}` and
:math:`\sigma = \frac{1}{2V}\sum_{(i,j)} g_{ij}\otimes r_{ij}` (periodic cells only).
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.neighborlist import neighbor_list

from nequip_np.conventions import stress_to_voigt


def polynomial_cutoff(r, r_cut: float, p: int = 6):
    r"""NequIP's polynomial envelope u(r/r_c) (Klicpera et al. 2020, eq. 8) and du/dr; zero beyond r_c.

    .. math:: u(x) = 1 - \tfrac{(p+1)(p+2)}{2}x^p + p(p+2)x^{p+1} - \tfrac{p(p+1)}{2}x^{p+2}

    Works on complex ``r`` (used for complex-step derivatives).
    """
    x = r / r_cut
    u = 1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
    du = (
        -(p + 1) * (p + 2) * p / 2 * x ** (p - 1)
        + p * (p + 2) * (p + 1) * x**p
        - p * (p + 1) * (p + 2) / 2 * x ** (p + 1)
    ) / r_cut
    inside = np.real(x) < 1
    return np.where(inside, u, 0), np.where(inside, du, 0)


class PairPotential(Calculator):
    """Base: subclasses give ``pair(rvec) -> (e (P,), g (P, 3))`` with e even in rvec."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, cutoff: float, **kwargs):
        super().__init__(**kwargs)
        self.cutoff = float(cutoff)

    def pair(self, rvec: np.ndarray, i: np.ndarray, j: np.ndarray):
        raise NotImplementedError

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        i, j, shift = neighbor_list("ijS", a, self.cutoff)
        rvec = a.positions[j] - a.positions[i] + shift @ np.asarray(a.cell)
        e, g = self.pair(rvec, i, j)
        forces = np.zeros((len(a), 3))
        np.add.at(forces, i, 0.5 * g)
        np.add.at(forces, j, -0.5 * g)
        energy = 0.5 * float(e.sum())
        self.results = {"energy": energy, "free_energy": energy, "forces": self.post_forces(forces)}
        if a.pbc.all():
            virial = 0.5 * np.einsum("pa,pb->ab", g, rvec)
            self.results["stress"] = stress_to_voigt(0.5 * (virial + virial.T) / a.get_volume())

    def post_forces(self, forces: np.ndarray) -> np.ndarray:
        return forces


def _radial(rvec: np.ndarray):
    r = np.linalg.norm(rvec, axis=1)
    return r, rvec / r[:, None]


class SmoothPair(PairPotential):
    r"""Correct reference: Morse pair energy times NequIP's polynomial cutoff (C^2 at r_c), with stress.

    .. math:: e(r) = D\left[(1 - e^{-a(r - r_0)})^2 - 1\right] u(r / r_c)
    """

    def __init__(self, depth=0.5, alpha=1.5, r0=1.2, cutoff=4.0, **kwargs):
        super().__init__(cutoff, **kwargs)
        self.depth, self.alpha, self.r0 = depth, alpha, r0

    def radial(self, r):
        """e(r) and de/dr."""
        ex = np.exp(-self.alpha * (r - self.r0))
        phi = self.depth * ((1 - ex) ** 2 - 1)
        dphi = 2 * self.depth * (1 - ex) * self.alpha * ex
        u, du = polynomial_cutoff(r, self.cutoff)
        return phi * u, dphi * u + phi * du

    def pair(self, rvec, i, j):
        r, rhat = _radial(rvec)
        e, de = self.radial(r)
        return e, de[:, None] * rhat


class NonConservativePair(SmoothPair):
    """Forces that are not -grad E.

    ``mode="scaled"``: F = ``factor`` * (-grad E) -- still curl-free, wrong magnitude.
    ``mode="missing_term"``: e_ij = e(r_ij) (1 + c (n_i + n_j)) with coordination
    n_i = sum_k u(r_ik); the forces treat n as constant (the chain rule through the environment is
    dropped), so they are neither -grad E nor a gradient of anything (asymmetric Jacobian), while
    still summing to zero and rotating correctly.
    """

    def __init__(self, mode="missing_term", factor=1.1, coupling=0.5, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("scaled", "missing_term"):
            raise ValueError(f"mode must be 'scaled' or 'missing_term', got {mode!r}")
        self.mode, self.factor, self.coupling = mode, factor, coupling

    def pair(self, rvec, i, j):
        e, g = super().pair(rvec, i, j)
        if self.mode == "scaled":
            return e, g
        u, _ = polynomial_cutoff(np.linalg.norm(rvec, axis=1), self.cutoff)
        n = np.bincount(i, weights=u, minlength=int(max(i.max(initial=0), j.max(initial=0))) + 1)
        m = 1 + self.coupling * (n[i] + n[j])
        return e * m, g * m[:, None]

    def post_forces(self, forces):
        return self.factor * forces if self.mode == "scaled" else forces


class AnisotropicPair(SmoothPair):
    r"""Not rotation-invariant: :math:`e = e_0(r)\,(1 + a\,x^2/r^2)` with x the bond's x-component.

    Translation-, permutation- and inversion-invariant, and the forces are exactly -grad E.
    """

    def __init__(self, anisotropy=0.3, **kwargs):
        super().__init__(**kwargs)
        self.anisotropy = anisotropy

    def pair(self, rvec, i, j):
        r, rhat = _radial(rvec)
        e0, de0 = self.radial(r)
        x, a = rvec[:, 0], self.anisotropy
        w = 1 + a * x**2 / r**2
        dw = -2 * a * x[:, None] ** 2 * rvec / r[:, None] ** 4
        dw[:, 0] += 2 * a * x / r**2
        return e0 * w, de0[:, None] * rhat * w[:, None] + e0[:, None] * dw


class TruncatedLJ(PairPotential):
    r"""Lennard-Jones cut at r_c = 2.5 sigma *without* shifting: E jumps by 4 eps[(s/r_c)^12 - (s/r_c)^6]."""

    def __init__(self, epsilon=0.1, sigma=1.2, cutoff=None, **kwargs):
        super().__init__(2.5 * sigma if cutoff is None else cutoff, **kwargs)
        self.epsilon, self.sigma = epsilon, sigma

    def pair(self, rvec, i, j):
        r, rhat = _radial(rvec)
        s6 = (self.sigma / r) ** 6
        e = 4 * self.epsilon * (s6**2 - s6)
        de = 4 * self.epsilon * (-12 * s6**2 + 6 * s6) / r
        return e, de[:, None] * rhat


_LEVI_CIVITA = np.zeros((3, 3, 3))
_LEVI_CIVITA[0, 1, 2] = _LEVI_CIVITA[1, 2, 0] = _LEVI_CIVITA[2, 0, 1] = 1
_LEVI_CIVITA[0, 2, 1] = _LEVI_CIVITA[2, 1, 0] = _LEVI_CIVITA[1, 0, 2] = -1


class ChiralPair(SmoothPair):
    r"""Rotation-invariant but parity-odd: adds a pseudoscalar four-body energy (isolated systems only).

    .. math:: E_\chi = c \sum_i \sum_{jkl} \det[r_{ij}, r_{ik}, r_{il}]\,
        (d_{ij} - d_{ik})(d_{ik} - d_{il})(d_{il} - d_{ij})\, u_{ij} u_{ik} u_{il}

    (both factors are antisymmetric in j, k, l, so the product is symmetric and does not cancel).
    Its forces come from complex-step derivatives, exact to round-off, so only ``inversion`` fails.
    """

    def __init__(self, chirality=0.05, **kwargs):
        super().__init__(**kwargs)
        self.chirality = chirality

    def chiral_energy(self, pos):
        rv = pos[None, :, :] - pos[:, None, :]  # rv[i, j] = x_j - x_i
        d = np.sqrt((rv**2).sum(-1))  # analytic in complex pos (complex step), unlike abs()
        u, _ = polynomial_cutoff(d, self.cutoff)
        det = np.einsum("ija,ikb,ilc,abc->ijkl", rv, rv, rv, _LEVI_CIVITA)
        dj, dk, dl = d[:, :, None, None], d[:, None, :, None], d[:, None, None, :]
        weight = u[:, :, None, None] * u[:, None, :, None] * u[:, None, None, :]
        return self.chirality * (det * (dj - dk) * (dk - dl) * (dl - dj) * weight).sum()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.atoms.pbc.any():
            raise NotImplementedError("ChiralPair is for isolated systems only")
        pos, h = self.atoms.positions.astype(complex), 1e-30
        forces = np.empty(pos.shape)
        for i in range(len(pos)):
            for k in range(3):
                pos[i, k] += 1j * h
                forces[i, k] = -self.chiral_energy(pos).imag / h
                pos[i, k] -= 1j * h
        e = float(self.chiral_energy(pos).real)
        self.results["energy"] += e
        self.results["free_energy"] += e
        self.results["forces"] = self.results["forces"] + forces


def make_smooth_pair() -> SmoothPair:
    """Factory for ``nequip-np check --calculator nequip_np.testing.faults:make_smooth_pair``."""
    return SmoothPair()


def make_nonconservative() -> NonConservativePair:
    return NonConservativePair(mode="missing_term")


def make_scaled_forces() -> NonConservativePair:
    return NonConservativePair(mode="scaled")


def make_anisotropic() -> AnisotropicPair:
    return AnisotropicPair()


def make_chiral() -> ChiralPair:
    return ChiralPair()


def make_truncated_lj() -> TruncatedLJ:
    return TruncatedLJ()


# ---------------------------------------------------------------------------------- wrappers
# Faults planted on top of *any* calculator (a noisy SCF code included), a noise emulator, and
# long-range terms. All are for isolated systems; they pass the base calculator's stress through
# unchanged.


class Wrapped(Calculator):
    """Base of the wrappers: ``energy_forces(atoms, e, f) -> (e, f)`` modifies the base's results."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, base: Calculator, **kwargs):
        super().__init__(**kwargs)
        self.base = base

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms.copy()
        a.calc = self.base
        energy, forces = self.energy_forces(a, float(a.get_potential_energy()), np.array(a.get_forces()))
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
        if "stress" in properties and a.pbc.all():
            self.results["stress"] = a.get_stress()

    def energy_forces(self, atoms, energy: float, forces: np.ndarray):
        raise NotImplementedError


class Noisy(Wrapped):
    r"""Emulates SCF convergence noise: every evaluation adds fresh Gaussian noise to E and F.

    Like an SCF code restarting from the previous wavefunction, the result depends on the call history,
    not only on the structure. The default standard deviations (1e-9 eV, 5e-5 eV/Å per component)
    give deviations between two calls like GFN2-xTB's at default accuracy (tblite, ethanol: up to
    ~1e-9 eV in E, ~1e-4 eV/Å in F). Seeded, so a sequence of calls is reproducible.
    """

    def __init__(self, base: Calculator, energy_noise=1e-9, forces_noise=5e-5, seed=0, **kwargs):
        super().__init__(base, **kwargs)
        self.energy_noise, self.forces_noise = energy_noise, forces_noise
        self.rng = np.random.default_rng(seed)

    def energy_forces(self, atoms, energy, forces):
        return (
            energy + self.energy_noise * self.rng.standard_normal(),
            forces + self.forces_noise * self.rng.standard_normal(forces.shape),
        )


class ScaledForces(Wrapped):
    """F = ``factor`` x the base's forces (E unchanged): caught by ``forces_gradient`` and ``nve_drift``."""

    def __init__(self, base: Calculator, factor=1.01, **kwargs):
        super().__init__(base, **kwargs)
        self.factor = factor

    def energy_forces(self, atoms, energy, forces):
        return energy, self.factor * forces


class CurlForces(Wrapped):
    r"""Adds a rotational force field :math:`F_i \mathrel{+}= \kappa\,\hat z \times (x_i - \bar x)`.

    Its Jacobian has the antisymmetric part :math:`\kappa(\delta_{ij} - 1/N)[\hat z]_\times` (curl
    :math:`2\kappa\hat z`), so no energy has these forces; the net force stays zero. ``strength`` κ in
    eV/Å². Caught by ``forces_gradient`` and ``curl_free`` (and, the axis being fixed, the rotations).
    """

    def __init__(self, base: Calculator, strength=0.02, **kwargs):
        super().__init__(base, **kwargs)
        self.strength = strength

    def energy_forces(self, atoms, energy, forces):
        d = atoms.positions - atoms.positions.mean(axis=0)
        return energy, forces + self.strength * np.cross([0.0, 0.0, 1.0], d)


class AnisotropicEnergy(Wrapped):
    r"""Adds :math:`a\sum_i (x_i - \bar x)_x^2` to E, with its exact forces: not rotation-invariant.

    Translation-, permutation- and inversion-invariant, and conservative. ``strength`` a in eV/Å².
    Caught by ``rotation_invariance`` and ``inversion`` (the energy component).
    """

    def __init__(self, base: Calculator, strength=1e-4, **kwargs):
        super().__init__(base, **kwargs)
        self.strength = strength

    def energy_forces(self, atoms, energy, forces):
        dx = atoms.positions[:, 0] - atoms.positions[:, 0].mean()
        f = forces.copy()
        f[:, 0] -= 2 * self.strength * dx  # sum_i dx_i = 0 removes the mean's contribution
        return energy + self.strength * float((dx**2).sum()), f


class Coulomb(Wrapped):
    r"""Adds bare point-charge electrostatics :math:`k\sum_{i<j} q_i q_j / r_{ij}` (isolated systems).

    A correct long-range term: ``additivity`` fails with ``locality="local"`` and passes as a decay
    with ``locality="long-range"`` (neutral fragments: dipolar, :math:`\Delta E \sim R^{-3}`).
    ``charges``: element symbol -> charge in e.
    """

    def __init__(self, base: Calculator, charges: dict, **kwargs):
        super().__init__(base, **kwargs)
        self.charges = dict(charges)

    def energy_forces(self, atoms, energy, forces):
        from ase.units import Bohr, Hartree

        q = np.array([self.charges.get(s, 0.0) for s in atoms.get_chemical_symbols()])
        rv = atoms.positions[None, :, :] - atoms.positions[:, None, :]  # rv[i, j] = x_j - x_i
        r = np.linalg.norm(rv, axis=-1)
        np.fill_diagonal(r, np.inf)
        k = Hartree * Bohr  # e^2 / (4 pi eps0) in eV Å
        qq = k * q[:, None] * q[None, :]
        f = -(qq / r**3)[:, :, None] * rv  # force on i from j: k q_i q_j (x_i - x_j) / r^3
        return energy + 0.5 * float((qq / r).sum()), forces + f.sum(axis=1)


class NonExtensive(Wrapped):
    r"""A broken long-range term: adds :math:`c N^2` (N atoms), an interaction that never decays.

    Forces are unchanged (the term does not depend on positions); only ``additivity`` sees it, in
    either locality mode.
    """

    def __init__(self, base: Calculator, c=1e-4, **kwargs):
        super().__init__(base, **kwargs)
        self.c = c

    def energy_forces(self, atoms, energy, forces):
        return energy + self.c * len(atoms) ** 2, forces
