r"""Gate nonlinearity — Numba CPU kernel (same signatures as ``reference.py``).

What differs from the reference: one ``prange`` over nodes does the whole row (scalars, gate
activations, gated products) without the reference's column gathers, ``concatenate`` and
``np.add.at``; the cache keeps only ``z`` and the backward pass recomputes the activations (each
gate once per node, then shared by the 2l+1 components it gates). The
gate-gradient sum :math:`\bar g_u = \phi'(g_u)\sum_{c: u(c)=u} v_c\bar o_c` runs per node in column
order (deterministic). Analytic arithmetic only (complex training pass).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from nequip_np.kernels._numba_util import PARALLEL, SCALAR, cast, common_dtype

act, act_grad = SCALAR.act, SCALAR.act_grad  # the formulas of scalar_math, shared with gate/cuda.py


@numba.njit(**PARALLEL)
def _forward(z, s_cols, s_par, g_cols, g_par, v_cols, v_copy, out):
    ns = s_cols.shape[0]
    for n in prange(z.shape[0]):
        phi = np.empty(g_cols.shape[0], dtype=out.dtype)
        for k in range(ns):
            out[n, k] = act(z[n, s_cols[k]], s_par[k])
        for q in range(g_cols.shape[0]):
            phi[q] = act(z[n, g_cols[q]], g_par)
        for k in range(v_cols.shape[0]):
            out[n, ns + k] = phi[v_copy[k]] * z[n, v_cols[k]]


@numba.njit(**PARALLEL)
def _backward(d_out, z, s_cols, s_par, g_cols, g_par, v_cols, v_copy, d_z):
    ns = s_cols.shape[0]
    for n in prange(z.shape[0]):
        d_phi = np.zeros(g_cols.shape[0], dtype=d_z.dtype)
        phi = np.empty(g_cols.shape[0], dtype=d_z.dtype)
        for q in range(g_cols.shape[0]):  # each gate once, not once per gated component
            phi[q] = act(z[n, g_cols[q]], g_par)
        for k in range(ns):
            d_z[n, s_cols[k]] = d_out[n, k] * act_grad(z[n, s_cols[k]], s_par[k])
        for k in range(v_cols.shape[0]):
            q = v_copy[k]
            d_z[n, v_cols[k]] = d_out[n, ns + k] * phi[q]
            d_phi[q] += d_out[n, ns + k] * z[n, v_cols[k]]
        for q in range(g_cols.shape[0]):
            d_z[n, g_cols[q]] = d_phi[q] * act_grad(z[n, g_cols[q]], g_par)


def _plan_arrays(plan):
    t = plan.tables  # GateTables: built once with the plan (kernels/plan.py)
    return t.scalar_cols, t.scalar_parity, t.gate_cols, int(plan.gate_parity), t.gated_cols, t.gated_copy


def forward(z, plan):
    z = cast(z, common_dtype(z))
    arrays = _plan_arrays(plan)
    out = np.empty((z.shape[0], arrays[0].shape[0] + arrays[4].shape[0]), dtype=z.dtype)
    _forward(z, *arrays, out)
    return out, (z, arrays)


def backward(d_out, cache):
    """Returns ``(d_z,)``."""
    z, arrays = cache
    dtype = common_dtype(z, d_out)
    d_z = np.zeros(z.shape, dtype=dtype)
    _backward(cast(d_out, dtype), cast(z, dtype), *arrays, d_z)
    return (d_z,)
