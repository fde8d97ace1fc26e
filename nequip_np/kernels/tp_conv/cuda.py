r"""Tensor-product convolution fused with its scatter — numba.cuda kernels (same signatures as ``reference.py``).

What differs from the reference (design and measurements plan: ``docs/cuda.md#tensor-product-convolution``):

* **Segmented reduction, no atomics.** Edges are grouped by receiver (CSR of ``dst``, stable, built
  once per edge list and kept on the device). One thread owns one output element ``M[i, col]`` and
  walks receiver i's edges in CSR order, accumulating in a float64 / complex128 register. The
  (E, dim MID) message array is never materialised; the result is deterministic (bitwise repeatable)
  and float32 storage still gets float64 sums.
* **Sparse CG, keyed per thread.** Every MID column is (path p, u, c); its thread needs only the CG
  non-zeros of path p with that c. The plan's ``ConvTables`` (``kernels/plan.py``, uploaded once per
  plan) store the non-zeros three times, grouped by c (forward), by a (:math:`\bar y`) and by b
  (:math:`\bar Y`), so no thread loops over zeros.
* **Backward in three race-free kernels**: :math:`\bar w` one thread per (edge, weight), :math:`\bar Y`
  one thread per (edge, SH component) — both edge-owned — and :math:`\bar y` one thread per (sender j,
  input column) walking the CSR of ``src`` (the gather's transpose, again without atomics).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import cuda

from nequip_np.kernels import _cuda_util as cu
from nequip_np.kernels.plan import D1, D3, IN0, MID0, MUL, SH0, WOFF  # columns of ConvTables.paths


def _k_forward(y, Y, w, src, ptr, perm, pt, mid_cols, nzc, nzc_val, nzc_ptr, M):
    t = cuda.grid(1)
    nc = M.shape[1]
    if t < M.shape[0] * nc:
        i = t // nc
        col = t - i * nc
        p = mid_cols[col, 0]
        u = mid_cols[col, 1]
        c = mid_cols[col, 2]
        x0 = pt[p, IN0] + u * pt[p, D1]
        s0 = pt[p, SH0]
        wu = pt[p, WOFF] + u
        z0 = nzc_ptr[p, c]
        z1 = nzc_ptr[p, c + 1]
        acc = ZERO  # noqa: F821 - bound per dtype by _cuda_util.compile_kernel
        for k in range(ptr[i], ptr[i + 1]):
            e = perm[k]
            j = src[e]
            part = ZERO  # noqa: F821
            for z in range(z0, z1):
                part += nzc_val[z] * y[j, x0 + nzc[z, 0]] * Y[e, s0 + nzc[z, 1]]
            acc += w[e, wu] * part
        M[i, col] = acc


def _k_grad_w(y, Y, dM, src, dst, pt, w_cols, nzc, nzc_val, nzc_ptr, dw):
    t = cuda.grid(1)
    nw = dw.shape[1]
    if t < dw.shape[0] * nw:
        e = t // nw
        q = t - e * nw
        p = w_cols[q, 0]
        u = w_cols[q, 1]
        i = dst[e]
        j = src[e]
        x0 = pt[p, IN0] + u * pt[p, D1]
        m0 = pt[p, MID0] + u * pt[p, D3]
        s0 = pt[p, SH0]
        acc = ZERO  # noqa: F821
        for z in range(nzc_ptr[p, 0], nzc_ptr[p, pt[p, D3]]):
            acc += nzc_val[z] * dM[i, m0 + nzc[z, 2]] * y[j, x0 + nzc[z, 0]] * Y[e, s0 + nzc[z, 1]]
        dw[e, pt[p, WOFF] + u] = acc


def _k_grad_Y(y, w, dM, src, dst, pt, sh_cols, sh_list, nzb, nzb_val, nzb_ptr, dY):
    t = cuda.grid(1)
    nk = dY.shape[1]
    if t < dY.shape[0] * nk:
        e = t // nk
        k = t - e * nk
        b = sh_cols[k, 2]
        i = dst[e]
        j = src[e]
        acc = ZERO  # noqa: F821
        for q in range(sh_cols[k, 0], sh_cols[k, 1]):
            p = sh_list[q]
            for u in range(pt[p, MUL]):
                x0 = pt[p, IN0] + u * pt[p, D1]
                m0 = pt[p, MID0] + u * pt[p, D3]
                part = ZERO  # noqa: F821
                for z in range(nzb_ptr[p, b], nzb_ptr[p, b + 1]):
                    part += nzb_val[z] * dM[i, m0 + nzb[z, 2]] * y[j, x0 + nzb[z, 0]]
                acc += w[e, pt[p, WOFF] + u] * part
        dY[e, k] = acc


def _k_grad_y(Y, w, dM, dst, sptr, sperm, pt, in_cols, in_list, nza, nza_val, nza_ptr, dy):
    t = cuda.grid(1)
    nc = dy.shape[1]
    if t < dy.shape[0] * nc:
        j = t // nc
        col = t - j * nc
        u = in_cols[col, 2]
        a = in_cols[col, 3]
        acc = ZERO  # noqa: F821
        for k in range(sptr[j], sptr[j + 1]):
            e = sperm[k]
            i = dst[e]
            for q in range(in_cols[col, 0], in_cols[col, 1]):
                p = in_list[q]
                m0 = pt[p, MID0] + u * pt[p, D3]
                s0 = pt[p, SH0]
                part = ZERO  # noqa: F821
                for z in range(nza_ptr[p, a], nza_ptr[p, a + 1]):
                    part += nza_val[z] * dM[i, m0 + nza[z, 2]] * Y[e, s0 + nza[z, 1]]
                acc += w[e, pt[p, WOFF] + u] * part
        dy[j, col] = acc


class Cache(NamedTuple):
    """What the backward pass reads (``w`` may be set to None and restored: low-memory mode)."""

    y: object  # device arrays in the kernel dtype
    Y: object
    w: object
    src: object
    dst: object
    src_host: np.ndarray
    dst_host: np.ndarray
    n_nodes: int
    plan: object
    like: object  # the caller's input: device or host results


def forward(y, Y, w, src, dst, n_nodes, plan):
    cu.require_cuda()
    dt = cu.common_dtype(y, Y, w)
    yd, Yd, wd = cu.to_device(y, dt), cu.to_device(Y, dt), cu.to_device(w, dt)
    srcd, dstd = cu.index_array(src), cu.index_array(dst)
    t = cu.device_record(plan.tables)
    ptr, perm = cu.csr_device(dst, n_nodes)
    M = cu.device_empty((int(n_nodes), plan.irreps_mid.dim), dt)
    cu.launch(
        _k_forward, dt, M.size, yd, Yd, wd, srcd, ptr, perm, t.paths, t.mid_owner, t.nz_c, t.nz_c_val, t.nz_c_ptr, M
    )
    return cu.finish(M, y, Y, w), Cache(yd, Yd, wd, srcd, dstd, src, dst, int(n_nodes), plan, y)


def backward(d_M, cache, edge_grads: bool = True):
    """Returns ``(d_y, d_Y, d_w)``; ``d_Y`` is None (its kernel not launched) when ``edge_grads=False``."""
    yd, Yd, wd, srcd, dstd, src, dst, n_nodes, plan, like = cache
    dt = cu.common_dtype(yd, d_M)
    yd, Yd, wd, dM = cu.to_device(yd, dt), cu.to_device(Yd, dt), cu.to_device(wd, dt), cu.to_device(d_M, dt)
    t = cu.device_record(plan.tables)
    dw = cu.device_zeros(wd.shape, dt)  # weight columns no path reads stay zero
    cu.launch(
        _k_grad_w,
        dt,
        wd.shape[0] * t.w_owner.shape[0],
        yd,
        Yd,
        dM,
        srcd,
        dstd,
        t.paths,
        t.w_owner,
        t.nz_c,
        t.nz_c_val,
        t.nz_c_ptr,
        dw,
    )
    dY = None
    if edge_grads:
        dY = cu.device_zeros(Yd.shape, dt)
        cu.launch(
            _k_grad_Y,
            dt,
            Yd.shape[0] * t.sh_owner.shape[0],
            yd,
            wd,
            dM,
            srcd,
            dstd,
            t.paths,
            t.sh_owner,
            t.sh_paths,
            t.nz_b,
            t.nz_b_val,
            t.nz_b_ptr,
            dY,
        )
    sptr, sperm = cu.csr_device(src, yd.shape[0])
    dy = cu.device_empty(yd.shape, dt)
    cu.launch(
        _k_grad_y,
        dt,
        dy.size,
        Yd,
        wd,
        dM,
        dstd,
        sptr,
        sperm,
        t.paths,
        t.in_owner,
        t.in_paths,
        t.nz_a,
        t.nz_a_val,
        t.nz_a_ptr,
        dy,
    )
    return cu.finish((dy, dY, dw), like, d_M)
