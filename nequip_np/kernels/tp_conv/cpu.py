r"""Tensor-product convolution with scatter — Numba CPU kernel (same signatures as ``reference.py``).

What differs from the reference (the math is the reference's docstring):

* **Layout / loop order.** Edges are visited in CSR order by receiver (``_numba_util.csr``, stable
  argsort built inside the op, so unsorted edge lists work). ``prange`` runs over receivers i; each
  edge's message is added straight into the row ``M[i]`` — the (E, dim MID) message array of the
  reference is never materialised, nor are ``x_e = y[src]``, ``YC`` or ``t``.
* **Sparse CG.** Each path's :math:`\tilde C` is stored as its non-zero entries (a, b, c, value) —
  the plan's ``ConvTables`` (``kernels/plan.py``), built once with the plan and passed in with it;
  per edge and path :math:`(YC)_{ac} = \sum_b Y_b\tilde C_{abc}` costs nnz multiply-adds, then
  :math:`t[u, c] = \sum_a y[u, a](YC)_{ac}` costs mul·d₁·d₃.
* **Backward, race-free.** One sweep per edge and path forms ``YC`` and ``q`` (dM_i contracted with
  YC) once and writes the edge-owned ``d_w[e]`` and ``d_Y[e]`` and :math:`\bar y_{j(e)}`. With
  several threads the sweep is cut into ``SPLIT`` fixed ranges of receivers, each with its own
  :math:`\bar y` buffer, added in range order afterwards. Where those buffers would exceed
  ``SPLIT_BYTES`` (very large graphs), two passes instead: receivers (prange, CSR of ``dst``) write
  ``d_w[e]``, ``d_Y[e]``; senders (prange, CSR of ``src``) recompute ``YC`` and accumulate
  :math:`\bar y_j` in edge order — the gather's transpose without a scatter or an (E, dim I) array.
* **Reductions** are sequential per output row in a fixed edge order, so results are bitwise identical
  for any number of threads. The kernels run in one dtype (float32/64, complex64/128: analytic
  arithmetic only, the training pass runs them in complex arithmetic).
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
from numba import prange

from nequip_np.kernels._numba_util import INLINE, PARALLEL, as_index, cast, common_dtype, csr
from nequip_np.kernels.plan import D1, D3, IN0, MID0, MUL, NZ0, NZ1, SH0, WOFF  # columns of ConvTables.paths

#: driver options: the shared PARALLEL ones plus re-association (SIMD sums over the channel u) and
#: fused multiply-adds; no finite-math assumptions, so NaN/inf still propagate
_KERNEL = dict(PARALLEL, fastmath={"reassoc", "contract", "nsz", "arcp"})
_SERIAL = dict(cache=True, nogil=True, fastmath=_KERNEL["fastmath"])


# ---------------------------------------------------------------- per-edge math (inlined)
# Feature rows are in the "u-fastest" layout inside each block: column start + m*mul + u (see
# ``plan.u_fastest``), so every inner loop below runs over the channel u with unit stride (SIMD).
@numba.njit(**INLINE)
def _yc(Ye, pt, cg_idx, cg_val, yc):
    """yc[a*d3 + c] = Σ_b Y_e[sh0 + b] C̃[a, b, c] over the path's non-zeros."""
    d3 = pt[D3]
    for q in range(pt[D1] * d3):
        yc[q] = 0.0
    for z in range(pt[NZ0], pt[NZ1]):
        yc[cg_idx[z, 0] * d3 + cg_idx[z, 2]] += cg_val[z] * Ye[pt[SH0] + cg_idx[z, 1]]


