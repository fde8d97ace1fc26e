r"""Tabulated radial function with the tensor-product convolution — numba.cuda (reference signatures).

What differs from the reference: nothing in the algebra; the two device operations run in sequence
(``radial_table/cuda.py`` then ``tp_conv/cuda.py``), so the arrays stay on the device and the (E, n_w)
weights are materialised there. A fused device kernel — each thread evaluating its edge's weights
from the table, as ``cpu.py`` does — is not written yet: on a GPU the weights array costs device
memory bandwidth, not the host's, and has not been measured to matter.
"""

from __future__ import annotations

from nequip_np.kernels.radial_table import cuda as radial_table
from nequip_np.kernels.tp_conv import cuda as tp_conv


def forward(y, Y, edge_vec, rmax_recip, table, src, dst, n_nodes, plan):
    """Returns ``(M (N, dim MID), cache)`` (device arrays)."""
    w, table_cache = radial_table.forward(edge_vec, rmax_recip, table)
    M, tp_cache = tp_conv.forward(y, Y, w, src, dst, n_nodes, plan)
    return M, (table_cache, tp_cache)


def backward(d_M, cache):
    """Returns ``(d_y, d_Y, d_edge_vec)``."""
    table_cache, tp_cache = cache
    d_y, d_Y, d_w = tp_conv.backward(d_M, tp_cache)
    (d_vec,) = radial_table.backward(d_w, table_cache)
    return d_y, d_Y, d_vec
