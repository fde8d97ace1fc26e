r"""Equivariant linear layer — numba.cuda kernels (same signatures as ``reference.py``).

What differs from the reference: no per-path einsum; each output element is owned by one thread.
The plan is flattened into column tables (column → block, multiplicity index, m) and, per block, the
list of paths touching it, so that

* forward: one thread per (node, output column) sums its paths :math:`\sum_u W[u, w]\,x[u, m]`;
* backward :math:`\bar x`: one thread per (node, input column) sums :math:`\sum_w W[u, w]\,\bar y[w, m]`;
* backward :math:`\bar W`: one thread per weight walks all nodes in order (a deterministic serial
  reduction in float64 / complex128; at ~10⁵ nodes a two-stage block reduction is the upgrade).

The same kernels take a per-node weight *set* (``types``, weights (T, n_w)): the self-connection is
this layer with one weight matrix per species (``self_connection/cuda.py``).
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from nequip_np.kernels import _cuda_util as cu
from nequip_np.kernels.plan import blocks


def linear_tables(irreps_in, irreps_out, paths_io, norms):
    """Flat index tables of a block-diagonal linear map (host arrays; offsets = Σ mul_in·mul_out).

    Returns (path table (P, 6): in_start, mul_in, dim, out_start, mul_out, w_offset; norm (P,);
    out columns (C_out, 3): path-list start, path-list stop, (w·dim + m); out path list;
    in columns likewise; weight table (n_w, 3): path, u, w).
    """
    bin_, bout = blocks(irreps_in), blocks(irreps_out)
    rows, off = [], 0
    for i, o in paths_io:
        bi, bo = bin_[i], bout[o]
        rows.append((bi.start, bi.mul, bi.dim, bo.start, bo.mul, off))
        off += bi.mul * bo.mul
    table = np.array(rows, np.int64).reshape(-1, 6)
    wtab = np.array([(p, u, w) for p, r in enumerate(rows) for u in range(r[1]) for w in range(r[4])],
                    np.int64).reshape(-1, 3)

    def columns(blks, side):
        lists, cols = [], []
        for b_idx, b in enumerate(blks):
            mine = [p for p, io in enumerate(paths_io) if io[side] == b_idx]
            p0 = len(lists)
            lists.extend(mine)
            for k in range(b.mul * b.dim):
                cols.append((p0, len(lists), k))
        return np.array(cols, np.int64).reshape(-1, 3), np.array(lists + [0], np.int64)

    ocol, olist = columns(bout, 1)
    icol, ilist = columns(bin_, 0)
    return table, np.array(norms, np.float64).reshape(-1), ocol, olist, icol, ilist, wtab


def _k_forward(x, W, types, per_species, table, norm, ocol, olist, out):
    t = cuda.grid(1)
    nc = out.shape[1]
    if t < out.shape[0] * nc:
        n = t // nc
        col = t - n * nc
        s = types[n] if per_species else 0
        acc = ZERO  # noqa: F821 - bound per dtype by _cuda_util.compile_kernel
        for q in range(ocol[col, 0], ocol[col, 1]):
            p = olist[q]
            d = table[p, 2]
            w = ocol[col, 2] // d
            m = ocol[col, 2] - w * d
            part = ZERO  # noqa: F821
            for u in range(table[p, 1]):
                part += W[s, table[p, 5] + u * table[p, 4] + w] * x[n, table[p, 0] + u * d + m]
            acc += norm[p] * part
        out[n, col] = acc


def _k_backward_x(dy, W, types, per_species, table, norm, icol, ilist, dx):
    t = cuda.grid(1)
    nc = dx.shape[1]
    if t < dx.shape[0] * nc:
        n = t // nc
        col = t - n * nc
        s = types[n] if per_species else 0
        acc = ZERO  # noqa: F821
        for q in range(icol[col, 0], icol[col, 1]):
            p = ilist[q]
            d = table[p, 2]
            u = icol[col, 2] // d
            m = icol[col, 2] - u * d
            mo = table[p, 4]
            part = ZERO  # noqa: F821
            for w in range(mo):
                part += W[s, table[p, 5] + u * mo + w] * dy[n, table[p, 3] + w * d + m]
            acc += norm[p] * part
        dx[n, col] = acc


def _k_backward_w(x, dy, types, per_species, table, norm, wtab, dW):
    t = cuda.grid(1)
    nw = dW.shape[1]
    if t < dW.shape[0] * nw:
        s = t // nw
        q = t - s * nw
        p = wtab[q, 0]
        d = table[p, 2]
        i0 = table[p, 0] + wtab[q, 1] * d
        o0 = table[p, 3] + wtab[q, 2] * d
        acc = ZERO  # noqa: F821
        for n in range(x.shape[0]):
            if per_species == 0 or types[n] == s:
                for m in range(d):
                    acc += x[n, i0 + m] * dy[n, o0 + m]
        dW[s, q] = norm[p] * acc


def species_linear_forward(x, W2, types, per_species, tabs, n_out):
    """out (N, n_out) on the device; ``W2`` (T, n_w) device weights, ``types`` (N,) device int64."""
    table, norm, ocol, olist = tabs[0], tabs[1], tabs[2], tabs[3]
    out = cu.device_empty((x.shape[0], n_out), x.dtype)
    cu.launch(_k_forward, x.dtype, out.size, x, W2, types, per_species, table, norm, ocol, olist, out)
    return out


def species_linear_backward(dy, x, W2, types, per_species, tabs):
    """(dx (N, n_in), dW (T, n_w)) on the device."""
    table, norm, icol, ilist, wtab = tabs[0], tabs[1], tabs[4], tabs[5], tabs[6]
    dx = cu.device_empty(x.shape, dy.dtype)
    cu.launch(_k_backward_x, dy.dtype, dx.size, dy, W2, types, per_species, table, norm, icol, ilist, dx)
    dW = cu.device_empty(W2.shape, dy.dtype)
    cu.launch(_k_backward_w, dy.dtype, dW.size, x, dy, types, per_species, table, norm, wtab, dW)
    return dx, dW


def _plan_tables(plan):
    return linear_tables(plan.irreps_in, plan.irreps_out, [(i, o) for i, o, _ in plan.paths], plan.norm)


_NO_TYPES: list = []


def _no_types():
    """A one-element device index (the shared weight set of a plain linear layer), uploaded once."""
    if not _NO_TYPES:
        _NO_TYPES.append(cu.to_device(np.zeros(1, np.int64)))
    return _NO_TYPES[0]


def forward(x, weight, plan):
    cu.require_cuda()
    dt = cu.common_dtype(x, weight)
    xd = cu.to_device(x, dt)
    W2 = cu.to_device(weight, dt)
    W2 = W2.reshape(1, W2.size)
    tabs = cu.plan_tables(plan, _plan_tables)
    out = species_linear_forward(xd, W2, _no_types(), 0, tabs, plan.irreps_out.dim)
    return cu.finish(out, x, weight), (xd, W2, plan, x)


def backward(d_out, cache, weight_grads: bool = True):
    """Returns ``(d_x, d_weight)``; ``d_weight`` is None when ``weight_grads=False``."""
    xd, W2, plan, like = cache
    dt = cu.common_dtype(xd, d_out)
    dy, xd, W2 = cu.to_device(d_out, dt), cu.to_device(xd, dt), cu.to_device(W2, dt)
    dx, dW = species_linear_backward(dy, xd, W2, _no_types(), 0, cu.plan_tables(plan, _plan_tables))
    if not weight_grads:
        return cu.finish(dx, like, d_out), None
    return cu.finish((dx, dW.reshape(dW.size)), like, d_out)