# Every inner loop indexes a slice view (``we[wo:wo + mul]``, …) with its own induction variable u: an
# index ``wo + u`` built from a table entry could be negative as far as the compiler knows, so Numba
# would emit the negative-index wrap-around per access and the loop would not vectorise (measured on
# the aspirin layer 2 forward: 442 → 161 µs, the same bits).
@numba.njit(**INLINE)
def _message_acc(yj, we, pt, yc, wy, Mi):
    """Mi[mid0 + c*mul + u] += Σ_a (w_e[woff+u] y_j[in0 + a*mul + u]) yc[a*d3 + c]."""
    d1, d3, mul, x0, m0, wo = pt[D1], pt[D3], pt[MUL], pt[IN0], pt[MID0], pt[WOFF]
    wv = we[wo : wo + mul]
    for a in range(d1):
        ya, wya = yj[x0 + a * mul : x0 + (a + 1) * mul], wy[a * mul : (a + 1) * mul]
        for u in range(mul):
            wya[u] = wv[u] * ya[u]
    for c in range(d3):
        mc = Mi[m0 + c * mul : m0 + (c + 1) * mul]
        for a in range(d1):
            coef = yc[a * d3 + c]
            wya = wy[a * mul : (a + 1) * mul]
            for u in range(mul):
                mc[u] += coef * wya[u]


@numba.njit(**INLINE)
def _q(dMi, pt, yc, q):
    """q[a*mul + u] = Σ_c dM_i[mid0 + c*mul + u] yc[a*d3 + c]."""
    d1, d3, mul, m0 = pt[D1], pt[D3], pt[MUL], pt[MID0]
    for a in range(d1):
        qa = q[a * mul : (a + 1) * mul]
        for u in range(mul):
            qa[u] = 0.0
        for c in range(d3):
            coef = yc[a * d3 + c]
            dmc = dMi[m0 + c * mul : m0 + (c + 1) * mul]
            for u in range(mul):
                qa[u] += coef * dmc[u]


@numba.njit(**INLINE)
def _edge_grads(yj, we, dMi, pt, cg_idx, cg_val, yc, q, dyc, dwe, dYe, need_dY):
    """Edge-owned gradients of one path: dwe[woff+u] = Σ_a y[a,u] q[a,u]; dYe[sh0+b] += Σ C̃ dyc.

    ``need_dY`` False skips d_Y (about half of this function's multiply-adds): the training pass's
    complex reverse pass needs only the parameter gradients, never the edge-vector gradient."""
    d1, d3, mul, x0, m0, wo = pt[D1], pt[D3], pt[MUL], pt[IN0], pt[MID0], pt[WOFF]
    _q(dMi, pt, yc, q)
    dwv, wv = dwe[wo : wo + mul], we[wo : wo + mul]
    y0 = yj[x0 : x0 + mul]
    for u in range(mul):
        dwv[u] = y0[u] * q[u]
    for a in range(1, d1):
        ya, qa = yj[x0 + a * mul : x0 + (a + 1) * mul], q[a * mul : (a + 1) * mul]
        for u in range(mul):
            dwv[u] += ya[u] * qa[u]
    if not need_dY:
        return
    for a in range(d1):
        ya = yj[x0 + a * mul : x0 + (a + 1) * mul]
        for c in range(d3):
            dmc = dMi[m0 + c * mul : m0 + (c + 1) * mul]
            s = dMi[m0] * 0.0
            for u in range(mul):
                s += wv[u] * ya[u] * dmc[u]
            dyc[a * d3 + c] = s
    for z in range(pt[NZ0], pt[NZ1]):
        dYe[pt[SH0] + cg_idx[z, 1]] += cg_val[z] * dyc[cg_idx[z, 0] * d3 + cg_idx[z, 2]]


@numba.njit(**INLINE)
def _input_grad_acc(we, dMi, pt, yc, q, dyj):
    """dyj[in0 + a*mul + u] += w_e[woff+u] Σ_c dM_i[mid0 + c*mul + u] yc[a*d3 + c]."""
    _q(dMi, pt, yc, q)
    _dy_acc(we, pt, q, dyj)


@numba.njit(**INLINE)
def _dy_acc(we, pt, q, dyj):
    """dyj[in0 + a*mul + u] += w_e[woff+u] q[a*mul + u] (q from :func:`_q`)."""
    d1, mul, x0, wo = pt[D1], pt[MUL], pt[IN0], pt[WOFF]
    wv = we[wo : wo + mul]
    for a in range(d1):
        dya, qa = dyj[x0 + a * mul : x0 + (a + 1) * mul], q[a * mul : (a + 1) * mul]
        for u in range(mul):
            dya[u] += wv[u] * qa[u]


