r"""Ziegler–Biersack–Littmark (ZBL) screened nuclear repulsion, an optional pair prior — reference.

Per directed edge :math:`e = (i \leftarrow j)` with :math:`\rho_e = 1/r_{\max}` (per edge type):

.. math::

    E_e = \tfrac12 k_e \frac{Z_i Z_j}{r}\,\phi(x)\,u(\rho_e r),\qquad
    x = \frac{(Z_i^{0.23} + Z_j^{0.23})\,r}{0.46850},\qquad
    \phi(x) = \sum_k c_k e^{-d_k x},

with the universal screening function's four :math:`(c_k, d_k)` and the model's polynomial envelope
:math:`u`. The energy of edge e is added to the centre atom i; both directions of a pair together give
the full pair energy. Backward: :math:`\bar{\vec r} = \bar E_e\, \partial_r E_e\, \vec r/r` with

.. math:: \partial_r E_e = \tfrac12 k_e Z_i Z_j\Big[\frac{\phi'(x)\,x' u + \phi\,\rho u'}{r} - \frac{\phi u}{r^2}\Big].
"""

from __future__ import annotations

import numpy as np

from nequip_np.kernels.edge_embedding.reference import cutoff, cutoff_grad

_C = np.array([0.02817, 0.28022, 0.50986, 0.18175])
_D = np.array([0.20162, 0.40290, 0.94229, 3.19980])


def forward(edge_vec, z_center, z_neighbor, rmax_recip, p, ke):
    r = np.sqrt(np.sum(edge_vec * edge_vec, axis=1))
    dx_dr = (z_center**0.23 + z_neighbor**0.23) / 0.46850
    x = dx_dr * r
    expo = np.exp(-_D[None, :] * x[:, None])
    phi = expo @ _C
    dphi = -(expo * _D[None, :]) @ _C
    u = cutoff(r * rmax_recip, p)
    du = cutoff_grad(r * rmax_recip, p) * rmax_recip
    pref = 0.5 * ke * z_center * z_neighbor
    energy = pref * phi * u / r
    d_energy_dr = pref * ((dphi * dx_dr * u + phi * du) / r - phi * u / r**2)
    return energy, (edge_vec, r, d_energy_dr)


def backward(d_energy, cache):
    """Returns ``(d_edge_vec,)``."""
    edge_vec, r, d_energy_dr = cache
    return ((d_energy * d_energy_dr / r)[:, None] * edge_vec,)
