r"""Tensor-product convolution with scatter — Numba CPU kernel (same signatures as ``reference.py``).

What differs from the reference (the math is the reference's docstring):

* **Layout / loop order.** Edges are visited in CSR order by receiver (``_numba_util.csr``, stable
  argsort built inside the op, so unsorted edge lists work). ``prange`` runs over receivers i; each
  edge's message is added straight into the row ``M[i]`` — the (E, dim MID) message array of the
  reference is never materialised, nor are ``x_e = y[src]``, ``YC`` or ``t``.
* **Sparse CG.** Each path's :math:`\tilde C` is stored as its non-zero entries (a, b, c, value);
  per edge and path :math:`(YC)_{ac} = \sum_b Y_b\tilde C_{abc}` costs nnz multiply-adds, then
  :math:`t[u, c] = \sum_a y[u, a](YC)_{ac}` costs mul·d₁·d₃.
* **Backward in two passes, both race-free.** Pass 1 (prange over receivers) recomputes ``YC`` and
  ``t`` per edge and writes the edge-owned ``d_w[e]`` and ``d_Y[e]``. Pass 2 (prange over *senders*,
  CSR of ``src``) recomputes ``YC`` and accumulates :math:`\bar y_j` in edge order — the gather's
  transpose without a scatter and without an (E, dim I) ``d_x`` array.
* **Reductions** are sequential per output row in a fixed edge order, so results are bitwise identical
  for any number of threads. The kernels run in one dtype (float32/64, complex64/128: analytic
  arithmetic only, the training pass runs them in complex arithmetic).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from nequip_np.kernels._numba_util import INLINE, PARALLEL, as_index, cast, common_dtype, csr
from nequip_np.model.plan import blocks

# columns of the per-path table
IN0, D1, SH0, D2, MID0, D3, WOFF, MUL, NZ0, NZ1 = range(10)

_PLANS: dict = {}


def flat_plan(plan):
    """(path table (P, 10) int64, cg index (nnz, 3) int64, cg values (nnz,) float64, max d1*d3)."""
    hit = _PLANS.get(id(plan))
    if hit is not None and hit[0] is plan:
        return hit[1]
    bin_, bmid = blocks(plan.irreps_in), blocks(plan.irreps_mid)
    rows, idx, val = [], [], []
    for p in plan.paths:
        bi, bm = bin_[p.i_in], bmid[p.i_mid]
        a, b, c = np.nonzero(p.cg)
        nz0 = len(val)
        idx.extend(zip(a, b, c))
        val.extend(p.cg[a, b, c])
        rows.append((bi.start, bi.dim, p.l_sh**2, 2 * p.l_sh + 1, bm.start, bm.dim, p.w_offset, bi.mul,
                     nz0, len(val)))
    table = np.array(rows, dtype=np.int64).reshape(-1, 10)
    cg_idx = np.array(idx, dtype=np.int64).reshape(-1, 3)
    out = (table, cg_idx, np.array(val, dtype=np.float64), int(max([r[1] * r[5] for r in rows] or [1])))
    _PLANS[id(plan)] = (plan, out)
    return out


# ---------------------------------------------------------------- per-edge math (inlined)
@numba.njit(**INLINE)
def _yc(Ye, pt, cg_idx, cg_val, yc):
    """yc[a*d3 + c] = Σ_b Y_e[sh0 + b] C̃[a, b, c] over the path's non-zeros."""
    d3 = pt[D3]
    for q in range(pt[D1] * d3):
        yc[q] = 0.0
    for z in range(pt[NZ0], pt[NZ1]):
        yc[cg_idx[z, 0] * d3 + cg_idx[z, 2]] += cg_val[z] * Ye[pt[SH0] + cg_idx[z, 1]]


@numba.njit(**INLINE)
def _message_acc(yj, we, pt, yc, Mi):
    """Mi[mid0 + u*d3 + c] += w_e[woff + u] Σ_a y_j[in0 + u*d1 + a] yc[a*d3 + c]."""
    d1, d3 = pt[D1], pt[D3]
    for u in range(pt[MUL]):
        wu = we[pt[WOFF] + u]
        x0, m0 = pt[IN0] + u * d1, pt[MID0] + u * d3
        for c in range(d3):
            t = yj[x0] * yc[c]
            for a in range(1, d1):
                t += yj[x0 + a] * yc[a * d3 + c]
            Mi[m0 + c] += wu * t


@numba.njit(**INLINE)
def _edge_grads(yj, we, dMi, pt, cg_idx, cg_val, yc, dyc, dwe, dYe):
    """Edge-owned gradients of one path: dwe[woff+u] = Σ_c dm[u,c] t[u,c]; dYe[sh0+b] += Σ C̃ dyc."""
    d1, d3 = pt[D1], pt[D3]
    for q in range(d1 * d3):
        dyc[q] = 0.0
    for u in range(pt[MUL]):
        wu = we[pt[WOFF] + u]
        x0, m0 = pt[IN0] + u * d1, pt[MID0] + u * d3
        s = dMi[m0] * 0.0
        for c in range(d3):
            t = yj[x0] * yc[c]
            for a in range(1, d1):
                t += yj[x0 + a] * yc[a * d3 + c]
            s += dMi[m0 + c] * t
            g = wu * dMi[m0 + c]
            for a in range(d1):
                dyc[a * d3 + c] += g * yj[x0 + a]
        dwe[pt[WOFF] + u] = s
    for z in range(pt[NZ0], pt[NZ1]):
        dYe[pt[SH0] + cg_idx[z, 1]] += cg_val[z] * dyc[cg_idx[z, 0] * d3 + cg_idx[z, 2]]


