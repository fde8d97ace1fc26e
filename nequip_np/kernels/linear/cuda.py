r"""Equivariant linear layer — numba.cuda kernels (same signatures as ``reference.py``).

What differs from the reference: no per-path einsum; each output element is owned by one thread.
The plan's ``LinearTables`` (``kernels/plan.py``, built with the plan, uploaded once per plan) hold the
column tables (column → its block's path list, multiplicity index, m) and, per block, the list of
paths touching it, so that

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


def species_linear_forward(x, W2, types, per_species, t, n_out):
    """out (N, n_out) on the device; ``W2`` (T, n_w) device weights, ``types`` (N,) device int64,
    ``t`` the plan's ``LinearTables`` on the device (:func:`_cuda_util.device_record`)."""
    out = cu.device_empty((x.shape[0], n_out), x.dtype)
    cu.launch(_k_forward, x.dtype, out.size, x, W2, types, per_species, t.paths, t.norm, t.out_cols, t.out_paths, out)
    return out


def species_linear_backward(dy, x, W2, types, per_species, t):
    """(dx (N, n_in), dW (T, n_w)) on the device."""
    dx = cu.device_empty(x.shape, dy.dtype)
    cu.launch(_k_backward_x, dy.dtype, dx.size, dy, W2, types, per_species, t.paths, t.norm, t.in_cols, t.in_paths, dx)
    dW = cu.device_empty(W2.shape, dy.dtype)
    cu.launch(_k_backward_w, dy.dtype, dW.size, x, dy, types, per_species, t.paths, t.norm, t.w_owner, dW)
    return dx, dW


def _no_types():
    """A one-element device index (the shared weight set of a plain linear layer), resident on the device."""
    return cu.resident(np.zeros(1, np.int64))


def forward(x, weight, plan):
    cu.require_cuda()
    dt = cu.common_dtype(x, weight)
    xd = cu.to_device(x, dt)
    W2 = cu.to_device(weight, dt)
    W2 = W2.reshape(1, W2.size)
    out = species_linear_forward(xd, W2, _no_types(), 0, cu.device_record(plan.tables), plan.irreps_out.dim)
    return cu.finish(out, x, weight), (xd, W2, plan, x)


def backward(d_out, cache, weight_grads: bool = True):
    """Returns ``(d_x, d_weight)``; ``d_weight`` is None when ``weight_grads=False``."""
    xd, W2, plan, like = cache
    dt = cu.common_dtype(xd, d_out)
    dy, xd, W2 = cu.to_device(d_out, dt), cu.to_device(xd, dt), cu.to_device(W2, dt)
    dx, dW = species_linear_backward(dy, xd, W2, _no_types(), 0, cu.device_record(plan.tables))
    if not weight_grads:
        return cu.finish(dx, like, d_out), None
    return cu.finish((dx, dW.reshape(dW.size)), like, d_out)
