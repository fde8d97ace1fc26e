r"""Equivariant linear layer — CPU backend: BLAS per block (no Numba kernel; measured, see below).

What differs from the reference: the reference contracts each block with ``np.einsum("num,uw->nwm")``,
which NumPy runs as an unblocked C loop. Here each input block (n, mul, 2l+1) is transposed once to
rows (n·(2l+1), mul) — the "m-major" layout — and multiplied by the (mul_in, mul_out) weight with one
BLAS ``gemm``; the weight gradient is ``(dy_rows.T @ x_rows).T`` (the cheap operand order for
OpenBLAS when n ≫ mul). Timings of the two layouts are in ``docs/kernels.md``; no Numba kernel is
written because all the work is (n·d × 32)·(32 × 32) products, BLAS's home ground. The reduction over
nodes in ``d_W`` is BLAS's (its order does not depend on the Numba thread count).
"""
from __future__ import annotations

import numpy as np


def to_rows(a, start, mul, d):
    """Block columns ``start:start+mul*d`` of (n, dim) → contiguous (n·d, mul) rows (m-major)."""
    n = a.shape[0]
    blk = a[:, start : start + mul * d].reshape(n, mul, d)
    return np.ascontiguousarray(blk.transpose(0, 2, 1)).reshape(n * d, mul)


def add_rows(out, rows, start, mul, d, scale):
    """out[:, block] += scale · rows (n·d, mul) put back in the mul_ir layout."""
    n = out.shape[0]
    out[:, start : start + mul * d] += scale * rows.reshape(n, d, mul).transpose(0, 2, 1).reshape(n, mul * d)


def forward(x, weight, plan):
    n = x.shape[0]
    bin_, bout = plan.bin, plan.bout
    out = np.zeros((n, plan.irreps_out.dim), dtype=np.result_type(x, weight))
    for (i, o, off), norm in zip(plan.paths, plan.norm):
        bi, bo = bin_[i], bout[o]
        w = weight[off : off + bi.mul * bo.mul].reshape(bi.mul, bo.mul)
        add_rows(out, to_rows(x, bi.start, bi.mul, bi.dim) @ w, bo.start, bo.mul, bo.dim, norm)
    return out, (x, weight, plan)


def backward(d_out, cache, weight_grads: bool = True):
    """Returns ``(d_x, d_weight)``; ``d_weight`` is None when ``weight_grads=False`` (forces only)."""
    x, weight, plan = cache
    bin_, bout = plan.bin, plan.bout
    dtype = np.result_type(x, weight, d_out)
    d_x = np.zeros(x.shape, dtype=dtype)
    d_w = np.zeros(weight.shape, dtype=dtype) if weight_grads else None
    for (i, o, off), norm in zip(plan.paths, plan.norm):
        bi, bo = bin_[i], bout[o]
        dyr = to_rows(d_out, bo.start, bo.mul, bo.dim)
        w = weight[off : off + bi.mul * bo.mul].reshape(bi.mul, bo.mul)
        add_rows(d_x, dyr @ w.T, bi.start, bi.mul, bi.dim, norm)
        if weight_grads:
            xr = to_rows(x, bi.start, bi.mul, bi.dim)
            d_w[off : off + bi.mul * bo.mul] += norm * (dyr.T @ xr).T.ravel()
    return d_x, d_w
