r"""Per-type energy scale and shift (nequip's ``PerTypeScaleShift``) — reference, the specification.

=====================  ===============  ==================
symbol                 array            shape
=====================  ===============  ==================
:math:`\tilde E_i`     ``e_tilde``      (N, 1), model dtype
:math:`t_i`            ``types``        (N,)
:math:`\sigma_t`       ``scales``       (T,) or (1,): one value for all types
:math:`\mu_t`          ``shifts``       (T,) or (1,)
:math:`E_i`            ``atomic``       (N,), float64 (complex128 in the training pass)
=====================  ===============  ==================

Forward, in float64 whatever the model dtype: :math:`E_i = \mu_{t_i} + \sigma_{t_i}\tilde E_i`.

Backward: :math:`\bar{\tilde E}_i = \sigma_{t_i}\bar E_i` (cast back to the model dtype),
:math:`\bar\sigma_t = \sum_{i: t_i = t}\bar E_i\tilde E_i`, :math:`\bar\mu_t = \sum_{i: t_i = t}\bar E_i`
(a single shared value sums over every atom).
"""

from __future__ import annotations

import numpy as np

from nequip_np.kernels.glue import reference as glue


def _index(types, values):
    return types if values.shape[0] > 1 else np.zeros_like(types)


def _per_type_sum(d, types, n, xp):
    return xp.scatter_sum(d, types, n) if n > 1 else xp.total(d)


def forward(e_tilde, types, scales, shifts, xp=glue):
    """Returns ``(atomic, cache)``. ``xp``: the glue namespace the arithmetic runs in (``glue/cuda.py``
    for ``backend="cuda"``; the same expressions)."""
    e = xp.cast(e_tilde[:, 0], np.result_type(np.float64, e_tilde.dtype))  # (N,) float64
    scale = xp.gather_rows(scales, _index(types, scales))  # (N,)
    shift = xp.gather_rows(shifts, _index(types, shifts))
    return xp.add(shift, xp.mul(scale, e)), (e, scale, types, scales.shape[0], shifts.shape[0], e_tilde.dtype)


def backward(d_atomic, cache, xp=glue):
    """Returns ``(d_e_tilde, d_scales, d_shifts)``."""
    e, scale, types, n_scales, n_shifts, dtype = cache
    d_e_tilde = xp.cast(xp.column(xp.mul(d_atomic, scale)), dtype)  # back to the readout's dtype
    return (
        d_e_tilde,
        _per_type_sum(xp.mul(d_atomic, e), types, n_scales, xp),
        _per_type_sum(d_atomic, types, n_shifts, xp),
    )
