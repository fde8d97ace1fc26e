r"""Bias-free scalar MLP (radial network, readout) — CPU backend: the reference's algebra, run in parallel.

What differs from ``reference.py``:

* **Matrix products by fixed row blocks on Numba's thread count.** The model runs BLAS single-threaded
  while the Numba kernels use the cores (``_numba_util.blas_single_threaded``: OpenBLAS's own pool
  and Numba's workers would compete for them). Products with many rows (the radial MLP has one row per
  edge) are therefore cut into blocks of ``ROWS`` rows, and the blocks run on a pool of
  ``numba.get_num_threads()`` Python threads (NumPy releases the GIL inside BLAS). The weight gradient
  :math:`\bar W = \alpha\,h^\top\bar z` is summed over the same blocks in block order. The block
  boundaries do not depend on the thread count, so results are bitwise identical for any number of
  threads.
* **Activation fused and parallel.** SiLU and its derivative are Numba ``prange`` loops (real dtypes,
  and the complex-step "dual" form of the training pass, :math:`f(p+ih\dot p) = f(p) + ih\dot p f'(p)`,
  decided by the same test as ``kernels/common.py``); the backward pass forms
  :math:`\bar z = \bar h\,\mathrm{silu}'(z)` in one sweep. Both forms take
  :math:`e^{-\mathrm{Re}\,z}` from NumPy's vectorised ``exp`` (2.4–2.8× faster than Numba's scalar one).
  Other nonlinearities use the reference's NumPy functions.
* The weight gradient's operand order ``(dz.T @ h).T`` (OpenBLAS runs the transposed-left ``h.T @ dz``
  with E ≫ d about 3× slower).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import prange

from nequip_np.kernels._numba_util import PARALLEL
from nequip_np.kernels.mlp.reference import ACTIVATIONS

#: rows per block of a row-split matrix product (fixed: results must not depend on the thread count)
ROWS = 1024
_POOL: list = []  # [ThreadPoolExecutor], created on first use


# ----------------------------------------------------------------------------- activation kernels
@numba.njit(**PARALLEL)
def _abs_max_parts(z):
    """(max |Re z|, max |Im z|) of a complex 1-D array, by a fixed-block parallel reduction."""
    n = z.size
    nb = (n + 4095) // 4096
    re_max = np.zeros(max(nb, 1))
    im_max = np.zeros(max(nb, 1))
    for b in prange(nb):
        r, m = 0.0, 0.0
        for i in range(b * 4096, min(n, (b + 1) * 4096)):
            a, c = abs(z[i].real), abs(z[i].imag)
            if a > r:  # plain comparisons: about twice as fast as max() here (NaN-aware builtin)
                r = a
            if c > m:
                m = c
        re_max[b] = r
        im_max[b] = m
    return re_max.max(), im_max.max()


# The real forms take e = exp(-z) from NumPy too (same reason as the dual forms below): on aspirin's
# 316 edges × 128 hidden units the scalar-exp loops were 3.5 ms of a 13 ms energy+forces call.
@numba.njit(**PARALLEL)
def _silu_real_e(z, e):
    out = np.empty_like(z)
    for i in prange(z.size):
        out[i] = z[i] / (1.0 + e[i])  # scalar_math.silu with exp(-z) = e
    return out


# The complex-step ("dual") forms below take e = exp(-Re z) computed by NumPy: its exp is vectorised
# (~2 ns per element here) while Numba's scalar exp costs ~10 ns, which made the exp 85 % of these
# loops (docs/benchmarks.md, training). The formulas are scalar_math's, with exp(-x) replaced by e.
@numba.njit(**PARALLEL)
def _silu_dual_e(z, e):
    out = np.empty_like(z)
    for i in prange(z.size):
        re, im = z[i].real, z[i].imag
        s = 1.0 / (1.0 + e[i])
        out[i] = complex(re / (1.0 + e[i]), im * (s * (1.0 + re * (1.0 - s))))
    return out


@numba.njit(**PARALLEL)
def _dh_silu_grad_dual_e(dh, z, e):
    out = np.empty_like(dh)
    for i in prange(z.size):
        re, im = z[i].real, z[i].imag
        s = 1.0 / (1.0 + e[i])
        g = s * (1.0 + re * (1.0 - s))
        g2 = s * (1.0 - s) * (2.0 + re * (1.0 - 2.0 * s))
        out[i] = dh[i] * complex(g, im * g2)
    return out


def _exp_neg_real(z):
    """exp(-Re z), contiguous (NumPy's vectorised exp)."""
    e = np.negative(z.real)
    np.exp(e, out=e)
    return e


@numba.njit(**PARALLEL)
def _dh_silu_grad_real_e(dh, z, e):
    out = np.empty_like(dh)
    for i in prange(z.size):
        s = 1.0 / (1.0 + e[i])  # scalar_math.silu_grad with exp(-z) = e
        out[i] = dh[i] * (s * (1.0 + z[i] * (1.0 - s)))
    return out


def _exp_neg(z):
    """exp(-z) of a real array (NumPy's vectorised exp; overflow to inf is the right limit here)."""
    e = np.negative(z)
    with np.errstate(over="ignore"):
        np.exp(e, out=e)
    return e


def _is_dual(z) -> bool:
    """The test of ``kernels/common._dual_parts``: complex with a complex-step-sized imaginary part."""
    if not np.iscomplexobj(z) or z.size == 0:
        return np.iscomplexobj(z)
    re_max, im_max = _abs_max_parts(z.ravel())
    return im_max <= 1e-8 * (1.0 + re_max)


def _activation(z, nonlinearity):
    if nonlinearity != "silu":
        return ACTIVATIONS[nonlinearity][0](z)
    flat = np.ascontiguousarray(z).ravel()
    if not np.iscomplexobj(z):
        return _silu_real_e(flat, _exp_neg(flat)).reshape(z.shape)
    if _is_dual(z):
        return _silu_dual_e(flat, _exp_neg_real(flat)).reshape(z.shape)
    return ACTIVATIONS["silu"][0](z)


def _times_activation_grad(dh, z, nonlinearity):
    """``dh * act'(z)``."""
    if nonlinearity == "silu" and dh.dtype == z.dtype:
        flat_dh, flat_z = np.ascontiguousarray(dh).ravel(), np.ascontiguousarray(z).ravel()
        if not np.iscomplexobj(z):
            return _dh_silu_grad_real_e(flat_dh, flat_z, _exp_neg(flat_z)).reshape(z.shape)
        if _is_dual(z):
            return _dh_silu_grad_dual_e(flat_dh, flat_z, _exp_neg_real(flat_z)).reshape(z.shape)
    return dh * ACTIVATIONS[nonlinearity][1](z)


# ----------------------------------------------------------------------------- row-block products
def _pool():
    if not _POOL:
        _POOL.append(
            ThreadPoolExecutor(max_workers=max(numba.config.NUMBA_NUM_THREADS, 1), thread_name_prefix="nequip-np-blas")
        )
    return _POOL[0]


def _blocks(n):
    return [(s, min(n, s + ROWS)) for s in range(0, n, ROWS)]


def _run(tasks):
    """Run the callables, on the pool when Numba may use several threads (results in order)."""
    if numba.get_num_threads() > 1 and len(tasks) > 1:
        return list(_pool().map(lambda f: f(), tasks))
    return [f() for f in tasks]


def matmul_rows(a, b):
    """``a @ b`` for 2-D ``a``, by blocks of ``ROWS`` rows of ``a`` (bitwise the same for any thread count)."""
    a = np.ascontiguousarray(a)
    if a.shape[0] <= ROWS:
        return a @ b
    out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))

    def block(s, e):
        return lambda: np.matmul(a[s:e], b, out=out[s:e])

    _run([block(s, e) for s, e in _blocks(a.shape[0])])
    return out


