r"""Self-connection: e3nn ``FullyConnectedTensorProduct(h, a)`` with the species embedding — reference.

Node attributes :math:`a_n = A[t_n]` are the learned type embedding (``attr`` (T, T_f)). For every path
(input block i → output block k with the same irrep):

.. math:: s_k[n, w, m] = \frac{1}{\sqrt{\mathrm{fan}_k}} \sum_{u, v} W_k[u, v, w]\, h_i[n, u, m]\, a_n[v].

Since :math:`a_n` only depends on the species, :math:`V_t[u, w] = \sum_v W[u, v, w] A[t, v]` is formed
once per species and the operation becomes a per-species linear map (T small matrix products instead
of an (N, mul, T_f, mul) contraction). Backward:
:math:`\bar h_i[n] = \mathrm{fan}^{-1/2} V_{t_n}\bar s_k[n]`,
:math:`\bar V_t = \mathrm{fan}^{-1/2}\sum_{n: t_n = t} h_i[n]\,\bar s_k[n]^\top`,
:math:`\bar W[u,v,w] = \sum_t \bar V_t[u,w] A[t,v]`,
:math:`\bar A[t, v] = \sum_{u,w} \bar V_t[u,w] W[u,v,w]`.
"""

from __future__ import annotations

import numpy as np

from nequip_np.kernels.plan import blocks


def _species_rows(types, n_types):
    return [np.flatnonzero(types == t) for t in range(n_types)]


def forward(h, attr, types, weight, plan):
    n, n_types = h.shape[0], attr.shape[0]
    bin_, bout = blocks(plan.irreps_in), blocks(plan.irreps_out)
    out = np.zeros((n, plan.irreps_out.dim), dtype=np.result_type(h, attr, weight))
    rows = _species_rows(types, n_types)
    for (i, k, off), norm in zip(plan.paths, plan.norm):
        bi, bk = bin_[i], bout[k]
        W = weight[off : off + bi.mul * plan.n_attr * bk.mul].reshape(bi.mul, plan.n_attr, bk.mul)
        V = np.einsum("uvw,tv->tuw", W, attr)
        hi = h[:, bi.start : bi.stop].reshape(n, bi.mul, bi.dim)
        for t, idx in enumerate(rows):
            if idx.size:
                out[idx, bk.start : bk.stop] += norm * np.einsum("num,uw->nwm", hi[idx], V[t]).reshape(idx.size, -1)
    return out, (h, attr, types, weight, plan)


def backward(d_out, cache, weight_grads: bool = True):
    """Returns ``(d_h, d_attr, d_weight)``; ``d_attr``, ``d_weight`` are None when ``weight_grads=False``."""
    h, attr, types, weight, plan = cache
    n, n_types = h.shape[0], attr.shape[0]
    dtype = np.result_type(h, attr, weight, d_out)
    bin_, bout = blocks(plan.irreps_in), blocks(plan.irreps_out)
    d_h = np.zeros(h.shape, dtype=dtype)
    d_attr = np.zeros(attr.shape, dtype=dtype)
    d_w = np.zeros(weight.shape, dtype=dtype)
    rows = _species_rows(types, n_types)
    for (i, k, off), norm in zip(plan.paths, plan.norm):
        bi, bk = bin_[i], bout[k]
        size = bi.mul * plan.n_attr * bk.mul
        W = weight[off : off + size].reshape(bi.mul, plan.n_attr, bk.mul)
        V = np.einsum("uvw,tv->tuw", W, attr)
        hi = h[:, bi.start : bi.stop].reshape(n, bi.mul, bi.dim)
        ds = d_out[:, bk.start : bk.stop].reshape(n, bk.mul, bk.dim)
        dV = np.zeros(V.shape, dtype=dtype)
        for t, idx in enumerate(rows):
            if idx.size:
                d_h[idx, bi.start : bi.stop] += norm * np.einsum("nwm,uw->num", ds[idx], V[t]).reshape(idx.size, -1)
                dV[t] = norm * np.einsum("num,nwm->uw", hi[idx], ds[idx])
        d_w[off : off + size] += np.einsum("tuw,tv->uvw", dV, attr).ravel()
        d_attr += np.einsum("tuw,uvw->tv", dV, W)
    return (d_h, d_attr, d_w) if weight_grads else (d_h, None, None)
