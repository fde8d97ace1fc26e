r"""Tensor-product convolution with scatter (the NequIP message pass) — reference, the specification.

=====================  =============  ==================
symbol                 array          shape
=====================  =============  ==================
:math:`y_j`            ``y``          (N, dim I)
:math:`Y_e`            ``Y``          (E, (l_max+1)^2)
:math:`w_e`            ``w``          (E, n_w)
:math:`i(e), j(e)`     ``dst, src``   (E,)
:math:`M_i`            ``M``          (N, dim MID)
=====================  =============  ==================

Forward, for every "uvu" path :math:`(l_1, l_2 \to l_3)` with weight offset :math:`o`
(``docs/derivations/operations.md#convolution``):

.. math::

    m_e[u, c] = w_e[o + u] \sum_{a,b} \tilde C_{abc}\, y_{j(e)}[u, a]\, Y_e^{(l_2)}[b],\qquad
    M_i = \sum_{e:\, i(e) = i} m_e,

with :math:`\tilde C = \sqrt{2 l_3 + 1}\, C^{l_1 l_2 l_3}` (e3nn path weight). The contraction is done
as :math:`(YC)_{eac} = \sum_b Y_e[b] \tilde C_{abc}` then :math:`t_e[u,c] = \sum_a y[u,a] (YC)_{eac}`.

Backward (trilinear, so each input gets the product of the other two):
:math:`\bar m_e = \bar M_{i(e)}`,
:math:`\bar w_e[o+u] = \sum_c \bar m_e[u,c]\, t_e[u,c]`,
:math:`\bar y_{j}[u,a] \mathrel{+}= \sum_{e: j(e)=j} w_e[o+u] \sum_c \bar m_e[u,c] (YC)_{eac}`,
:math:`\bar Y_e[b] \mathrel{+}= \sum_{u,a,c} w_e[o+u]\,\bar m_e[u,c]\, y_{j(e)}[u,a]\, \tilde C_{abc}`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nequip_np.kernels.common import scatter_sum
from nequip_np.kernels.plan import blocks


class Cache(NamedTuple):
    """What the backward pass reads (``w`` may be set to None and restored: low-memory mode)."""

    x_e: np.ndarray  # (E, dim I) y gathered at the senders
    Y: np.ndarray
    w: np.ndarray | None
    src: np.ndarray
    dst: np.ndarray
    y_shape: tuple
    plan: object
    saved: list  # per path: (YC (E, d1, d3), t (E, mul, d3))


def forward(y, Y, w, src, dst, n_nodes, plan):
    e = Y.shape[0]
    dtype = np.result_type(y, Y, w)
    bin_, bmid = blocks(plan.irreps_in), blocks(plan.irreps_mid)
    x_e = y[src]
    msg = np.zeros((e, plan.irreps_mid.dim), dtype=dtype)
    saved = []
    for path in plan.paths:
        bi, bm = bin_[path.i_in], bmid[path.i_mid]
        xi = x_e[:, bi.start : bi.stop].reshape(e, bi.mul, bi.dim)
        Ysh = Y[:, path.l_sh**2 : (path.l_sh + 1) ** 2]
        YC = np.einsum("eb,abc->eac", Ysh, path.cg.astype(np.real(Ysh[:0]).dtype))  # stay in the model dtype
        t = np.einsum("eua,eac->euc", xi, YC)
        wk = w[:, path.w_offset : path.w_offset + bi.mul]
        msg[:, bm.start : bm.stop] = (t * wk[:, :, None]).reshape(e, bm.stop - bm.start)
        saved.append((YC, t))
    M = scatter_sum(msg, dst, n_nodes)
    return M, Cache(x_e, Y, w, src, dst, y.shape, plan, saved)


def backward(d_M, cache, edge_grads: bool = True):
    """Returns ``(d_y, d_Y, d_w)``; with ``edge_grads=False`` ``d_Y`` is not computed (None): the
    training pass's complex reverse pass needs only the parameter gradients."""
    x_e, Y, w, src, dst, y_shape, plan, saved = cache
    e = Y.shape[0]
    dtype = np.result_type(x_e, Y, w, d_M)
    bin_, bmid = blocks(plan.irreps_in), blocks(plan.irreps_mid)
    d_msg = d_M[dst]
    d_x = np.zeros(x_e.shape, dtype=dtype)
    d_Y = np.zeros(Y.shape, dtype=dtype)
    d_w = np.zeros(w.shape, dtype=dtype)
    for path, (YC, t) in zip(plan.paths, saved):
        bi, bm = bin_[path.i_in], bmid[path.i_mid]
        dm = d_msg[:, bm.start : bm.stop].reshape(e, bi.mul, bm.dim)
        wk = w[:, path.w_offset : path.w_offset + bi.mul]
        d_w[:, path.w_offset : path.w_offset + bi.mul] += np.sum(dm * t, axis=2)
        dt = dm * wk[:, :, None]
        xi = x_e[:, bi.start : bi.stop].reshape(e, bi.mul, bi.dim)
        d_x[:, bi.start : bi.stop] += np.einsum("euc,eac->eua", dt, YC).reshape(e, bi.stop - bi.start)
        if not edge_grads:
            continue
        d_YC = np.einsum("euc,eua->eac", dt, xi)
        d_Y[:, path.l_sh**2 : (path.l_sh + 1) ** 2] += np.einsum(
            "eac,abc->eb", d_YC, path.cg.astype(np.real(d_YC[:0]).dtype)
        )
    d_y = scatter_sum(d_x, src, y_shape[0])
    return d_y, (d_Y if edge_grads else None), d_w
