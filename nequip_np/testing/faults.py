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

All are pair sums over ASE's neighbour list, :math:`E = \tfrac12\sum_{(i,j)} e(r_{ij})` with
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
    du = (-(p + 1) * (p + 2) * p / 2 * x ** (p - 1) + p * (p + 2) * (p + 1) * x**p
          - p * (p + 1) * (p + 2) / 2 * x ** (p + 1)) / r_cut
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
