r"""Gate nonlinearity (e3nn ``Gate``, normalize2mom activations) — reference, the specification.

The conv output :math:`z` (sorted layout O) is split into scalars :math:`s`, gates :math:`g` and gated
irreps :math:`v` (column index arrays from the plan). With :math:`\phi_+ = c_{\rm silu}\,\mathrm{silu}`
(even) and :math:`\phi_- = c_{\tanh}\tanh` (odd, keeps parity), constants :math:`c` making
:math:`\langle\phi(z)^2\rangle = 1` for :math:`z\sim N(0,1)`:

.. math:: \text{out} = \big[\ \phi_{p}(s),\ \ \phi_{p_g}(g)_{u(c)}\, v_c\ \big].

Backward: :math:`\bar s = \phi'(s)\bar o_s`, :math:`\bar v_c = \phi(g)_{u(c)}\bar o_c`,
:math:`\bar g_u = \phi'(g_u)\sum_{c: u(c)=u} v_c\bar o_c`.
"""

from __future__ import annotations

import numpy as np

from nequip_np.conventions import NORMALIZE2MOM_SILU, NORMALIZE2MOM_TANH
from nequip_np.kernels.common import silu, silu_grad


def act(x, parity):
    """Normalised SiLU where parity = +1, normalised tanh where parity = −1 (broadcast over rows)."""
    return np.where(parity > 0, NORMALIZE2MOM_SILU * silu(x), NORMALIZE2MOM_TANH * np.tanh(x))


def act_grad(x, parity):
    return np.where(parity > 0, NORMALIZE2MOM_SILU * silu_grad(x), NORMALIZE2MOM_TANH * (1.0 - np.tanh(x) ** 2))


def forward(z, plan):
    s = z[:, plan.scalar_cols]
    g = z[:, plan.gate_cols]
    v = z[:, plan.gated_cols]
    gate_parity = np.full(g.shape[1], plan.gate_parity)
    phi_g = act(g, gate_parity)
    out = np.concatenate([act(s, plan.scalar_parity), phi_g[:, plan.gated_copy] * v], axis=1)
    return out, (s, g, v, phi_g, gate_parity, z.shape, plan)


def backward(d_out, cache):
    """Returns ``(d_z,)``."""
    s, g, v, phi_g, gate_parity, z_shape, plan = cache
    ns = s.shape[1]
    d_z = np.zeros(z_shape, dtype=np.result_type(d_out, s))
    d_z[:, plan.scalar_cols] = d_out[:, :ns] * act_grad(s, plan.scalar_parity)
    d_o = d_out[:, ns:]
    d_z[:, plan.gated_cols] = d_o * phi_g[:, plan.gated_copy]
    if g.shape[1]:
        d_phi = np.zeros(g.shape, dtype=d_z.dtype)
        np.add.at(d_phi.T, plan.gated_copy, (d_o * v).T)
        d_z[:, plan.gate_cols] = d_phi * act_grad(g, gate_parity)
    return (d_z,)