# ---------------------------------------------------------------- one edge, all paths (inlined into every driver)
@numba.njit(**INLINE)
def _edge_message_acc(yj, Ye, we, Mi, table, cg_idx, cg_val, yc, wy):
    """Mi += the message of one edge over every path."""
    for p in range(table.shape[0]):
        pt = table[p]
        _yc(Ye, pt, cg_idx, cg_val, yc)
        _message_acc(yj, we, pt, yc, wy, Mi)


@numba.njit(**INLINE)
def _edge_reverse_acc(yj, Ye, we, dMi, dyj, table, cg_idx, cg_val, yc, q, dyc, dwe, dYe, need_dY):
    """One edge of the one-sweep reverse pass: dwe, dYe (edge-owned) and dyj += w ⊙ q, every path."""
    for p in range(table.shape[0]):
        pt = table[p]
        _yc(Ye, pt, cg_idx, cg_val, yc)
        _edge_grads(yj, we, dMi, pt, cg_idx, cg_val, yc, q, dyc, dwe, dYe, need_dY)  # fills q
        _dy_acc(we, pt, q, dyj)


# ---------------------------------------------------------------- drivers
@numba.njit(**_KERNEL)
def _forward(y, Y, w, src, ptr, perm, table, cg_idx, cg_val, max_yc, max_xu, M):
    for i in prange(M.shape[0]):
        yc = np.empty(max_yc, dtype=M.dtype)
        wy = np.empty(max_xu, dtype=M.dtype)
        Mi = M[i]
        for k in range(ptr[i], ptr[i + 1]):
            e = perm[k]
            _edge_message_acc(y[src[e]], Y[e], w[e], Mi, table, cg_idx, cg_val, yc, wy)


@numba.njit(**_KERNEL)
def _backward_edges(y, Y, w, dM, src, ptr, perm, table, cg_idx, cg_val, max_yc, max_xu, dw, dY, need_dY):
    for i in prange(dM.shape[0]):
        yc = np.empty(max_yc, dtype=dw.dtype)
        dyc = np.empty(max_yc, dtype=dw.dtype)
        q = np.empty(max_xu, dtype=dw.dtype)
        dMi = dM[i]
        for k in range(ptr[i], ptr[i + 1]):
            e = perm[k]
            yj, Ye, we = y[src[e]], Y[e], w[e]
            for p in range(table.shape[0]):
                pt = table[p]
                _yc(Ye, pt, cg_idx, cg_val, yc)
                _edge_grads(yj, we, dMi, pt, cg_idx, cg_val, yc, q, dyc, dw[e], dY[e], need_dY)


@numba.njit(**_KERNEL)
def _backward_senders(Y, w, dM, dst, ptr, perm, table, cg_idx, cg_val, max_yc, max_xu, dy):
    for j in prange(dy.shape[0]):
        yc = np.empty(max_yc, dtype=dy.dtype)
        q = np.empty(max_xu, dtype=dy.dtype)
        dyj = dy[j]
        for k in range(ptr[j], ptr[j + 1]):
            e = perm[k]
            dMi, Ye, we = dM[dst[e]], Y[e], w[e]
            for p in range(table.shape[0]):
                pt = table[p]
                _yc(Ye, pt, cg_idx, cg_val, yc)
                _input_grad_acc(we, dMi, pt, yc, q, dyj)


# ---------------------------------------------------------------- serial drivers (small graphs, one thread)
# One loop over the edges in edge order, no parallel region: for a receiver (sender) row the additions
# happen in increasing edge id, the order of the CSR drivers above, so results are bitwise the same.
# The reverse pass is one sweep: q (the contraction of dM_i with YC) is formed once per edge and path
# and used for d_w, d_Y and d_y alike (the parallel drivers form it twice, once per pass).
@numba.njit(**_SERIAL)
def _forward_serial(y, Y, w, src, dst, table, cg_idx, cg_val, max_yc, max_xu, M):
    yc = np.empty(max_yc, dtype=M.dtype)
    wy = np.empty(max_xu, dtype=M.dtype)
    for e in range(src.shape[0]):
        _edge_message_acc(y[src[e]], Y[e], w[e], M[dst[e]], table, cg_idx, cg_val, yc, wy)


