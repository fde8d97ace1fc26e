r"""Wigner D matrices of O(3) in the basis of our spherical harmonics, and random rotations.

:math:`D^l(R)` is defined by the transformation of the spherical harmonics,

.. math::  Y^l(R\,x) = D^l(R)\,Y^l(x) \qquad (R \in SO(3)),

so :math:`D^1(R) = R` in the (x, y, z) basis. We obtain it by least squares from the solid
harmonics at N = 3(2l+1) fixed, well-spread points :math:`x_k` (a Fibonacci lattice):
:math:`D^\top = Y_x^{+} Y_{Rx}` with the pseudo-inverse of the (N, 2l+1) matrix :math:`Y_x`,
cached per l. The system is exact (D exists), well conditioned (the columns of :math:`Y_x` are
nearly orthogonal), so D is accurate to ~1e-14 for l <= 8.

Improper R (det −1) is handled through the parity: :math:`R = -R'` with :math:`R'` proper and
:math:`D_{(l,p)}(R) = p\,D^l(R')`. For the spherical harmonics themselves :math:`p = (-1)^l`, which
is the default, so that ``Y(R x) = wigner_D(l, R) @ Y(x)`` also for improper R.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from .spherical_harmonics import SH_LMAX, sh_polynomials


def _fibonacci_sphere(n: int) -> np.ndarray:
    k = np.arange(n) + 0.5
    cos_t = 1.0 - 2.0 * k / n
    sin_t = np.sqrt(1.0 - cos_t**2)
    phi = np.pi * (1.0 + 5.0**0.5) * k
    return np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)


@cache
def _sampling(l: int) -> tuple[np.ndarray, np.ndarray]:
    pts = _fibonacci_sphere(3 * (2 * l + 1))
    block = sh_polynomials(l, pts)[:, l * l :]
    return pts, np.linalg.pinv(block)


def _check_rotation(R) -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"expected a 3x3 matrix, got shape {R.shape}")
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-8):
        raise ValueError("R must be orthogonal (R @ R.T == I to 1e-8)")
    return R


def wigner_D(l: int, R, p: int | None = None) -> np.ndarray:
    r"""(2l+1, 2l+1) representation matrix of the orthogonal 3×3 ``R`` for irrep (l, p).

    Args:
        l: degree, 0..``SH_LMAX``.
        R: orthogonal matrix acting on column vectors (x, y, z).
        p: parity (+1 / −1); ``None`` means :math:`(-1)^l`, the parity of :math:`Y^l`.
    """
    if isinstance(l, bool) or not isinstance(l, (int, np.integer)) or not 0 <= l <= SH_LMAX:
        raise ValueError(f"l must be an integer in 0..{SH_LMAX}, got {l!r}")
    if p is None:
        p = (-1) ** l
    if p not in (1, -1):
        raise ValueError(f"parity p must be +1 or -1, got {p!r}")
    R = _check_rotation(R)
    sign = 1.0
    if np.linalg.det(R) < 0:
        R, sign = -R, float(p)
    pts, pinv = _sampling(int(l))
    rotated = sh_polynomials(l, pts @ R.T)[:, l * l :]
    return sign * (pinv @ rotated).T


def random_rotation(rng) -> np.ndarray:
    """A rotation matrix drawn uniformly from SO(3) (Haar measure), float64.

    A normalised 4-d Gaussian is a uniform unit quaternion, and unit quaternions cover SO(3)
    twice, uniformly. ``rng`` is a ``numpy.random.Generator`` (or a seed for one)."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )
