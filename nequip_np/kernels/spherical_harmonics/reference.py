r"""Edge spherical harmonics :math:`Y(\hat r)` (reference, the specification).

=====================  ============  ==============
symbol                 array         shape
=====================  ============  ==============
:math:`\vec r_e`       ``edge_vec``  (E, 3)
:math:`Y_{ek}`         ``Y``         (E, (l+1)^2)
=====================  ============  ==============

Forward: :math:`\hat u = \vec r/r` with :math:`r = \sqrt{\vec r\cdot\vec r}`, then the e3nn
"component" polynomials :math:`Y = P(\hat u)` (``nequip_np.so3.sh_polynomials``; derivation in
``docs/derivations/spherical_harmonics_and_cg.md``).

Backward: with :math:`g = \sum_k \bar Y_k \nabla_u P_k(\hat u)`, the chain rule through the
normalisation :math:`\partial \hat u/\partial \vec r = (I - \hat u\hat u^\top)/r` gives

.. math:: \bar{\vec r} = \big(g - \hat u\,(\hat u\cdot g)\big) / r .

Zero-length edges never reach this operation (the graph builder rejects coincident atoms).
"""

from __future__ import annotations

import numpy as np

from nequip_np.so3 import sh_polynomials_grad


def forward(edge_vec, l_max: int):
    r = np.sqrt(np.sum(edge_vec * edge_vec, axis=1))
    u = edge_vec / r[:, None]
    Y, dY = sh_polynomials_grad(l_max, u)
    return Y, (u, r, dY)


def backward(d_Y, cache):
    """Returns ``(d_edge_vec,)``."""
    u, r, dY = cache
    g = np.einsum("ek,ekc->ec", d_Y, dY)
    return ((g - u * np.sum(u * g, axis=1, keepdims=True)) / r[:, None],)