@numba.njit(**_SERIAL)
def _backward_serial(y, Y, w, dM, src, dst, table, cg_idx, cg_val, max_yc, max_xu, dw, dY, dy, need_dY):
    yc = np.empty(max_yc, dtype=dw.dtype)
    dyc = np.empty(max_yc, dtype=dw.dtype)
    q = np.empty(max_xu, dtype=dw.dtype)
    for e in range(src.shape[0]):
        j = src[e]
        _edge_reverse_acc(y[j], Y[e], w[e], dM[dst[e]], dy[j], table, cg_idx, cg_val, yc, q, dyc, dw[e], dY[e], need_dY)


# ---------------------------------------------------------------- split one-sweep reverse pass (several threads)
# The serial reverse pass's one sweep, cut into SPLIT fixed ranges of receivers (CSR order, about E/SPLIT
# edges each) run in parallel: the edge-owned d_w[e], d_Y[e] are written directly; d_y goes to the
# range's own (N, dim I) buffer, and the buffers are added in range order afterwards. Against the
# two-pass CSR reverse pass it forms YC and q once per edge and path instead of twice (and, with
# radial tables, evaluates w_e once). SPLIT is fixed, not the thread count: the same bits on 2, 3, …
# threads. Used while the SPLIT buffers stay under SPLIT_BYTES: at 256 MB, Cu 32 000 (l_max 1, 32
# features) fell back to the two-pass scheme and took 512 µs per atom against 306 at 10 976 atoms
# (benchmarks/scaling_per_atom.py, 2 threads, radial tables); the buffers cost 8·N·dim I numbers, about
# 0.8 GB at 10⁵ atoms, l_max 1 — a sixth of that call's peak memory.
SPLIT = 8
SPLIT_BYTES = 1 << 30


def split_bounds(ptr, parts: int = SPLIT) -> np.ndarray:
    """Receiver indices cutting the CSR rows into ``parts`` ranges of about equal edge counts."""
    targets = (np.arange(parts + 1) * ptr[-1]) // parts
    bounds = np.searchsorted(ptr, targets, side="left").astype(np.int64)
    bounds[0], bounds[-1] = 0, ptr.shape[0] - 1
    return np.maximum.accumulate(bounds)


@numba.njit(**_KERNEL)
def _backward_split(
    y, Y, w, dM, src, ptr, perm, bounds, table, cg_idx, cg_val, max_yc, max_xu, dw, dY, dy_parts, need_dY
):
    for k in prange(bounds.shape[0] - 1):
        yc = np.empty(max_yc, dtype=dw.dtype)
        dyc = np.empty(max_yc, dtype=dw.dtype)
        q = np.empty(max_xu, dtype=dw.dtype)
        dyk = dy_parts[k]
        for i in range(bounds[k], bounds[k + 1]):
            dMi = dM[i]
            for kk in range(ptr[i], ptr[i + 1]):
                e = perm[kk]
                j = src[e]
                _edge_reverse_acc(
                    y[j], Y[e], w[e], dMi, dyk[j], table, cg_idx, cg_val, yc, q, dyc, dw[e], dY[e], need_dY
                )


#: edges up to which the serial drivers run (also used whenever Numba has one thread): below it a
#: parallel region's start-up and the CSR look-ups cost more than the work they would split. Measured
#: (benchmarks/ab_tp_drivers.py, 2 threads, tp_conv forward + reverse): at 316 edges serial wins at
#: l_max 1 (parallel 1.5–1.6× slower), 628 edges are mixed (0.59–1.24×), at 1 570 edges (a batch of
#: 5 aspirin frames) the parallel drivers win in all 8 settings (0.54–0.72×), at 4 614 in all 4 (0.49–0.59×)
SERIAL_EDGES = 1024


def _serial(n_edges: int) -> bool:
    return n_edges <= SERIAL_EDGES or numba.get_num_threads() == 1


