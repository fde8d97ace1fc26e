r"""Gate nonlinearity — numba.cuda kernels (same signatures as ``reference.py``).

What differs from the reference: forward is one thread per (node, output column) reading ``z``
through the plan's column tables (no gathers, no ``concatenate``); backward is one thread per (node,
input column of z) using the inverse table ``role`` (column → scalar / gate / gated role). All tables are
the plan's ``GateTables`` (``kernels/plan.py``), uploaded once per plan. A gate column sums
:math:`v_c\bar o_c` over its gated columns through a CSR of ``gated_copy`` (fixed order: deterministic,
no atomics, unlike the reference's ``np.add.at``). The cache keeps ``z``; activations are recomputed.
"""

from __future__ import annotations

from numba import cuda

from nequip_np.kernels import _cuda_util as cu
from nequip_np.kernels.scalar_math import act, act_grad


def _k_forward(z, s_cols, s_par, g_cols, g_par, v_cols, v_copy, out):
    t = cuda.grid(1)
    nc = out.shape[1]
    ns = s_cols.shape[0]
    if t < out.shape[0] * nc:
        n = t // nc
        c = t - n * nc
        if c < ns:
            out[n, c] = act(z[n, s_cols[c]], s_par[c])
        else:
            k = c - ns
            out[n, c] = act(z[n, g_cols[v_copy[k]]], g_par) * z[n, v_cols[k]]


def _k_backward(d_out, z, s_cols, s_par, g_cols, g_par, v_cols, v_copy, role, ptr, perm, d_z):
    t = cuda.grid(1)
    nc = d_z.shape[1]
    ns = s_cols.shape[0]
    if t < d_z.shape[0] * nc:
        n = t // nc
        c = t - n * nc
        kind = role[c, 0]
        k = role[c, 1]
        if kind == 0:  # ROLE_SCALAR
            d_z[n, c] = d_out[n, k] * act_grad(z[n, c], s_par[k])
        elif kind == 1:  # ROLE_GATE k: Σ over its gated columns
            acc = ZERO  # noqa: F821 - bound per dtype by _cuda_util.compile_kernel
            for q in range(ptr[k], ptr[k + 1]):
                j = perm[q]
                acc += z[n, v_cols[j]] * d_out[n, ns + j]
            d_z[n, c] = acc * act_grad(z[n, c], g_par)
        elif kind == 2:  # ROLE_GATED
            d_z[n, c] = d_out[n, ns + k] * act(z[n, g_cols[v_copy[k]]], g_par)
        else:
            d_z[n, c] = 0


def forward(z, plan):
    cu.require_cuda()
    dt = cu.common_dtype(z)
    zd = cu.to_device(z, dt)
    t = cu.device_record(plan.tables)
    out = cu.device_empty((zd.shape[0], plan.irreps_out.dim), dt)
    cu.launch(
        _k_forward,
        dt,
        out.size,
        zd,
        t.scalar_cols,
        t.scalar_parity,
        t.gate_cols,
        int(plan.gate_parity),
        t.gated_cols,
        t.gated_copy,
        out,
    )
    return cu.finish(out, z), (zd, plan, z)


def backward(d_out, cache):
    """Returns ``(d_z,)``."""
    zd, plan, like = cache
    dt = cu.common_dtype(zd, d_out)
    zd, do = cu.to_device(zd, dt), cu.to_device(d_out, dt)
    t = cu.device_record(plan.tables)
    d_z = cu.device_empty(zd.shape, dt)
    cu.launch(
        _k_backward,
        dt,
        d_z.size,
        do,
        zd,
        t.scalar_cols,
        t.scalar_parity,
        t.gate_cols,
        int(plan.gate_parity),
        t.gated_cols,
        t.gated_copy,
        t.role,
        t.gate_ptr,
        t.gate_perm,
        d_z,
    )
    return (cu.finish(d_z, like, d_out),)
