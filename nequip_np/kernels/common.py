r"""Index operations shared by the reference kernels: gather along edges and scatter-sum to nodes.

``scatter_sum`` multiplies by the sparse (n × E) incidence matrix, which is deterministic, works for
real and complex arrays alike (the training pass runs in complex arithmetic, see
``docs/derivations/training_gradients.md``) and is ~20× faster than ``np.add.at``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

#: up to this many columns, float64/complex128 scatters use one ``np.bincount`` per column (real and
#: imaginary part): no sparse matrix to build (0.08-0.1 ms per small call, against 0.01-0.03 ms;
#: docs/benchmarks.md, training); the same additions in the same order, so bitwise the same sums.
BINCOUNT_COLUMNS = 16


def scatter_sum(values: np.ndarray, index: np.ndarray, n: int) -> np.ndarray:
    r"""``out[i] = Σ_{e: index[e] = i} values[e]`` for ``values`` of shape (E, …)."""
    e = values.shape[0]
    flat = values.reshape(e, int(np.prod(values.shape[1:], dtype=np.int64)))
    if flat.shape[1] <= BINCOUNT_COLUMNS and flat.dtype in (np.float64, np.complex128):
        return _scatter_bincount(flat, np.asarray(index), n).reshape((n,) + values.shape[1:])
    incidence = scipy.sparse.csr_matrix((np.ones(e, dtype=flat.dtype), (index, np.arange(e))), shape=(n, e))
    return np.asarray(incidence @ flat).reshape((n,) + values.shape[1:])


def _scatter_bincount(flat, index, n):
    """``scatter_sum`` of (E, k) float64/complex128 rows by bincount, in edge order within each row."""
    if index.size and (index.min() < 0 or index.max() >= n):
        raise ValueError(f"scatter_sum: index values must lie in [0, {n}), got [{index.min()}, {index.max()}]")
    out = np.empty((n, flat.shape[1]), dtype=flat.dtype)
    for j in range(flat.shape[1]):
        col = flat[:, j]
        if flat.dtype == np.complex128:
            out[:, j].real = np.bincount(index, weights=col.real, minlength=n)
            out[:, j].imag = np.bincount(index, weights=col.imag, minlength=n)
        else:
            out[:, j] = np.bincount(index, weights=col, minlength=n)
    return out


def _dual_parts(x):
    r"""``(re, im)`` when x is complex with an imaginary part that is a complex-step tangent.

    In the training pass every forward quantity is :math:`p + i h \dot p` with :math:`h = 10^{-20}`,
    so :math:`f(p + ih\dot p) = f(p) + ih\dot p f'(p)` to :math:`O(h^2)`: evaluating that in real
    arithmetic is exact to rounding and avoids complex ``exp`` (≈5× slower). Anything else
    (real input, or a large imaginary part) returns None and takes the plain complex path.
    """
    if not np.iscomplexobj(x):
        return None
    re, im = x.real, x.imag
    if im.size and np.max(np.abs(im)) > 1e-8 * (1.0 + np.max(np.abs(re))):
        return None
    return re, im


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def silu(x):
    r"""SiLU :math:`x\,\mathrm{sigmoid}(x)`, written with exp only so complex inputs work."""
    parts = _dual_parts(x)
    if parts is not None:
        re, im = parts
        s = _sigmoid(re)
        return re * s + 1j * im * (s * (1.0 + re * (1.0 - s)))
    return x / (1.0 + np.exp(-x))


def silu_grad(x):
    r""":math:`\mathrm{silu}'(x) = s\,(1 + x(1 - s))` with :math:`s = \mathrm{sigmoid}(x)`;
    :math:`\mathrm{silu}''(x) = s(1-s)(2 + x(1 - 2s))` for the complex-step tangent."""
    parts = _dual_parts(x)
    if parts is not None:
        re, im = parts
        s = _sigmoid(re)
        return s * (1.0 + re * (1.0 - s)) + 1j * im * (s * (1.0 - s) * (2.0 + re * (1.0 - 2.0 * s)))
    s = 1.0 / (1.0 + np.exp(-x))
    return s * (1.0 + x * (1.0 - s))