@numba.njit(**INLINE)
def _input_grad_acc(we, dMi, pt, yc, dyj):
    """dyj[in0 + u*d1 + a] += w_e[woff+u] Σ_c dm[u, c] yc[a*d3 + c]."""
    d1, d3 = pt[D1], pt[D3]
    for u in range(pt[MUL]):
        wu = we[pt[WOFF] + u]
        x0, m0 = pt[IN0] + u * d1, pt[MID0] + u * d3
        for a in range(d1):
            s = dMi[m0] * yc[a * d3]
            for c in range(1, d3):
                s += dMi[m0 + c] * yc[a * d3 + c]
            dyj[x0 + a] += wu * s


# ---------------------------------------------------------------- drivers
@numba.njit(**PARALLEL)
def _forward(y, Y, w, src, ptr, perm, table, cg_idx, cg_val, max_yc, M):
    for i in prange(M.shape[0]):
        yc = np.empty(max_yc, dtype=M.dtype)
        Mi = M[i]
        for k in range(ptr[i], ptr[i + 1]):
            e = perm[k]
            yj, Ye, we = y[src[e]], Y[e], w[e]
            for p in range(table.shape[0]):
                pt = table[p]
                _yc(Ye, pt, cg_idx, cg_val, yc)
                _message_acc(yj, we, pt, yc, Mi)


@numba.njit(**PARALLEL)
def _backward_edges(y, Y, w, dM, src, ptr, perm, table, cg_idx, cg_val, max_yc, dw, dY):
    for i in prange(dM.shape[0]):
        yc = np.empty(max_yc, dtype=dw.dtype)
        dyc = np.empty(max_yc, dtype=dw.dtype)
        dMi = dM[i]
        for k in range(ptr[i], ptr[i + 1]):
            e = perm[k]
            yj, Ye, we = y[src[e]], Y[e], w[e]
            for p in range(table.shape[0]):
                pt = table[p]
                _yc(Ye, pt, cg_idx, cg_val, yc)
                _edge_grads(yj, we, dMi, pt, cg_idx, cg_val, yc, dyc, dw[e], dY[e])


@numba.njit(**PARALLEL)
def _backward_senders(Y, w, dM, dst, ptr, perm, table, cg_idx, cg_val, max_yc, dy):
    for j in prange(dy.shape[0]):
        yc = np.empty(max_yc, dtype=dy.dtype)
        dyj = dy[j]
        for k in range(ptr[j], ptr[j + 1]):
            e = perm[k]
            dMi, Ye, we = dM[dst[e]], Y[e], w[e]
            for p in range(table.shape[0]):
                pt = table[p]
                _yc(Ye, pt, cg_idx, cg_val, yc)
                _input_grad_acc(we, dMi, pt, yc, dyj)


# ---------------------------------------------------------------- reference signatures
def forward(y, Y, w, src, dst, n_nodes, plan):
    dtype = common_dtype(y, Y, w)
    y, Y, w = cast(y, dtype), cast(Y, dtype), cast(w, dtype)
    src, dst = as_index(src), as_index(dst)
    table, cg_idx, cg_val, max_yc = flat_plan(plan)
    ptr, perm = csr(dst, n_nodes)
    M = np.zeros((n_nodes, plan.irreps_mid.dim), dtype=dtype)
    _forward(y, Y, w, src, ptr, perm, table, cg_idx, cg_val, max_yc, M)
    return M, (y, Y, w, src, dst, n_nodes, plan)


def backward(d_M, cache):
    """Returns ``(d_y, d_Y, d_w)``."""
    y, Y, w, src, dst, n_nodes, plan = cache
    dtype = common_dtype(y, d_M)
    y, Y, w, d_M = cast(y, dtype), cast(Y, dtype), cast(w, dtype), cast(d_M, dtype)
    table, cg_idx, cg_val, max_yc = flat_plan(plan)
    d_w = np.zeros(w.shape, dtype=dtype)
    d_Y = np.zeros(Y.shape, dtype=dtype)
    d_y = np.zeros(y.shape, dtype=dtype)
    ptr, perm = csr(dst, n_nodes)
    _backward_edges(y, Y, w, d_M, src, ptr, perm, table, cg_idx, cg_val, max_yc, d_w, d_Y)
    ptr_s, perm_s = csr(src, y.shape[0])
    _backward_senders(Y, w, d_M, dst, ptr_s, perm_s, table, cg_idx, cg_val, max_yc, d_y)
    return d_y, d_Y, d_w
