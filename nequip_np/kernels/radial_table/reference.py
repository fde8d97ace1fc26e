r"""Tabulated radial functions: the radial-MLP output read from a quintic Hermite table (reference, the spec).

Why a table is exact enough. In every interaction layer :math:`k` the tensor-product weights of edge
:math:`e` are :math:`w_e = \mathrm{MLP}_k(b(x_e))` with :math:`x_e = r_e / r_{\max}(t_i, t_j)`: the
Bessel × envelope embedding (``kernels/edge_embedding``) depends on the edge only through
:math:`x_e` (its prefactor :math:`2\pi/r_{\max}^2` uses the *global* :math:`r_{\max}`, and per-pair
cutoffs enter only through :math:`x`), and the MLP is a fixed function. So
:math:`w^{(k)}(x): [0, 1] \to \mathbb R^{n_w}` is one smooth curve per layer — one table per layer
serves every species pair and every cutoff. Beyond the cutoff the envelope is zero and the bias-free
MLP with :math:`\mathrm{silu}(0) = 0` gives :math:`w = 0` exactly, so the table is zero for
:math:`x \ge 1`; the envelope's value and first two derivatives vanish at :math:`x = 1`, so the
tabulated function is C² there too.

Notation

==============================  ==============  ===================
symbol                          array           shape
==============================  ==============  ===================
:math:`\vec r_e`                ``edge_vec``    (E, 3)
:math:`1/r_{\max}(t_i, t_j)`    ``rmax_recip``  (E,)
:math:`T_{a,s,c}`               ``table``       (n, 3, n_w)
:math:`w_{ec}`                  ``w``           (E, n_w)
==============================  ==============  ===================

Table. Nodes :math:`x_a = a h`, :math:`h = 1/(n-1)`, :math:`a = 0 … n-1`, store the value and the
first two derivatives, scaled to the unit interval:
:math:`T_{a,0} = w(x_a)`, :math:`T_{a,1} = h\,w'(x_a)`, :math:`T_{a,2} = h^2 w''(x_a)` (exact
derivatives: forward-mode through the embedding and the MLP, ``model/radial_tables.py``).

Forward (quintic Hermite interpolation): with :math:`s = x/h`, interval :math:`a = \min(\lfloor s
\rfloor, n-2)`, :math:`t = s - a \in [0, 1]`,

.. math::

    S(x) = H_0(t) T_{a,0} + H_1(t) T_{a,1} + H_2(t) T_{a,2}
         + H_5(t) T_{a+1,0} + H_4(t) T_{a+1,1} + H_3(t) T_{a+1,2},

    H_0 = 1 - 10t^3 + 15t^4 - 6t^5,\quad H_1 = t - 6t^3 + 8t^4 - 3t^5,\quad
    H_2 = \tfrac12(t^2 - 3t^3 + 3t^4 - t^5),

    H_3 = \tfrac12(t^3 - 2t^4 + t^5),\quad H_4 = -4t^3 + 7t^4 - 3t^5,\quad H_5 = 10t^3 - 15t^4 + 6t^5 .

:math:`S` matches value, first and second derivative at every node from both sides: the interpolant
is C² on :math:`[0, 1]` (and, through the vanishing envelope, on :math:`[0, \infty)`); it reproduces
quintic polynomials exactly, and its error is :math:`O(h^6\,\max|w^{(6)}|)` in :math:`w` and
:math:`O(h^5)` in :math:`w'` (measured against the MLP in ``docs/kernels.md``).

Backward. Forces must be the exact derivative of the energy the table gives (not of the MLP's), so
the reverse pass differentiates :math:`S` itself: with :math:`\bar w` given,

.. math::

    \bar x_e = \sum_c \bar w_{ec}\, S_c'(x_e),\qquad S' = \frac1h \frac{dS}{dt},\qquad
    \bar{\vec r}_e = \bar x_e\, r_{\max}^{-1}\, \vec r_e / r_e .

Real arithmetic only: the table is for inference (energies, forces, stress); training differentiates
the MLP (``kernels/mlp``).
"""

from __future__ import annotations

