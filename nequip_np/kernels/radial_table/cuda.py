r"""Tabulated radial functions — numba.cuda kernels (same signatures as ``reference.py``).

What differs from the reference: the forward pass is one thread per (edge, channel): each locates its
edge's interval and evaluates the six Hermite weights in registers (recomputed by the n_w threads of
an edge: a few dozen flops against a global-memory read of six table entries); the backward pass is
one thread per edge reducing :math:`\bar x_e = \sum_c \bar w_{ec} S'_c(x_e)` over its channels in
float64. No atomics: the result does not depend on scheduling. Real arithmetic only (inference).
Untimed on a GPU so far; checked against the reference under Numba's CUDA simulator.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from nequip_np.kernels import _cuda_util as cu
from nequip_np.kernels.scalar_math import sqrt


def _k_forward(vec, rrec, table, w):
    t = cuda.grid(1)
    n, nw = table.shape[0], table.shape[2]
    if t < vec.shape[0] * nw:
        e = t // nw
        c = t - e * nw
        x = sqrt(vec[e, 0] * vec[e, 0] + vec[e, 1] * vec[e, 1] + vec[e, 2] * vec[e, 2]) * rrec[e]
        if x >= 1.0:
            w[e, c] = 0.0
            return
        s = x * (n - 1)
        a = min(int(s), n - 2)
        u = s - a
        u2 = u * u
        u3 = u2 * u
        u4 = u3 * u
        u5 = u4 * u
        w[e, c] = (
            (1.0 - 10.0 * u3 + 15.0 * u4 - 6.0 * u5) * table[a, 0, c]
            + (u - 6.0 * u3 + 8.0 * u4 - 3.0 * u5) * table[a, 1, c]
            + 0.5 * (u2 - 3.0 * u3 + 3.0 * u4 - u5) * table[a, 2, c]
            + 0.5 * (u3 - 2.0 * u4 + u5) * table[a + 1, 2, c]
            + (-4.0 * u3 + 7.0 * u4 - 3.0 * u5) * table[a + 1, 1, c]
            + (10.0 * u3 - 15.0 * u4 + 6.0 * u5) * table[a + 1, 0, c]
        )


def _k_backward(d_w, vec, rrec, table, d_vec):
    e = cuda.grid(1)
    n, nw = table.shape[0], table.shape[2]
    if e < vec.shape[0]:
        r = sqrt(vec[e, 0] * vec[e, 0] + vec[e, 1] * vec[e, 1] + vec[e, 2] * vec[e, 2])
        x = r * rrec[e]
        acc = ZERO  # noqa: F821 - the float64 accumulator, bound by compile_kernel
        if x < 1.0:
            s = x * (n - 1)
            a = min(int(s), n - 2)
            u = s - a
            u2 = u * u
            u3 = u2 * u
            u4 = u3 * u
            g0 = -30.0 * u2 + 60.0 * u3 - 30.0 * u4
            g1 = 1.0 - 18.0 * u2 + 32.0 * u3 - 15.0 * u4
            g2 = 0.5 * (2.0 * u - 9.0 * u2 + 12.0 * u3 - 5.0 * u4)
            g3 = 0.5 * (3.0 * u2 - 8.0 * u3 + 5.0 * u4)
            g4 = -12.0 * u2 + 28.0 * u3 - 15.0 * u4
            g5 = 30.0 * u2 - 60.0 * u3 + 30.0 * u4
            for c in range(nw):
                acc += d_w[e, c] * (
                    g0 * table[a, 0, c]
                    + g1 * table[a, 1, c]
                    + g2 * table[a, 2, c]
                    + g3 * table[a + 1, 2, c]
                    + g4 * table[a + 1, 1, c]
                    + g5 * table[a + 1, 0, c]
                )
        g = acc * (n - 1) * rrec[e] / r
        for k in range(3):
            d_vec[e, k] = g * vec[e, k]


def forward(edge_vec, rmax_recip, table):
    """Returns ``(w (E, n_w), cache)``; ``w`` has the table's dtype (NumPy, or device when given device)."""
    cu.require_cuda()
    if cu.common_dtype(edge_vec).kind == "c":
        raise TypeError("radial tables are for inference (real edge vectors); the training pass uses the radial MLP")
    dt = np.dtype(table.dtype)
    vec, rrec = cu.to_device(edge_vec, np.float64), cu.to_device(rmax_recip, np.float64)
    tab = cu.resident(np.asarray(table)) if not cu.is_device_array(table) else table
    w = cu.device_empty((vec.shape[0], tab.shape[2]), dt)
    cu.launch(_k_forward, np.float64, w.size, vec, rrec, tab, w)
    return cu.finish(w, edge_vec), (vec, rrec, tab, edge_vec)


def backward(d_w, cache):
    """Returns ``d_edge_vec`` (E, 3) in float64."""
    vec, rrec, tab, like = cache
    dw = cu.to_device(d_w, tab.dtype)
    d_vec = cu.device_empty(vec.shape, np.float64)
    cu.launch(_k_backward, np.float64, vec.shape[0], dw, vec, rrec, tab, d_vec)
    return (cu.finish(d_vec, like, d_w),)
