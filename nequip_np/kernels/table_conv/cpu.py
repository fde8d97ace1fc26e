r"""Tabulated radial function fused with the tensor-product convolution — Numba CPU kernel.

What differs from the reference (which runs ``radial_table`` then ``tp_conv`` and materialises the
(E, n_w) weights ``w`` and their gradient ``d_w``):

* **No per-edge weight array.** Each edge's :math:`w_e = S(x_e)` is evaluated from the table into an
  n_w-long buffer owned by the loop (the Hermite weights in registers, six contiguous table rows read
  from a table that stays in cache) right where the tensor product consumes it; the reverse pass
  evaluates it again and contracts its :math:`\bar w_e` with :math:`S'(x_e)` at once, so
  :math:`\bar x_e` — one number per edge — is all that leaves the loop. Memory traffic per layer
  falls by the E × n_w array written, read back by the reverse pass, and its gradient written and
  read (``docs/kernels.md``, "Tables fused into the convolution"); edges at or beyond their cutoff
  (w = 0) are skipped outright.
* **Loops** are ``tp_conv/cpu.py``'s, with its per-edge math (inlined, same functions): serial over
  edges in edge order for small graphs or one thread; otherwise ``prange`` over receivers (CSR of
  ``dst``) for the forward, and the split one-sweep reverse pass (fixed receiver ranges with their own
  :math:`\bar y` buffers) — one table evaluation of :math:`w_e` per edge and pass, 6·n_w multiply-adds
  from cache. On very large graphs, where those buffers would be too big, the two-pass reverse
  (receivers, then senders over the CSR of ``src``) evaluates :math:`w_e` in both passes.
* **Precision** as in ``radial_table/cpu.py``: :math:`\bar x_e` is accumulated in float64 whatever
  the model dtype; results are bitwise the same for any thread count. Real arithmetic only.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from nequip_np.kernels._numba_util import INLINE, as_index, cast, common_dtype, csr
from nequip_np.kernels.radial_table.cpu import _length, basis, basis_dt, locate
from nequip_np.kernels.tp_conv.cpu import (
    _KERNEL,
    _SERIAL,
    SPLIT,
    Cache,
    _edge_grads,
    _edge_message_acc,
    _edge_reverse_acc,
    _input_grad_acc,
    _serial,
    _split,
    _yc,
    split_bounds,
)


# ---------------------------------------------------------------- per-edge table math (inlined)
@numba.njit(**INLINE)
def _w_of(vec, e, rr, table, we):
    """we[c] = S_c(x_e) (the ``radial_table`` formula); False, ``we`` untouched, when x_e ≥ 1 (w_e = 0)."""
    n = table.shape[0]
    a, t, inside = locate(_length(vec, e), rr[e], n)
    if not inside:
        return False
    h0, h1, h2, h3, h4, h5 = basis(t)
    lo, hi = table[a], table[a + 1]
    for c in range(we.shape[0]):
        we[c] = h0 * lo[0, c] + h1 * lo[1, c] + h2 * lo[2, c] + h3 * hi[2, c] + h4 * hi[1, c] + h5 * hi[0, c]
    return True


@numba.njit(**INLINE)
def _dvec_of(vec, e, rr, table, dwe, dvec):
    """dvec[e] = (Σ_c dwe[c] S'_c(x_e)) r_max⁻¹ r_e / |r_e|, the sum in float64 (edge inside its cutoff)."""
    n = table.shape[0]
    r = _length(vec, e)
    a, t, _ = locate(r, rr[e], n)
    g0, g1, g2, g3, g4, g5 = basis_dt(t)
    lo, hi = table[a], table[a + 1]
    acc = 0.0
    for c in range(dwe.shape[0]):
        acc += dwe[c] * (g0 * lo[0, c] + g1 * lo[1, c] + g2 * lo[2, c] + g3 * hi[2, c] + g4 * hi[1, c] + g5 * hi[0, c])
    g = acc * (n - 1) * rr[e] / r
    for k in range(3):
        dvec[e, k] = g * vec[e, k]


# ---------------------------------------------------------------- parallel drivers (CSR)
@numba.njit(**_KERNEL)
def _forward(y, Y, vec, rr, table, src, ptr, perm, paths, cg_idx, cg_val, max_yc, max_xu, M):
    for i in prange(M.shape[0]):
        yc = np.empty(max_yc, dtype=M.dtype)
        wy = np.empty(max_xu, dtype=M.dtype)
        we = np.empty(table.shape[2], dtype=table.dtype)
        Mi = M[i]
        for k in range(ptr[i], ptr[i + 1]):
            e = perm[k]
            if not _w_of(vec, e, rr, table, we):
                continue
            _edge_message_acc(y[src[e]], Y[e], we, Mi, paths, cg_idx, cg_val, yc, wy)


@numba.njit(**_KERNEL)
def _backward_edges(y, Y, vec, rr, table, dM, src, ptr, perm, paths, cg_idx, cg_val, max_yc, max_xu, dY, dvec):
    for i in prange(dM.shape[0]):
        yc = np.empty(max_yc, dtype=dY.dtype)
        dyc = np.empty(max_yc, dtype=dY.dtype)
        q = np.empty(max_xu, dtype=dY.dtype)
        we = np.empty(table.shape[2], dtype=table.dtype)
        dwe = np.empty(table.shape[2], dtype=dY.dtype)
        dMi = dM[i]
        for k in range(ptr[i], ptr[i + 1]):
            e = perm[k]
            if not _w_of(vec, e, rr, table, we):
                dvec[e, 0] = dvec[e, 1] = dvec[e, 2] = 0.0
                continue
            yj, Ye = y[src[e]], Y[e]
            for p in range(paths.shape[0]):
                pt = paths[p]
                _yc(Ye, pt, cg_idx, cg_val, yc)
                _edge_grads(yj, we, dMi, pt, cg_idx, cg_val, yc, q, dyc, dwe, dY[e], True)
            _dvec_of(vec, e, rr, table, dwe, dvec)


@numba.njit(**_KERNEL)
def _backward_senders(Y, vec, rr, table, dM, dst, ptr, perm, paths, cg_idx, cg_val, max_yc, max_xu, dy):
    for j in prange(dy.shape[0]):
        yc = np.empty(max_yc, dtype=dy.dtype)
        q = np.empty(max_xu, dtype=dy.dtype)
        we = np.empty(table.shape[2], dtype=table.dtype)
        dyj = dy[j]
        for k in range(ptr[j], ptr[j + 1]):
            e = perm[k]
            if not _w_of(vec, e, rr, table, we):
                continue
            dMi, Ye = dM[dst[e]], Y[e]
            for p in range(paths.shape[0]):
                pt = paths[p]
                _yc(Ye, pt, cg_idx, cg_val, yc)
                _input_grad_acc(we, dMi, pt, yc, q, dyj)


@numba.njit(**_KERNEL)
def _backward_split(
    y, Y, vec, rr, table, dM, src, ptr, perm, bounds, paths, cg_idx, cg_val, max_yc, max_xu, dY, dy_parts, dvec
):
    """tp_conv/cpu.py's split one-sweep reverse pass: w_e evaluated once per edge."""
    for k in prange(bounds.shape[0] - 1):
        yc = np.empty(max_yc, dtype=dY.dtype)
        dyc = np.empty(max_yc, dtype=dY.dtype)
        q = np.empty(max_xu, dtype=dY.dtype)
        we = np.empty(table.shape[2], dtype=table.dtype)
        dwe = np.empty(table.shape[2], dtype=dY.dtype)
        dyk = dy_parts[k]
        for i in range(bounds[k], bounds[k + 1]):
            dMi = dM[i]
            for kk in range(ptr[i], ptr[i + 1]):
                e = perm[kk]
                if not _w_of(vec, e, rr, table, we):
                    dvec[e, 0] = dvec[e, 1] = dvec[e, 2] = 0.0
                    continue
                j = src[e]
                _edge_reverse_acc(y[j], Y[e], we, dMi, dyk[j], paths, cg_idx, cg_val, yc, q, dyc, dwe, dY[e], True)
                _dvec_of(vec, e, rr, table, dwe, dvec)


# ---------------------------------------------------------------- serial drivers (small graphs, one thread)
@numba.njit(**_SERIAL)
def _forward_serial(y, Y, vec, rr, table, src, dst, paths, cg_idx, cg_val, max_yc, max_xu, M):
    yc = np.empty(max_yc, dtype=M.dtype)
    wy = np.empty(max_xu, dtype=M.dtype)
    we = np.empty(table.shape[2], dtype=table.dtype)
    for e in range(src.shape[0]):
        if not _w_of(vec, e, rr, table, we):
            continue
        _edge_message_acc(y[src[e]], Y[e], we, M[dst[e]], paths, cg_idx, cg_val, yc, wy)


@numba.njit(**_SERIAL)
def _backward_serial(y, Y, vec, rr, table, dM, src, dst, paths, cg_idx, cg_val, max_yc, max_xu, dY, dy, dvec):
    yc = np.empty(max_yc, dtype=dY.dtype)
    dyc = np.empty(max_yc, dtype=dY.dtype)
    q = np.empty(max_xu, dtype=dY.dtype)
    we = np.empty(table.shape[2], dtype=table.dtype)
    dwe = np.empty(table.shape[2], dtype=dY.dtype)
    for e in range(src.shape[0]):
        if not _w_of(vec, e, rr, table, we):
            dvec[e, 0] = dvec[e, 1] = dvec[e, 2] = 0.0
            continue
        j = src[e]
        _edge_reverse_acc(y[j], Y[e], we, dM[dst[e]], dy[j], paths, cg_idx, cg_val, yc, q, dyc, dwe, dY[e], True)
        _dvec_of(vec, e, rr, table, dwe, dvec)


# ---------------------------------------------------------------- reference signatures
def _check_real(edge_vec):
    if np.iscomplexobj(edge_vec):
        raise TypeError("radial tables are for inference (real edge vectors); the training pass uses the radial MLP")


def forward(y, Y, edge_vec, rmax_recip, table, src, dst, n_nodes, plan):
    """Returns ``(M (N, dim MID), cache)``; runs in the common dtype of ``y``, ``Y`` and the table."""
    _check_real(edge_vec)
    table = np.ascontiguousarray(table)
    dtype = common_dtype(y, Y, table)
    t = plan.tables
    y_t = cast(np.asarray(y)[:, t.in_cols], dtype)  # u-fastest copy of y (see tp_conv/cpu.py)
    Y = cast(Y, dtype)
    vec, rr = cast(edge_vec, np.float64), cast(rmax_recip, np.float64)
    src, dst = as_index(src), as_index(dst)
    M_t = np.zeros((n_nodes, plan.irreps_mid.dim), dtype=dtype)
    args = (t.paths, t.cg_idx, t.cg_val, t.max_yc, t.max_xu, M_t)
    if _serial(src.shape[0]):
        _forward_serial(y_t, Y, vec, rr, table, src, dst, *args)
    else:
        ptr, perm = csr(dst, n_nodes)
        _forward(y_t, Y, vec, rr, table, src, ptr, perm, *args)
    # the tp_conv cache with the table in place of w; the edge vectors and cutoffs ride along
    return np.ascontiguousarray(M_t[:, t.mid_inv]), (Cache(y_t, Y, table, src, dst, n_nodes, plan), vec, rr)


def backward(d_M, cache):
    """Returns ``(d_y, d_Y, d_edge_vec)``; ``d_edge_vec`` is (E, 3) float64."""
    (y_t, Y, table, src, dst, n_nodes, plan), vec, rr = cache
    dtype = common_dtype(y_t, d_M)
    t = plan.tables
    tabs = (t.paths, t.cg_idx, t.cg_val, t.max_yc, t.max_xu)
    y_t, Y = cast(y_t, dtype), cast(Y, dtype)
    dM_t = cast(np.asarray(d_M)[:, t.mid_cols], dtype)
    d_Y = np.zeros(Y.shape, dtype=dtype)
    d_y_t = np.zeros(y_t.shape, dtype=dtype)
    d_vec = np.empty(vec.shape, dtype=np.float64)
    if _serial(src.shape[0]):
        _backward_serial(y_t, Y, vec, rr, table, dM_t, src, dst, *tabs, d_Y, d_y_t, d_vec)
    elif _split(*y_t.shape, dtype):
        ptr, perm = csr(dst, n_nodes)
        parts = np.zeros((SPLIT,) + y_t.shape, dtype=dtype)
        _backward_split(y_t, Y, vec, rr, table, dM_t, src, ptr, perm, split_bounds(ptr), *tabs, d_Y, parts, d_vec)
        np.sum(parts, axis=0, out=d_y_t)  # range order
    else:
        ptr, perm = csr(dst, n_nodes)
        _backward_edges(y_t, Y, vec, rr, table, dM_t, src, ptr, perm, *tabs, d_Y, d_vec)
        ptr_s, perm_s = csr(src, y_t.shape[0])
        _backward_senders(Y, vec, rr, table, dM_t, dst, ptr_s, perm_s, *tabs, d_y_t)
    return np.ascontiguousarray(d_y_t[:, t.in_inv]), d_Y, d_vec
