r"""Index operations shared by the reference kernels: gather along edges and scatter-sum to nodes.

``scatter_sum`` multiplies by the sparse (n × E) incidence matrix, which is deterministic, works for
real and complex arrays alike (the training pass runs in complex arithmetic, see
``docs/derivations/training_gradients.md``) and is ~20× faster than ``np.add.at``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse


def scatter_sum(values: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    r"""``out[i] = Σ_{e: index[e] = i} values[e]`` for ``values`` of shape (E, …)."""
    e = values.shape[0]
    flat = values.reshape(e, int(np.prod(values.shape[1:], dtype=np.int64)))
    incidence = scipy.sparse.csr_matrix(
        (np.ones(e, dtype=flat.dtype), (index, np.arange(e))), shape=(n, e)
    )
    return np.asarray(incidence @ flat).reshape((n,) + values.shape[1:])


def silu(x):
    r"""SiLU :math:`x\,\mathrm{sigmoid}(x)`, written with exp only so complex inputs work."""
    return x / (1.0 + np.exp(-x))


def silu_grad(x):
    r""":math:`\mathrm{silu}'(x) = s\,(1 + x(1 - s))` with :math:`s = \mathrm{sigmoid}(x)`."""
    s = 1.0 / (1.0 + np.exp(-x))
    return s * (1.0 + x * (1.0 - s))