def _split(n_nodes: int, dim: int, dtype) -> bool:
    """Whether the split reverse pass's SPLIT (n_nodes, dim) buffers fit in SPLIT_BYTES."""
    return SPLIT * n_nodes * dim * np.dtype(dtype).itemsize <= SPLIT_BYTES


# ---------------------------------------------------------------- reference signatures
class Cache(NamedTuple):
    """What the backward pass reads (``w`` may be set to None and restored: low-memory mode)."""

    y_t: np.ndarray  # (N, dim I) input in the u-fastest layout
    Y: np.ndarray
    w: np.ndarray | None
    src: np.ndarray
    dst: np.ndarray
    n_nodes: int
    plan: object


def forward(y, Y, w, src, dst, n_nodes, plan):
    dtype = common_dtype(y, Y, w)
    t = plan.tables
    y_t = cast(np.asarray(y)[:, t.in_cols], dtype)  # u-fastest copy of y (O(N·dim), ~1% of the op)
    Y, w = cast(Y, dtype), cast(w, dtype)
    src, dst = as_index(src), as_index(dst)
    M_t = np.zeros((n_nodes, plan.irreps_mid.dim), dtype=dtype)
    if _serial(src.shape[0]):
        _forward_serial(y_t, Y, w, src, dst, t.paths, t.cg_idx, t.cg_val, t.max_yc, t.max_xu, M_t)
    else:
        ptr, perm = csr(dst, n_nodes)
        _forward(y_t, Y, w, src, ptr, perm, t.paths, t.cg_idx, t.cg_val, t.max_yc, t.max_xu, M_t)
    return np.ascontiguousarray(M_t[:, t.mid_inv]), Cache(y_t, Y, w, src, dst, n_nodes, plan)


def backward(d_M, cache, edge_grads: bool = True):
    """Returns ``(d_y, d_Y, d_w)``; ``d_Y`` is None when ``edge_grads=False`` (not computed)."""
    y_t, Y, w, src, dst, n_nodes, plan = cache
    dtype = common_dtype(y_t, d_M)
    t = plan.tables
    table, cg_idx, cg_val, max_yc, max_xu = t.paths, t.cg_idx, t.cg_val, t.max_yc, t.max_xu
    y_t, Y, w = cast(y_t, dtype), cast(Y, dtype), cast(w, dtype)
    dM_t = cast(np.asarray(d_M)[:, t.mid_cols], dtype)
    d_w = np.empty(w.shape, dtype=dtype)  # every column belongs to exactly one path
    d_Y = np.zeros(Y.shape if edge_grads else (Y.shape[0], 0), dtype=dtype)  # 0 columns: never written
    d_y_t = np.zeros(y_t.shape, dtype=dtype)
    if _serial(src.shape[0]):
        _backward_serial(y_t, Y, w, dM_t, src, dst, table, cg_idx, cg_val, max_yc, max_xu, d_w, d_Y, d_y_t, edge_grads)
    elif _split(*y_t.shape, dtype):
        ptr, perm = csr(dst, n_nodes)
        parts = np.zeros((SPLIT,) + y_t.shape, dtype=dtype)
        _backward_split(
            y_t,
            Y,
            w,
            dM_t,
            src,
            ptr,
            perm,
            split_bounds(ptr),
            table,
            cg_idx,
            cg_val,
            max_yc,
            max_xu,
            d_w,
            d_Y,
            parts,
            edge_grads,
        )
        np.sum(parts, axis=0, out=d_y_t)  # range order
    else:
        ptr, perm = csr(dst, n_nodes)
        _backward_edges(y_t, Y, w, dM_t, src, ptr, perm, table, cg_idx, cg_val, max_yc, max_xu, d_w, d_Y, edge_grads)
        ptr_s, perm_s = csr(src, y_t.shape[0])
        _backward_senders(Y, w, dM_t, dst, ptr_s, perm_s, table, cg_idx, cg_val, max_yc, max_xu, d_y_t)
    return np.ascontiguousarray(d_y_t[:, t.in_inv]), (d_Y if edge_grads else None), d_w
