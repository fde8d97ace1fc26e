r"""Edge length → Bessel basis × polynomial envelope — Numba CPU kernel (reference signatures).

What differs from the reference: one ``prange`` over edges computes r, x, the B Bessel values and the
envelope in registers (the formulas of ``scalar_math``, shared with the GPU kernels) and writes only
``emb`` (the reference keeps five (E, B) temporaries); the cache keeps the inputs and the backward
pass recomputes sin/cos per edge. Integer envelope exponents (nequip's default p = 6) use repeated
multiplication instead of ``pow``. The trainable-frequency gradient
:math:`\bar w_n = \sum_e \bar B_{en}\cos(\pi w_n x_e)` is written per edge into an (E, B) array and
summed by NumPy in edge order — deterministic for any thread count. Geometry runs in float64 /
complex128 only (the model's geometry precision), so two signatures are compiled.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from nequip_np.kernels._numba_util import PARALLEL, SCALAR, cast

# the formulas of scalar_math, compiled for the CPU (the GPU kernels compile the same functions)
bessel, bessel_parts, cutoff, cutoff_grad = SCALAR.bessel, SCALAR.bessel_parts, SCALAR.cutoff, SCALAR.cutoff_grad


@numba.njit(**PARALLEL)
def _forward(vec, rmax_recip, w, p, prefactor, emb):
    for e in prange(vec.shape[0]):
        r = np.sqrt(vec[e, 0] * vec[e, 0] + vec[e, 1] * vec[e, 1] + vec[e, 2] * vec[e, 2])
        x = r * rmax_recip[e]
        u = cutoff(x, p)
        for n in range(w.shape[0]):
            emb[e, n] = prefactor * bessel(x, w[n]) * u


@numba.njit(**PARALLEL)
def _backward(d_emb, vec, rmax_recip, w, p, prefactor, d_vec, d_w_edge):
    for e in prange(vec.shape[0]):
        r = np.sqrt(vec[e, 0] * vec[e, 0] + vec[e, 1] * vec[e, 1] + vec[e, 2] * vec[e, 2])
        x = r * rmax_recip[e]
        u = cutoff(x, p)
        d_u = d_emb[e, 0] * 0.0
        d_x = d_emb[e, 0] * 0.0
        for n in range(w.shape[0]):
            B, dB, cs = bessel_parts(x, w[n])
            g = prefactor * d_emb[e, n]
            d_u += g * B
            d_x += g * u * dB
            d_w_edge[e, n] = g * u * cs
        d_x += d_u * cutoff_grad(x, p)
        s = d_x * rmax_recip[e] / r
        for a in range(3):
            d_vec[e, a] = s * vec[e, a]


def _dtype(edge_vec):
    return np.complex128 if np.iscomplexobj(edge_vec) else np.float64


def forward(edge_vec, rmax_recip, bessel_w, p, prefactor):
    """Returns ``(emb, cache)``; ``emb`` has the dtype of ``edge_vec`` (float64 or complex128)."""
    dt = _dtype(edge_vec)
    vec, rr, w = cast(edge_vec, dt), cast(rmax_recip, dt), cast(bessel_w, dt)
    emb = np.empty((vec.shape[0], w.shape[0]), dtype=dt)
    _forward(vec, rr, w, float(p), float(prefactor), emb)
    return emb, (vec, rr, w, float(p), float(prefactor), np.asarray(bessel_w).dtype)


def backward(d_emb, cache):
    """Returns ``(d_edge_vec, d_bessel_w)``."""
    vec, rr, w, p, prefactor, w_dtype = cache
    dt = np.result_type(vec, d_emb)
    d_vec = np.empty(vec.shape, dtype=dt)
    d_w_edge = np.empty((vec.shape[0], w.shape[0]), dtype=dt)
    _backward(cast(d_emb, dt), cast(vec, dt), cast(rr, dt), cast(w, dt), p, prefactor, d_vec, d_w_edge)
    return d_vec, np.sum(d_w_edge, axis=0)
