r"""Bias-free scalar MLP (radial network and readout) — reference, the specification.

=====================  ==============  ==================
symbol                 array           shape
=====================  ==============  ==================
:math:`h^{(0)}`        ``x``           (n, d_0)
:math:`W^{(k)}`        ``weights[k]``  (d_k, d_{k+1})
:math:`\alpha_k`       ``alphas[k]``   scalar
=====================  ==============  ==================

Forward (nequip ``ScalarMLPFunction``: weights U(−√3, √3), :math:`\alpha_k = g_k/\sqrt{d_k}` with gain
:math:`g_0 = 1`, :math:`g_{k>0} = \sqrt 2` when there is a nonlinearity):

.. math:: z^{(k)} = h^{(k)} (\alpha_k W^{(k)}),\qquad h^{(k+1)} = \phi(z^{(k)})\ (k < L),\qquad
          \text{out} = z^{(L)} .

Backward: :math:`\bar W^{(k)} = \alpha_k\, h^{(k)\top}\bar z^{(k)}`,
:math:`\bar h^{(k)} = \alpha_k\,\bar z^{(k)} W^{(k)\top}`,
:math:`\bar z^{(k-1)} = \phi'(z^{(k-1)})\odot\bar h^{(k)}`.
The matrix products go through BLAS (``@``), which is where NequIP spends most of its flops.
"""

from __future__ import annotations

import numpy as np

from nequip_np.kernels.common import _sigmoid, silu, silu_grad


def _softplus(x):
    return np.log1p(np.exp(x))


def _mish(x):
    return x * np.tanh(_softplus(x))


def _mish_grad(x):
    t = np.tanh(_softplus(x))
    return t + x * (1.0 - t * t) * _sigmoid(x)


def _gelu(x):
    from scipy.special import erf  # complex-capable, needed for the training pass

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _gelu_grad(x):
    from scipy.special import erf

    return 0.5 * (1.0 + erf(x / np.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


#: nequip's readout nonlinearities (``nn/mlp.py``): value and derivative, all analytic (complex-safe).
ACTIVATIONS = {
    "silu": (silu, silu_grad),
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
    "mish": (_mish, _mish_grad),
    "gelu": (_gelu, _gelu_grad),
    "ssp": (lambda x: _softplus(x) - np.log(2.0), _sigmoid),
    "softplus": (_softplus, _sigmoid),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1.0 - _sigmoid(x))),
}


def forward(x, weights, alphas, nonlinearity="silu"):
    act = ACTIVATIONS[nonlinearity][0] if nonlinearity else None
    hs, zs, h = [], [], x
    for k, (w, a) in enumerate(zip(weights, alphas)):
        hs.append(h)
        z = h @ (w * a)
        zs.append(z)
        h = act(z) if (k < len(weights) - 1 and act is not None) else z
    return h, (hs, zs, weights, alphas, nonlinearity)


def backward(d_out, cache, weight_grads: bool = True):
    """Returns ``(d_x, [d_W0, d_W1, …])``; with ``weight_grads=False`` the d_W are None (not computed:
    forces need only d_x, and the weight gradients cost as much as d_x)."""
    hs, zs, weights, alphas, nonlinearity = cache
    grad = ACTIVATIONS[nonlinearity][1] if nonlinearity else None
    d_ws = [None] * len(weights)
    dz = d_out
    for k in range(len(weights) - 1, -1, -1):
        if weight_grads:
            d_ws[k] = alphas[k] * (hs[k].T @ dz)
        dh = dz @ (weights[k].T * alphas[k])
        if k > 0:
            dz = dh * grad(zs[k - 1]) if grad is not None else dh
    return dh, d_ws
