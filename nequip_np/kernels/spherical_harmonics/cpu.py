r"""Edge spherical harmonics — Numba CPU kernel (same signatures as ``reference.py``).

What differs from the reference: the generated polynomials are evaluated per edge from their exact
coefficient table (``so3._generated_sh.EXACT_COEFFICIENTS``, every l ≤ ``SH_LMAX``): component
(l, m) = :math:`F_m(X, Y)\sum c\,Z^j r^{2k}` with :math:`F_m` the real/imaginary part of
:math:`(X+iY)^{|m|}` by recursion, so one compiled kernel serves every l_max. One ``prange`` over edges
normalises :math:`\vec r`, evaluates the components in registers and writes ``Y``; the reference's
(E, K, 3) gradient array is not stored — the backward pass recomputes :math:`\nabla_u P` per edge and
contracts it with :math:`\bar Y` on the fly (memory: 3·K·E numbers saved, 48·E at l_max = 3).
Geometry runs in float64 / complex128 only.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from nequip_np.kernels._numba_util import INLINE, PARALLEL, cast
from nequip_np.so3 import _generated_sh as _gen

_TABLES: dict = {}


def sh_table(l_max: int):
    """(comp_l, comp_m, term_ptr, term_j, term_k, term_c) for components k < (l_max+1)²."""
    if l_max in _TABLES:
        return _TABLES[l_max]
    if not 0 <= l_max <= _gen.LMAX:
        raise ValueError(f"l_max must be in 0..{_gen.LMAX}, got {l_max}")
    ls, ms, ptr, js, ks, cs = [], [], [0], [], [], []
    for l in range(l_max + 1):
        for m in range(-l, l + 1):
            for term in _gen.EXACT_COEFFICIENTS[f"{l},{m}"]:
                jk, coef = term.split(":")
                j, k = (int(t) for t in jk.split(","))
                js.append(j), ks.append(k), cs.append(float(eval(coef, {"sqrt": math.sqrt})))  # noqa: S307
            ls.append(l), ms.append(m), ptr.append(len(cs))
    out = (np.array(ls, np.int64), np.array(ms, np.int64), np.array(ptr, np.int64), np.array(js, np.int64),
           np.array(ks, np.int64), np.array(cs, np.float64))
    _TABLES[l_max] = out
    return out


@numba.njit(**INLINE)
def _powers(X, Yv, Z, r2, l_max, A, B, Zp, Rp):
    A[0], B[0], Zp[0], Rp[0] = X * 0.0 + 1.0, X * 0.0, X * 0.0 + 1.0, X * 0.0 + 1.0
    for m in range(1, l_max + 1):
        A[m] = X * A[m - 1] - Yv * B[m - 1]
        B[m] = X * B[m - 1] + Yv * A[m - 1]
        Zp[m] = Zp[m - 1] * Z
        Rp[m] = Rp[m - 1] * r2


@numba.njit(**INLINE)
def sh_edge(ux, uy, uz, tab_l, tab_m, ptr, tj, tk, tc, A, B, Zp, Rp, Y):
    """Y[k] = P_k(u) for one edge (e3nn order: (X, Y, Z) = (z, x, y))."""
    l_max = tab_l[tab_l.shape[0] - 1]
    _powers(uz, ux, uy, ux * ux + uy * uy + uz * uz, l_max, A, B, Zp, Rp)
    for k in range(tab_l.shape[0]):
        m = tab_m[k]
        F = A[m] if m >= 0 else B[-m]
        Q = F * 0.0
        for t in range(ptr[k], ptr[k + 1]):
            Q += tc[t] * Zp[tj[t]] * Rp[tk[t]]
        Y[k] = F * Q


@numba.njit(**INLINE)
def sh_edge_vjp(ux, uy, uz, dY, tab_l, tab_m, ptr, tj, tk, tc, A, B, Zp, Rp):
    """(g_x, g_y, g_z) = Σ_k dY[k] ∇_u P_k(u) for one edge."""
    X, Yv, Z = uz, ux, uy
    l_max = tab_l[tab_l.shape[0] - 1]
    _powers(X, Yv, Z, ux * ux + uy * uy + uz * uz, l_max, A, B, Zp, Rp)
    gX, gY, gZ = X * 0.0, X * 0.0, X * 0.0
    for k in range(tab_l.shape[0]):
        m = tab_m[k]
        am = m if m >= 0 else -m
        if m >= 0:
            F = A[am]
            FX = am * A[am - 1] if am > 0 else F * 0.0
            FY = -am * B[am - 1] if am > 0 else F * 0.0
        else:
            F = B[am]
            FX = am * B[am - 1]
            FY = am * A[am - 1]
        Q, QZ, QR = F * 0.0, F * 0.0, F * 0.0
        for t in range(ptr[k], ptr[k + 1]):
            j, kk, c = tj[t], tk[t], tc[t]
            Q += c * Zp[j] * Rp[kk]
            if j > 0:
                QZ += c * j * Zp[j - 1] * Rp[kk]
            if kk > 0:
                QR += c * kk * Zp[j] * Rp[kk - 1]
        d = dY[k]
        gX += d * (FX * Q + F * QR * 2.0 * X)
        gY += d * (FY * Q + F * QR * 2.0 * Yv)
        gZ += d * F * (QZ + QR * 2.0 * Z)
    return gY, gZ, gX


CHUNK = 512  # edges per prange item: the four scratch arrays are allocated once per chunk


@numba.njit(**PARALLEL)
def _forward(vec, tab_l, tab_m, ptr, tj, tk, tc, Y):
    l_max = tab_l[tab_l.shape[0] - 1]
    E = vec.shape[0]
    for ch in prange((E + CHUNK - 1) // CHUNK):
      A = np.empty(l_max + 1, dtype=Y.dtype)
      B, Zp, Rp = np.empty_like(A), np.empty_like(A), np.empty_like(A)
      for e in range(ch * CHUNK, min(E, (ch + 1) * CHUNK)):
        r = np.sqrt(vec[e, 0] * vec[e, 0] + vec[e, 1] * vec[e, 1] + vec[e, 2] * vec[e, 2])
        sh_edge(vec[e, 0] / r, vec[e, 1] / r, vec[e, 2] / r, tab_l, tab_m, ptr, tj, tk, tc, A, B, Zp, Rp, Y[e])


@numba.njit(**PARALLEL)
def _backward(dY, vec, tab_l, tab_m, ptr, tj, tk, tc, d_vec):
    l_max = tab_l[tab_l.shape[0] - 1]
    E = vec.shape[0]
    for ch in prange((E + CHUNK - 1) // CHUNK):
      A = np.empty(l_max + 1, dtype=d_vec.dtype)
      B, Zp, Rp = np.empty_like(A), np.empty_like(A), np.empty_like(A)
      for e in range(ch * CHUNK, min(E, (ch + 1) * CHUNK)):
        r = np.sqrt(vec[e, 0] * vec[e, 0] + vec[e, 1] * vec[e, 1] + vec[e, 2] * vec[e, 2])
        ux, uy, uz = vec[e, 0] / r, vec[e, 1] / r, vec[e, 2] / r
        gx, gy, gz = sh_edge_vjp(ux, uy, uz, dY[e], tab_l, tab_m, ptr, tj, tk, tc, A, B, Zp, Rp)
        ug = ux * gx + uy * gy + uz * gz
        d_vec[e, 0] = (gx - ux * ug) / r
        d_vec[e, 1] = (gy - uy * ug) / r
        d_vec[e, 2] = (gz - uz * ug) / r


def _dtype(a):
    return np.complex128 if np.iscomplexobj(a) else np.float64


def forward(edge_vec, l_max: int):
    vec = cast(edge_vec, _dtype(edge_vec))
    Y = np.empty((vec.shape[0], (l_max + 1) ** 2), dtype=vec.dtype)
    _forward(vec, *sh_table(int(l_max)), Y)
    return Y, (vec, int(l_max))


def backward(d_Y, cache):
    vec, l_max = cache
    dt = np.result_type(vec, d_Y)
    d_vec = np.empty(vec.shape, dtype=dt)
    _backward(cast(d_Y, dt), cast(vec, dt), *sh_table(l_max), d_vec)
    return d_vec
