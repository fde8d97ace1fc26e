r"""The small steps the model takes *between* operations — reference (NumPy), shared by numpy and numba.

Casts, sums of branches, row scalings, gathers and scatters by atom type, and the final reduction of
:math:`\partial E/\partial\vec r_e` to forces and strain derivative. Each function is exactly the NumPy
expression ``model/nequip.py`` used inline before the model routed them through ``ops.glue``, so the
numpy and numba backends compute bit for bit what they did. The point of the namespace is
``backend="cuda"``: ``glue/cuda.py`` implements the same functions on device arrays, so a model call
keeps every intermediate on the device (``docs/cuda.md#device-resident-arrays-across-layers-and-md-steps``).

Array placement (identity here):

=============  ==========================================================================
``upload``     a per-call input (edge vectors) → backend array
``resident``   a value reused across calls (parameters, buffers, graph arrays) → backend array
``to_host``    backend array → NumPy (the energies / forces / gradients handed back)
=============  ==========================================================================
"""

from __future__ import annotations

import numpy as np

from nequip_np.kernels.common import scatter_sum

__all__ = [
    "upload",
    "resident",
    "to_host",
    "cast",
    "gather_rows",
    "column",
    "add",
    "mul",
    "zeros",
    "ones_like",
    "scatter_sum",
    "total",
    "forces_and_strain",
]


def upload(a):
    return a


def resident(a):
    return a


def to_host(a):
    return a


def cast(a, dtype):
    """``a`` converted to ``dtype`` (a new array)."""
    return np.asarray(a).astype(dtype)


def gather_rows(a, index):
    """``a[index]`` along the first axis."""
    return a[index]


def column(a):
    """(N,) → (N, 1)."""
    return a[:, None]


def add(a, b):
    """``a + b``; ``a`` may be the scalar 0.0 that starts a sum, shapes (R, C) and (R, 1) broadcast."""
    return a + b


def mul(a, b):
    """``a * b``; shapes (R, C) and (R, 1) broadcast."""
    return a * b


def zeros(shape, dtype):
    return np.zeros(shape, dtype=dtype)


def ones_like(a):
    return np.ones_like(a)


def total(a):
    """``Σ a`` as a (1,) array."""
    return np.sum(a, keepdims=True)


def forces_and_strain(d_vec, edge_vec, dst, src, edge_frame, n, n_frames):
    r"""Forces :math:`F_i = \sum_{e: i(e)=i} g_e - \sum_{e: j(e)=i} g_e` and, per frame,
    :math:`\partial E/\partial\varepsilon` before symmetrisation, :math:`\sum_e \vec r_e\otimes g_e`
    (``docs/derivations/forces_and_stress.md``); float64, real part of :math:`g`."""
    d_vec = np.real(d_vec).astype(np.float64)
    forces = scatter_sum(d_vec, dst, n) - scatter_sum(d_vec, src, n)
    outer = np.einsum("ea,eb->eab", edge_vec, d_vec)
    return forces, scatter_sum(outer, edge_frame, n_frames)
