r"""Edge length → Bessel × envelope — numba.cuda kernels (same signatures as ``reference.py``).

What differs from the reference: the forward pass is one thread per (edge, basis function) computing
:math:`r`, :math:`x`, :math:`B_n(x)`, :math:`u(x)` in registers; nothing but ``emb`` is stored (the
cache keeps the device inputs, the backward pass recomputes). Backward: one thread per edge sums over
n for :math:`\bar{\vec r}_e`; :math:`\bar w_n = \sum_e` is one thread per n walking the edges in order
(deterministic; E-long serial sums are fine at n ≤ 16 threads only because this kernel is ~1% of a
step — a block reduction is the upgrade if a profile says otherwise). Geometry runs in float64 /
complex128 whatever the model dtype; the envelope exponent ``p`` must be an integer (repeated
products keep the complex training pass analytic).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from nequip_np.kernels import _cuda_util as cu
from nequip_np.kernels.scalar_math import PI, bessel, bessel_dx, cos, cutoff, cutoff_grad, sqrt


def _k_forward(vec, rrec, w, p, pref, emb):
    t = cuda.grid(1)
    nb = w.shape[0]
    if t < vec.shape[0] * nb:
        e = t // nb
        n = t - e * nb
        r = sqrt(vec[e, 0] * vec[e, 0] + vec[e, 1] * vec[e, 1] + vec[e, 2] * vec[e, 2])
        x = r * rrec[e]
        emb[e, n] = pref * bessel(x, w[n]) * cutoff(x, p)


def _k_backward_vec(d_emb, vec, rrec, w, p, pref, d_vec):
    e = cuda.grid(1)
    if e < vec.shape[0]:
        r = sqrt(vec[e, 0] * vec[e, 0] + vec[e, 1] * vec[e, 1] + vec[e, 2] * vec[e, 2])
        x = r * rrec[e]
        u = cutoff(x, p)
        d_u = ZERO  # noqa: F821 - bound per dtype by _cuda_util.compile_kernel
        d_x = ZERO  # noqa: F821
        for n in range(w.shape[0]):
            g = pref * d_emb[e, n]
            d_u += g * bessel(x, w[n])
            d_x += g * u * bessel_dx(x, w[n])
        d_x += d_u * cutoff_grad(x, p)
        s = d_x * rrec[e] / r
        for a in range(3):
            d_vec[e, a] = s * vec[e, a]


def _k_backward_w(d_emb, vec, rrec, w, p, pref, d_w):
    n = cuda.grid(1)
    if n < w.shape[0]:
        acc = ZERO  # noqa: F821
        for e in range(vec.shape[0]):
            r = sqrt(vec[e, 0] * vec[e, 0] + vec[e, 1] * vec[e, 1] + vec[e, 2] * vec[e, 2])
            x = r * rrec[e]
            acc += pref * d_emb[e, n] * cutoff(x, p) * cos(PI * w[n] * x)
        d_w[n] = acc


def _int_p(p) -> int:
    if float(p) != int(p):
        raise ValueError(f"backend='cuda' needs an integer polynomial_cutoff_p, got {p}")
    return int(p)


def forward(edge_vec, rmax_recip, bessel_w, p, prefactor):
    """Returns ``(emb, cache)``; ``emb`` is float64 or complex128 (NumPy, or device when given device)."""
    cu.require_cuda()
    dt = cu.common_dtype(edge_vec, min_float64=True)
    vec, rrec, w = cu.to_device(edge_vec, dt), cu.to_device(rmax_recip, np.float64), cu.to_device(bessel_w, np.float64)
    emb = cu.device_empty((vec.shape[0], w.shape[0]), dt)
    cu.launch(_k_forward, dt, emb.size, vec, rrec, w, _int_p(p), float(prefactor), emb)
    return cu.finish(emb, edge_vec), (vec, rrec, w, _int_p(p), float(prefactor), dt, edge_vec)


def backward(d_emb, cache):
    """Returns ``(d_edge_vec, d_bessel_w)``."""
    vec, rrec, w, p, pref, dt, like = cache
    dt = cu.common_dtype(np.empty(0, dt), d_emb)
    vec = cu.to_device(vec, dt)
    de = cu.to_device(d_emb, dt)
    d_vec = cu.device_empty(vec.shape, dt)
    d_w = cu.device_empty(w.shape, dt)
    cu.launch(_k_backward_vec, dt, vec.shape[0], de, vec, rrec, w, p, pref, d_vec)
    cu.launch(_k_backward_w, dt, w.shape[0], de, vec, rrec, w, p, pref, d_w)
    return cu.finish((d_vec, d_w), like, d_emb)
