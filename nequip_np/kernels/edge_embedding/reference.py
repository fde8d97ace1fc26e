r"""Edge length → Bessel radial basis × polynomial envelope (reference, the specification).

Notation

=========================  ==================  =========
symbol                     array               shape
=========================  ==================  =========
:math:`\vec r_e`           ``edge_vec``        (E, 3)
:math:`1/r_{\max}`         ``rmax_recip``      (E,)
:math:`w_n`                ``bessel_w``        (B,)
:math:`b_{en}`             ``emb``             (E, B)
=========================  ==================  =========

Forward (nequip 0.19.1; derivation in ``docs/derivations/operations.md#edge-embedding``):

.. math::

    r = \sqrt{\vec r\cdot\vec r},\quad x = r / r_{\max},\quad
    B_n(x) = \frac{\sin(\pi w_n x)}{\pi x},\quad
    u(x) = \Big[1 - \tfrac{(p+1)(p+2)}{2}x^p + p(p+2)x^{p+1} - \tfrac{p(p+1)}{2}x^{p+2}\Big]\,[x<1],

    b_{en} = \frac{2\pi}{r_{\max}^2}\, B_n(x_e)\, u(x_e).

Backward: with :math:`\bar b` given,
:math:`\bar B_n = c\,u\,\bar b_n`, :math:`\bar u = c\sum_n B_n \bar b_n`,
:math:`\partial_x B_n = w_n\cos(\pi w_n x)/x - \sin(\pi w_n x)/(\pi x^2)`,
:math:`u'(x) = [-p a x^{p-1} + (p+1) b x^p - (p+2) c' x^{p+1}]\,[x<1]`,
:math:`\bar x = \sum_n \bar B_n \partial_x B_n + \bar u u'`,
:math:`\bar{\vec r} = \bar x\, r_{\max}^{-1}\, \vec r / r`, and for trainable :math:`w_n`:
:math:`\bar w_n = \sum_e \bar B_{en} \cos(\pi w_n x_e)`.

All arithmetic is analytic (no abs, comparisons on the real part only), so the same code runs on
complex inputs for the training pass.
"""

from __future__ import annotations

import numpy as np


def _poly_coeffs(p: float):
    return (p + 1.0) * (p + 2.0) / 2.0, p * (p + 2.0), p * (p + 1.0) / 2.0


def cutoff(x: np.ndarray, p: float) -> np.ndarray:
    """Polynomial envelope u(x) (DimeNet), zero for x ≥ 1."""
    a, b, c = _poly_coeffs(p)
    return (1.0 - a * x**p + b * x ** (p + 1) - c * x ** (p + 2)) * (np.real(x) < 1.0)


def cutoff_grad(x: np.ndarray, p: float) -> np.ndarray:
    a, b, c = _poly_coeffs(p)
    return (-p * a * x ** (p - 1) + (p + 1) * b * x**p - (p + 2) * c * x ** (p + 1)) * (np.real(x) < 1.0)


def forward(edge_vec, rmax_recip, bessel_w, p, prefactor):
    """Returns ``(emb, cache)``; ``emb`` has the dtype of ``edge_vec`` (float64 or complex128)."""
    r = np.sqrt(np.sum(edge_vec * edge_vec, axis=1))
    x = r * rmax_recip
    arg = np.pi * bessel_w[None, :] * x[:, None]
    bess = np.sin(arg) / (np.pi * x[:, None])
    u = cutoff(x, p)
    emb = prefactor * bess * u[:, None]
    return emb, (edge_vec, r, x, arg, bess, u, rmax_recip, bessel_w, p, prefactor)


def backward(d_emb, cache):
    """Returns ``(d_edge_vec, d_bessel_w)``."""
    edge_vec, r, x, arg, bess, u, rmax_recip, bessel_w, p, prefactor = cache
    d_bess = prefactor * d_emb * u[:, None]
    d_u = prefactor * np.sum(d_emb * bess, axis=1)
    dbess_dx = bessel_w[None, :] * np.cos(arg) / x[:, None] - np.sin(arg) / (np.pi * x[:, None] ** 2)
    d_x = np.sum(d_bess * dbess_dx, axis=1) + d_u * cutoff_grad(x, p)
    d_edge_vec = (d_x * rmax_recip / r)[:, None] * edge_vec
    d_bessel_w = np.sum(d_bess * np.cos(arg), axis=0)
    return d_edge_vec, d_bessel_w
