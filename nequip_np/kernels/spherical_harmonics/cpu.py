r"""Edge spherical harmonics — Numba CPU kernel (same signatures as ``reference.py``).

What differs from the reference: the generated polynomials are evaluated per edge from their exact
coefficient table (the plan's :class:`~nequip_np.kernels.plan.SHTable`, every l ≤ ``SH_LMAX``, so one
compiled kernel serves every l_max): component (l, m) = :math:`F_m(X, Y)\sum c\,Z^j r^{2k}` with
:math:`F_m` the real/imaginary part of :math:`(X+iY)^{|m|}` by recursion — ``scalar_math.sh_value``
and its gradient ``sh_vjp``, the very functions the GPU kernels compile. One ``prange`` over edges
normalises :math:`\vec r`, evaluates the components in registers and writes ``Y``; the reference's
(E, K, 3) gradient array is not stored — the backward pass recomputes :math:`\nabla_u P` per edge and
contracts it with :math:`\bar Y` on the fly (memory: 3·K·E numbers saved, 48·E at l_max = 3).
Geometry runs in float64 / complex128 only.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from nequip_np.kernels._numba_util import PARALLEL, SCALAR, cast
from nequip_np.kernels.plan import sh_table

# the formulas of scalar_math, compiled for the CPU (spherical_harmonics/cuda.py compiles the same)
sh_value, sh_vjp = SCALAR.sh_value, SCALAR.sh_vjp


@numba.njit(**PARALLEL)
def _forward(vec, cm, ptr, tj, tk, tc, Y):
    for e in prange(vec.shape[0]):
        r = np.sqrt(vec[e, 0] * vec[e, 0] + vec[e, 1] * vec[e, 1] + vec[e, 2] * vec[e, 2])
        ux, uy, uz = vec[e, 0] / r, vec[e, 1] / r, vec[e, 2] / r
        r2 = ux * ux + uy * uy + uz * uz
        for k in range(cm.shape[0]):  # e3nn order: (X, Y, Z) = (u_z, u_x, u_y)
            Y[e, k] = sh_value(uz, ux, uy, r2, cm[k], ptr[k], ptr[k + 1], tj, tk, tc)


@numba.njit(**PARALLEL)
def _backward(dY, vec, cm, ptr, tj, tk, tc, d_vec):
    for e in prange(vec.shape[0]):
        r = np.sqrt(vec[e, 0] * vec[e, 0] + vec[e, 1] * vec[e, 1] + vec[e, 2] * vec[e, 2])
        ux, uy, uz = vec[e, 0] / r, vec[e, 1] / r, vec[e, 2] / r
        r2 = ux * ux + uy * uy + uz * uz
        gX, gY, gZ = dY[e, 0] * 0.0, dY[e, 0] * 0.0, dY[e, 0] * 0.0
        for k in range(cm.shape[0]):
            aX, aY, aZ = sh_vjp(uz, ux, uy, r2, cm[k], ptr[k], ptr[k + 1], tj, tk, tc)
            gX += dY[e, k] * aX
            gY += dY[e, k] * aY
            gZ += dY[e, k] * aZ
        gx, gy, gz = gY, gZ, gX  # back from (X, Y, Z) = (u_z, u_x, u_y)
        ug = ux * gx + uy * gy + uz * gz
        d_vec[e, 0] = (gx - ux * ug) / r
        d_vec[e, 1] = (gy - uy * ug) / r
        d_vec[e, 2] = (gz - uz * ug) / r


def _dtype(a):
    return np.complex128 if np.iscomplexobj(a) else np.float64


def _table(l_max: int):
    t = sh_table(int(l_max))
    return t.m, t.ptr, t.j, t.k, t.c


def forward(edge_vec, l_max: int):
    vec = cast(edge_vec, _dtype(edge_vec))
    Y = np.empty((vec.shape[0], (l_max + 1) ** 2), dtype=vec.dtype)
    _forward(vec, *_table(l_max), Y)
    return Y, (vec, int(l_max))


def backward(d_Y, cache):
    """Returns ``(d_edge_vec,)``."""
    vec, l_max = cache
    dt = np.result_type(vec, d_Y)
    d_vec = np.empty(vec.shape, dtype=dt)
    _backward(cast(d_Y, dt), cast(vec, dt), *_table(l_max), d_vec)
    return (d_vec,)
