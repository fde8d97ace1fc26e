r"""Edge spherical harmonics — numba.cuda kernels (same signatures as ``reference.py``).

What differs from the reference: the polynomials are evaluated from the generated exact coefficient
table (``so3._generated_sh.EXACT_COEFFICIENTS``, every l ≤ 10, so one kernel serves any l_max):
component (l, m) = :math:`F_m(X, Y)\sum_t c_t Z^{j_t} r_2^{k_t}` with :math:`(X, Y, Z) = (u_z, u_x,
u_y)` (``scalar_math.sh_value``). Forward: one thread per (edge, component), no shared state.
Backward: one thread per edge recomputes :math:`\nabla_u P_k` component by component and contracts it
with :math:`\bar Y` on the fly — the reference's (E, K, 3) gradient array is never stored. Geometry
runs in float64 / complex128.
"""

from __future__ import annotations

from numba import cuda

from nequip_np.kernels import _cuda_util as cu
from nequip_np.kernels.plan import sh_table
from nequip_np.kernels.scalar_math import sh_value, sh_vjp, sqrt


def _sh_device(l_max: int):
    """Device copies of the plan's :class:`~nequip_np.kernels.plan.SHTable` (uploaded once per l_max)."""
    t = cu.device_record(sh_table(l_max))
    return t.m, t.ptr, t.j, t.k, t.c


def _k_forward(vec, cm, ptr, tj, tk, tc, Y):
    t = cuda.grid(1)
    nk = cm.shape[0]
    if t < vec.shape[0] * nk:
        e = t // nk
        k = t - e * nk
        r = sqrt(vec[e, 0] * vec[e, 0] + vec[e, 1] * vec[e, 1] + vec[e, 2] * vec[e, 2])
        ux = vec[e, 0] / r
        uy = vec[e, 1] / r
        uz = vec[e, 2] / r
        Y[e, k] = sh_value(uz, ux, uy, ux * ux + uy * uy + uz * uz, cm[k], ptr[k], ptr[k + 1], tj, tk, tc)


def _k_backward(dY, vec, cm, ptr, tj, tk, tc, d_vec):
    e = cuda.grid(1)
    if e < vec.shape[0]:
        r = sqrt(vec[e, 0] * vec[e, 0] + vec[e, 1] * vec[e, 1] + vec[e, 2] * vec[e, 2])
        ux = vec[e, 0] / r
        uy = vec[e, 1] / r
        uz = vec[e, 2] / r
        r2 = ux * ux + uy * uy + uz * uz
        gX = ZERO  # noqa: F821 - bound per dtype by _cuda_util.compile_kernel
        gY = ZERO  # noqa: F821
        gZ = ZERO  # noqa: F821
        for k in range(cm.shape[0]):
            aX, aY, aZ = sh_vjp(uz, ux, uy, r2, cm[k], ptr[k], ptr[k + 1], tj, tk, tc)
            gX += dY[e, k] * aX
            gY += dY[e, k] * aY
            gZ += dY[e, k] * aZ
        # (X, Y, Z) = (u_z, u_x, u_y): g_x = gY, g_y = gZ, g_z = gX
        ug = ux * gY + uy * gZ + uz * gX
        d_vec[e, 0] = (gY - ux * ug) / r
        d_vec[e, 1] = (gZ - uy * ug) / r
        d_vec[e, 2] = (gX - uz * ug) / r


def forward(edge_vec, l_max: int):
    cu.require_cuda()
    dt = cu.common_dtype(edge_vec, min_float64=True)
    vec = cu.to_device(edge_vec, dt)
    tabs = _sh_device(int(l_max))
    Y = cu.device_empty((vec.shape[0], (int(l_max) + 1) ** 2), dt)
    cu.launch(_k_forward, dt, Y.size, vec, *tabs, Y)
    return cu.finish(Y, edge_vec), (vec, int(l_max), edge_vec)


def backward(d_Y, cache):
    """Returns ``(d_edge_vec,)``."""
    vec, l_max, like = cache
    dt = cu.common_dtype(vec, d_Y)
    vec, dY = cu.to_device(vec, dt), cu.to_device(d_Y, dt)
    d_vec = cu.device_empty(vec.shape, dt)
    cu.launch(_k_backward, dt, vec.shape[0], dY, vec, *_sh_device(l_max), d_vec)
    return (cu.finish(d_vec, like, d_Y),)