def weight_grad(h, dz):
    """:math:`h^\\top \\bar z` as ``(dz.T @ h).T``, summed over the row blocks in block order."""
    if h.shape[0] <= ROWS:
        return (dz.T @ h).T

    def block(s, e):
        return lambda: dz[s:e].T @ h[s:e]

    parts = _run([block(s, e) for s, e in _blocks(h.shape[0])])
    total = parts[0].copy()
    for p in parts[1:]:
        total += p
    return total.T


# ----------------------------------------------------------------------------- the operation
def forward(x, weights, alphas, nonlinearity="silu"):
    hs, zs, h = [], [], x
    for k, (w, a) in enumerate(zip(weights, alphas)):
        hs.append(h)
        z = matmul_rows(h, w * a)
        zs.append(z)
        h = _activation(z, nonlinearity) if (k < len(weights) - 1 and nonlinearity) else z
    return h, (hs, zs, weights, alphas, nonlinearity)


def backward(d_out, cache, weight_grads: bool = True):
    """Returns ``(d_x, [d_W0, d_W1, …])``; the d_W are None when ``weight_grads=False``."""
    hs, zs, weights, alphas, nonlinearity = cache
    d_ws = [None] * len(weights)
    dz = d_out
    for k in range(len(weights) - 1, -1, -1):
        if weight_grads:
            d_ws[k] = alphas[k] * weight_grad(hs[k], dz)
        dh = matmul_rows(dz, weights[k].T * alphas[k])
        if k > 0:
            dz = _times_activation_grad(dh, zs[k - 1], nonlinearity) if nonlinearity else dh
    return dh, d_ws
