r"""Tabulated radial function fused with the tensor-product convolution (inference) — the reference.

Inputs (N nodes, E edges): ``y`` (N, dim I) sender features, ``Y`` (E, dim SH) edge harmonics,
``edge_vec`` (E, 3) float64, ``rmax_recip`` (E,) :math:`1/r_{\max}` of each edge's species pair,
``table`` (n, 3, n_w) one layer's quintic Hermite table, ``src``/``dst`` (E,), the conv plan.
Output: ``M`` (N, dim MID).

Forward. The composition of two operations, each specified in its own reference:

.. math::
    w_e = S\big(|\vec r_e|\,r_{\max}^{-1}\big)\quad(\texttt{radial\_table}),\qquad
    M_i = \sum_{e \to i} \mathrm{TP}\big(y_{j(e)}, Y_e; w_e\big)\quad(\texttt{tp\_conv}).

Backward. The chain rule through the two:
:math:`(\bar y, \bar Y, \bar w) = \texttt{tp\_conv.backward}(\bar M)`, then
:math:`\bar{\vec r}_e = \texttt{radial\_table.backward}(\bar w)_e`; returns
``(d_y, d_Y, d_edge_vec)``, one gradient per differentiable input in forward's order (the table, the
cutoffs and the edge list are constants).

Why an operation of its own: the per-edge weights :math:`w` (E × n_w; 5–250 MB per layer on a
thousand-atom cell) are needed only edge by edge. The compiled backend (``cpu.py``) evaluates
:math:`w_e` from the table inside the tensor-product loop and contracts :math:`\bar w_e` with
:math:`S'(x_e)` at once, so neither :math:`w` nor :math:`\bar w` exists as an array (``docs/kernels.md``,
"Tables fused into the convolution"). This reference materialises both: it is the specification.
"""

from __future__ import annotations

from nequip_np.kernels.radial_table import reference as _radial_table
from nequip_np.kernels.tp_conv import reference as _tp_conv


def composed(radial_table, tp_conv):
    """``(forward, backward)`` of this operation as one backend's two operations in sequence.

    The reference below is this with the reference modules; ``cuda.py`` uses it with the device ones.
    """

    def forward(y, Y, edge_vec, rmax_recip, table, src, dst, n_nodes, plan):
        """Returns ``(M (N, dim MID), cache)``."""
        w, table_cache = radial_table.forward(edge_vec, rmax_recip, table)
        M, tp_cache = tp_conv.forward(y, Y, w, src, dst, n_nodes, plan)
        return M, (table_cache, tp_cache)

    def backward(d_M, cache):
        """Returns ``(d_y, d_Y, d_edge_vec)``; ``d_edge_vec`` is (E, 3)."""
        table_cache, tp_cache = cache
        d_y, d_Y, d_w = tp_conv.backward(d_M, tp_cache)
        (d_vec,) = radial_table.backward(d_w, table_cache)
        return d_y, d_Y, d_vec

    return forward, backward


forward, backward = composed(_radial_table, _tp_conv)