import numpy as np

#: H_k(t) = sum_p _H[k, p] t^p (columns t^0 … t^5), in the order of the table reads below
_H = np.array(
    [
        [1, 0, 0, -10, 15, -6],  # H0: value at a
        [0, 1, 0, -6, 8, -3],  # H1: h·slope at a
        [0, 0, 0.5, -1.5, 1.5, -0.5],  # H2: h²·curvature at a
        [0, 0, 0, 0.5, -1.0, 0.5],  # H3: h²·curvature at a+1
        [0, 0, 0, -4, 7, -3],  # H4: h·slope at a+1
        [0, 0, 0, 10, -15, 6],  # H5: value at a+1
    ],
    dtype=np.float64,
)


def hermite_basis(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(H (…, 6), dH/dt (…, 6))`` of the quintic Hermite basis at ``t`` (order H0 … H5)."""
    t = np.asarray(t, dtype=np.float64)[..., None]
    powers = t ** np.arange(6)
    dpowers = np.arange(6) * t ** np.maximum(np.arange(6) - 1, 0)
    return powers @ _H.T, dpowers @ _H.T


def make_table(w: np.ndarray, dw: np.ndarray, d2w: np.ndarray) -> np.ndarray:
    """(n, 3, n_w) table from the values and exact x-derivatives of the function at the n nodes on [0, 1]."""
    w, dw, d2w = (np.asarray(a, dtype=np.float64) for a in (w, dw, d2w))
    if w.ndim != 2 or w.shape[0] < 2 or dw.shape != w.shape or d2w.shape != w.shape:
        raise ValueError(f"need three (n >= 2, n_w) arrays of one shape, got {w.shape}, {dw.shape}, {d2w.shape}")
    h = 1.0 / (w.shape[0] - 1)
    return np.ascontiguousarray(np.stack([w, h * dw, h * h * d2w], axis=1))


def _locate(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(interval a, local t, inside = x < 1) of every x ≥ 0."""
    s = np.minimum(x, 1.0) * (n - 1)
    a = np.minimum(s.astype(np.int64), n - 2)
    return a, s - a, x < 1.0


def _gather(table: np.ndarray, a: np.ndarray) -> np.ndarray:
    """(E, 6, n_w): the six table rows that interval a reads, in the order of ``_H``."""
    lo, hi = table[a], table[a + 1]
    return np.stack([lo[:, 0], lo[:, 1], lo[:, 2], hi[:, 2], hi[:, 1], hi[:, 0]], axis=1)


def evaluate(x: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(S(x) (E, n_w), S'(x) (E, n_w))``; both zero for x ≥ 1."""
    n = table.shape[0]
    a, t, inside = _locate(np.asarray(x, dtype=np.float64), n)
    H, dH = hermite_basis(t)
    rows = _gather(table, a)
    S = np.einsum("ek,ekc->ec", H, rows) * inside[:, None]
    dS = np.einsum("ek,ekc->ec", dH, rows) * ((n - 1) * inside)[:, None]
    return S, dS


def forward(edge_vec, rmax_recip, table):
    """Returns ``(w (E, n_w), cache)``; ``w`` has the table's dtype (float32 tables give float32 w)."""
    edge_vec = np.asarray(edge_vec)
    if np.iscomplexobj(edge_vec):
        raise TypeError("radial tables are for inference (real edge vectors); the training pass uses the radial MLP")
    r = np.sqrt(np.sum(edge_vec * edge_vec, axis=1))
    x = r * rmax_recip
    S, _ = evaluate(x, table.astype(np.float64))
    return S.astype(table.dtype), (edge_vec, r, x, rmax_recip, table)


def backward(d_w, cache):
    """Returns ``(d_edge_vec,)``, (E, 3) in float64 (the table and the cutoffs are constants)."""
    edge_vec, r, x, rmax_recip, table = cache
    _, dS = evaluate(x, table.astype(np.float64))
    d_x = np.sum(np.asarray(d_w, dtype=np.float64) * dS, axis=1)
    return ((d_x * rmax_recip / r)[:, None] * edge_vec,)
