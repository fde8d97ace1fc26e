r"""Equivariant linear layer (e3nn ``Linear``) — reference, the specification.

For every path (input block i, output block o) with equal irreps :math:`(l, p)`,

.. math:: y_o[w, m] \mathrel{+}= \frac{1}{\sqrt{\mathrm{fan}_o}} \sum_u W_{io}[u, w]\, x_i[u, m],

with :math:`\mathrm{fan}_o = \sum_{i \to o} \mathrm{mul}_i`. Mixing only copies of the same irrep
keeps equivariance (the weights commute with :math:`D^l`). Backward:
:math:`\bar x_i[u, m] = \mathrm{fan}^{-1/2}\sum_w W[u, w]\bar y_o[w, m]`,
:math:`\bar W[u, w] = \mathrm{fan}^{-1/2}\sum_{n,m} x_i[n, u, m]\,\bar y_o[n, w, m]`.
"""

from __future__ import annotations

import numpy as np


def forward(x, weight, plan):
    n = x.shape[0]
    bin_, bout = plan.bin, plan.bout
    out = np.zeros((n, plan.irreps_out.dim), dtype=np.result_type(x, weight))
    for (i, o, off), norm in zip(plan.paths, plan.norm):
        bi, bo = bin_[i], bout[o]
        xi = x[:, bi.start : bi.stop].reshape(n, bi.mul, bi.dim)
        w = weight[off : off + bi.mul * bo.mul].reshape(bi.mul, bo.mul)
        out[:, bo.start : bo.stop] += norm * np.einsum("num,uw->nwm", xi, w).reshape(n, -1)
    return out, (x, weight, plan)


def backward(d_out, cache, weight_grads: bool = True):
    """Returns ``(d_x, d_weight)``; ``d_weight`` is None when ``weight_grads=False`` (forces only)."""
    x, weight, plan = cache
    n = x.shape[0]
    bin_, bout = plan.bin, plan.bout
    dtype = np.result_type(x, weight, d_out)
    d_x = np.zeros(x.shape, dtype=dtype)
    d_w = np.zeros(weight.shape, dtype=dtype)
    for (i, o, off), norm in zip(plan.paths, plan.norm):
        bi, bo = bin_[i], bout[o]
        xi = x[:, bi.start : bi.stop].reshape(n, bi.mul, bi.dim)
        dy = d_out[:, bo.start : bo.stop].reshape(n, bo.mul, bo.dim)
        w = weight[off : off + bi.mul * bo.mul].reshape(bi.mul, bo.mul)
        d_x[:, bi.start : bi.stop] += norm * np.einsum("nwm,uw->num", dy, w).reshape(n, -1)
        if weight_grads:
            d_w[off : off + bi.mul * bo.mul] += norm * np.einsum("num,nwm->uw", xi, dy).ravel()
    return d_x, (d_w if weight_grads else None)
