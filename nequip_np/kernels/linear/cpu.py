r"""Equivariant linear layer — CPU backend: BLAS per block; one Numba pass for few rows.

What differs from the reference: the reference contracts each block with ``np.einsum("num,uw->nwm")``,
which NumPy runs as an unblocked C loop. Here each input block (n, mul, 2l+1) is transposed once to
rows (n·(2l+1), mul) — the "m-major" layout — and multiplied by the (mul_in, mul_out) weight with one
BLAS ``gemm``; the weight gradient is ``(dy_rows.T @ x_rows).T`` (the cheap operand order for
OpenBLAS when n ≫ mul). Timings of the two layouts are in ``docs/kernels.md``. The reduction over
nodes in ``d_W`` is BLAS's (its order does not depend on the Numba thread count).

For at most ``SMALL_ROWS`` rows of real numbers (one molecule), the forward pass and the forces-only
reverse pass (no weight gradient) are one Numba call over all paths (``_forward_small``,
``_backward_small``): there the dozen NumPy calls per path cost more than the arithmetic.
"""

from __future__ import annotations

import numba
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


# ---------------------------------------------------------------- few rows: one Numba call for all paths
#: rows (atoms) up to which a real-valued linear runs as one Numba call over all paths instead of
#: a dozen NumPy calls per path (aspirin, 21 atoms: ~90 → ~25 µs per call); above it BLAS wins
SMALL_ROWS = 64
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}  # SIMD sums over channels; NaN/inf still propagate


@numba.njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _forward_small(x, weights, rows, table, norms, out):
    """out[n, o0 + w·d + m] += norm Σ_u x[n, i0 + u·d + m] W_{r(n)}[u, w], every path, one pass.

    ``weights`` (R, n_w): R weight vectors, row n uses ``weights[rows[n]]`` — one for the linear layer,
    one per species for the self-connection (``self_connection/cpu.py``)."""
    acc = np.empty(max(1, out.shape[1]), dtype=out.dtype)
    for p in range(table.shape[0]):
        i0, mi, d, o0, mo, off = table[p, 0], table[p, 1], table[p, 2], table[p, 3], table[p, 4], table[p, 5]
        nrm = norms[p]
        for n in range(x.shape[0]):
            xn, on, weight = x[n], out[n], weights[rows[n]]
            for m in range(d):
                a = acc[:mo]
                for w in range(mo):
                    a[w] = 0.0
                for u in range(mi):
                    xv = xn[i0 + u * d + m]
                    wrow = weight[off + u * mo : off + (u + 1) * mo]
                    for w in range(mo):
                        a[w] += xv * wrow[w]
                for w in range(mo):
                    on[o0 + w * d + m] += nrm * a[w]


@numba.njit(cache=True, nogil=True, fastmath=_FASTMATH)
def _backward_small(d_out, weights, rows, table, norms, d_x):
    """d_x[n, i0 + u·d + m] += norm Σ_w d_out[n, o0 + w·d + m] W_{r(n)}[u, w], every path."""
    g = np.empty(max(1, d_out.shape[1]), dtype=d_x.dtype)
    for p in range(table.shape[0]):
        i0, mi, d, o0, mo, off = table[p, 0], table[p, 1], table[p, 2], table[p, 3], table[p, 4], table[p, 5]
        nrm = norms[p]
        for n in range(d_out.shape[0]):
            dn, xn, weight = d_out[n], d_x[n], weights[rows[n]]
            for m in range(d):
                gm = g[:mo]
                for w in range(mo):
                    gm[w] = dn[o0 + w * d + m]
                for u in range(mi):
                    wrow = weight[off + u * mo : off + (u + 1) * mo]
                    s = 0.0
                    for w in range(mo):
                        s += gm[w] * wrow[w]
                    xn[i0 + u * d + m] += nrm * s


def _small(*arrays) -> bool:
    return arrays[0].shape[0] <= SMALL_ROWS and all(a.dtype.kind == "f" for a in arrays)


def forward(x, weight, plan):
    n = x.shape[0]
    bin_, bout = plan.bin, plan.bout
    out = np.zeros((n, plan.irreps_out.dim), dtype=np.result_type(x, weight))
    if _small(x, weight):
        table, norms = plan.tables.paths, plan.tables.norm  # (P, 6) rows of the plan
        w = np.ascontiguousarray(weight, out.dtype).reshape(1, -1)
        _forward_small(np.ascontiguousarray(x, out.dtype), w, np.zeros(n, np.int64), table, norms, out)
        return out, (x, weight, plan)
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
    if not weight_grads and _small(d_out, x, weight):
        table, norms = plan.tables.paths, plan.tables.norm  # (P, 6) rows of the plan
        w = np.ascontiguousarray(weight, dtype).reshape(1, -1)
        _backward_small(np.ascontiguousarray(d_out, dtype), w, np.zeros(x.shape[0], np.int64), table, norms, d_x)
        return d_x, None
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
