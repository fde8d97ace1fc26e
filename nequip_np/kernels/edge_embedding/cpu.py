r"""Edge length → Bessel basis × polynomial envelope — Numba CPU kernel (reference signatures).

What differs from the reference: one ``prange`` over edges computes r, x, the B Bessel values and the
envelope in registers and writes only ``emb`` (the reference keeps five (E, B) temporaries); the cache
keeps the inputs and the backward pass recomputes sin/cos per edge. Integer envelope exponents
(nequip's default p = 6) use repeated multiplication instead of ``pow``. The trainable-frequency
gradient :math:`\bar w_n = \sum_e \bar B_{en}\cos(\pi w_n x_e)` is written per edge into an (E, B)
array and summed by NumPy in edge order — deterministic for any thread count. Geometry runs in
float64 / complex128 only (the model's geometry precision), so two signatures are compiled.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from nequip_np.kernels._numba_util import INLINE, PARALLEL, cast


@numba.njit(**INLINE)
def _pow(x, p, p_int):
    """x**p: repeated multiplication when p is a non-negative integer (p_int = p), else ``**``."""
    if p_int >= 0:
        out = x * 0.0 + 1.0
        for _ in range(p_int):
            out = out * x
        return out
    return x**p


@numba.njit(**INLINE)
def envelope(x, p, p_int):
    """(u(x), u'(x)) of the polynomial envelope; both zero for Re x ≥ 1."""
    if x.real >= 1.0:
        return x * 0.0, x * 0.0
    a, b, c = (p + 1.0) * (p + 2.0) / 2.0, p * (p + 2.0), p * (p + 1.0) / 2.0
    xpm1 = _pow(x, p - 1.0, p_int - 1 if p_int >= 1 else -1)
    xp = xpm1 * x
    u = 1.0 - a * xp + b * xp * x - c * xp * x * x
    du = -p * a * xpm1 + (p + 1.0) * b * xp - (p + 2.0) * c * xp * x
    return u, du


@numba.njit(**PARALLEL)
def _forward(vec, rmax_recip, w, p, p_int, prefactor, emb):
    for e in prange(vec.shape[0]):
        r = np.sqrt(vec[e, 0] * vec[e, 0] + vec[e, 1] * vec[e, 1] + vec[e, 2] * vec[e, 2])
        x = r * rmax_recip[e]
        u, _ = envelope(x, p, p_int)
        scale = prefactor * u / (np.pi * x)
        for n in range(w.shape[0]):
            emb[e, n] = scale * np.sin(np.pi * w[n] * x)


@numba.njit(**PARALLEL)
def _backward(d_emb, vec, rmax_recip, w, p, p_int, prefactor, d_vec, d_w_edge):
    for e in prange(vec.shape[0]):
        r = np.sqrt(vec[e, 0] * vec[e, 0] + vec[e, 1] * vec[e, 1] + vec[e, 2] * vec[e, 2])
        x = r * rmax_recip[e]
        u, du = envelope(x, p, p_int)
        px = np.pi * x
        d_u = d_emb[e, 0] * 0.0
        d_x = d_emb[e, 0] * 0.0
        for n in range(w.shape[0]):
            arg = np.pi * w[n] * x
            sn, cs = np.sin(arg), np.cos(arg)
            d_bess = prefactor * d_emb[e, n] * u
            d_u += prefactor * d_emb[e, n] * (sn / px)
            d_x += d_bess * (w[n] * cs / x - sn / (px * x))
            d_w_edge[e, n] = d_bess * cs
        d_x += d_u * du
        g = d_x * rmax_recip[e] / r
        for a in range(3):
            d_vec[e, a] = g * vec[e, a]


def _dtype(edge_vec):
    return np.complex128 if np.iscomplexobj(edge_vec) else np.float64


def _p_int(p):
    p = float(p)
    return int(p) if p.is_integer() and p >= 1 else -1


def forward(edge_vec, rmax_recip, bessel_w, p, prefactor):
    """Returns ``(emb, cache)``; ``emb`` has the dtype of ``edge_vec`` (float64 or complex128)."""
    dt = _dtype(edge_vec)
    vec, rr, w = cast(edge_vec, dt), cast(rmax_recip, dt), cast(bessel_w, dt)
    emb = np.empty((vec.shape[0], w.shape[0]), dtype=dt)
    _forward(vec, rr, w, float(p), _p_int(p), float(prefactor), emb)
    return emb, (vec, rr, w, float(p), float(prefactor), np.asarray(bessel_w).dtype)


def backward(d_emb, cache):
    """Returns ``(d_edge_vec, d_bessel_w)``."""
    vec, rr, w, p, prefactor, w_dtype = cache
    dt = np.result_type(vec, d_emb)
    d_vec = np.empty(vec.shape, dtype=dt)
    d_w_edge = np.empty((vec.shape[0], w.shape[0]), dtype=dt)
    _backward(cast(d_emb, dt), cast(vec, dt), cast(rr, dt), cast(w, dt), p, _p_int(p), prefactor, d_vec, d_w_edge)
    return d_vec, np.sum(d_w_edge, axis=0)
