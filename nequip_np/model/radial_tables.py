r"""Radial tables of a model: each layer's radial-MLP output tabulated once, for fast inference.

:func:`build_radial_tables` evaluates :math:`w^{(k)}(x) = \mathrm{MLP}_k(b(x))` and its first two
x-derivatives exactly (forward mode, below) at ``n_points`` nodes on :math:`x \in [0, 1]` and packs
them into quintic Hermite tables (``kernels/radial_table/reference.py`` derives the interpolant and
why one table per layer serves every species pair). :meth:`NequIPModel.use_radial_tables` attaches
them; energies, forces and stress then come from the tables (forces are the exact derivative of the
tabulated energy), the training pass keeps the MLP.

Forward mode. Embedding :math:`b_n(x) = c\,\tfrac{k_n}{\pi} g(k_n x)\,u(x)` with
:math:`k_n = \pi w_n`, :math:`g(t) = \sin t / t`, :math:`g' = (t\cos t - \sin t)/t^2`,
:math:`g'' = -g - 2g'/t` (Taylor series for :math:`t < 0.1`, where those forms cancel), and the
product rule for :math:`u`. Through each MLP layer :math:`z = \alpha hW`:
:math:`\dot z = \alpha\dot h W`, :math:`\ddot z = \alpha\ddot h W`, then
:math:`h = \phi(z)`, :math:`\dot h = \phi'(z)\dot z`, :math:`\ddot h = \phi''(z)\dot z^2 + \phi'(z)\ddot z`
with :math:`\phi = \mathrm{silu}`, :math:`\phi' = s(1 + z(1-s))`, :math:`\phi'' = s(1-s)(2 + z(1-2s))`.

Size. ``n_points="auto"`` (the default) starts at ``DEFAULT_POINTS`` nodes and doubles them until
the tables' own error estimate — interval midpoints, where the interpolation error peaks, against
the exact MLP — is at most ``AUTO_TOLERANCE`` in dw/dx; forces then differ from the MLP's by well
under 1e-7 relative in float64 (error per size measured in ``docs/kernels.md``).

Example:
    >>> import numpy as np
    >>> from nequip_np import NequIPModel
    >>> model = NequIPModel(type_names=["H", "C"], r_max=3.0, num_layers=1, l_max=1, num_features=4,
    ...                     avg_num_neighbors=3.0, model_dtype="float64")
    >>> tables = build_radial_tables(model, n_points=64)
    >>> len(tables.tables), tables.tables[0].shape[:2]
    (1, (64, 3))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nequip_np.kernels.edge_embedding.reference import _poly_coeffs
from nequip_np.kernels.plan import mlp_alphas as _alphas
from nequip_np.kernels.radial_table.reference import evaluate, make_table

#: nodes per table (the force error vs the MLP at this size is in docs/kernels.md)
DEFAULT_POINTS = 512
#: ``n_points="auto"``: from DEFAULT_POINTS, doubled until the midpoint estimate of the relative
#: error of dw/dx is at most this, up to MAX_POINTS. Forces err by up to ~250× this estimate (4-layer
#: benchmark models, benchmarks/results/radial_table_error.json), so 1e-10 keeps them ≲ 3e-8 relative;
#: at 512 nodes those models are at ~5e-13
AUTO_TOLERANCE = 1e-10
MAX_POINTS = 16384


def _sinc_derivs(t):
    """g(t) = sin t / t and its first two derivatives, accurate at small t."""
    t = np.asarray(t, dtype=np.float64)
    small = np.abs(t) < 0.1
    ts = np.where(small, 1.0, t)  # safe denominators; the small-t entries are replaced below
    sn, cs = np.sin(ts), np.cos(ts)
    g = sn / ts
    g1 = (ts * cs - sn) / ts**2
    g2 = -g - 2.0 * g1 / ts
    t2 = t * t
    g_s = 1 - t2 / 6 + t2**2 / 120 - t2**3 / 5040 + t2**4 / 362880
    g1_s = t * (-1 / 3 + t2 / 30 - t2**2 / 840 + t2**3 / 45360)
    g2_s = -1 / 3 + t2 / 10 - t2**2 / 168 + t2**3 / 6480
    return np.where(small, g_s, g), np.where(small, g1_s, g1), np.where(small, g2_s, g2)


def _envelope_derivs(x, p):
    """u(x), u'(x), u''(x) of the polynomial envelope (zero for x ≥ 1)."""
    a, b, c = _poly_coeffs(p)
    inside = x < 1.0
    xs = np.where(x > 0, x, 1.0)
    pw = lambda k: np.where(x > 0, xs**k, 1.0 * (k == 0))
    u = 1.0 - a * pw(p) + b * pw(p + 1) - c * pw(p + 2)
    du = -p * a * pw(p - 1) + (p + 1) * b * pw(p) - (p + 2) * c * pw(p + 1)
    d2u = -p * (p - 1) * a * pw(p - 2) + (p + 1) * p * b * pw(p - 1) - (p + 2) * (p + 1) * c * pw(p)
    return u * inside, du * inside, d2u * inside


def embedding_derivs(x, bessel_w, p, prefactor):
    """(b, b', b'') each (n, B): the edge embedding of ``kernels/edge_embedding`` as a function of x."""
    x = np.asarray(x, dtype=np.float64)[:, None]
    k = np.pi * np.asarray(bessel_w, dtype=np.float64)[None, :]
    g, g1, g2 = _sinc_derivs(k * x)
    u, du, d2u = (v[:, None] for v in _envelope_derivs(x[:, 0], float(p)))
    f, f1, f2 = prefactor * k / np.pi * g, prefactor * k**2 / np.pi * g1, prefactor * k**3 / np.pi * g2
    return f * u, f1 * u + f * du, f2 * u + 2.0 * f1 * du + f * d2u


def mlp_derivs(h, dh, d2h, weights, alphas):
    """Forward-mode value, first and second derivative through the bias-free SiLU MLP."""
    for k, (W, alpha) in enumerate(zip(weights, alphas)):
        W = alpha * np.asarray(W, dtype=np.float64)
        z, dz, d2z = h @ W, dh @ W, d2h @ W
        if k == len(weights) - 1:
            return z, dz, d2z
        s = 1.0 / (1.0 + np.exp(-z))
        g1 = s * (1.0 + z * (1.0 - s))
        g2 = s * (1.0 - s) * (2.0 + z * (1.0 - 2.0 * s))
        h, dh, d2h = z * s, g1 * dz, g2 * dz * dz + g1 * d2z
    return h, dh, d2h


@dataclass
class RadialTables:
    """One (n_points, 3, n_w) float64 table per layer, and copies of the parameters it was built from.

    Attributes:
        tables: per layer, the quintic Hermite table (``kernels/radial_table/reference.py``).
        n_points: nodes per table.
        source: copies of the parameter arrays that determine the tables (checked before every use).
        error: measured at the interval midpoints (where the interpolation error peaks) against the
            exact MLP, over all layers: ``{"w": max|S − w| / max|w|, "dw": max|S' − w'| / max|w'|}``.
    """

    tables: list
    n_points: int
    source: dict
    error: dict
    requested: int | str = 0  # what build_radial_tables was asked for ("auto" or n_points)
    _cast: dict = field(default_factory=dict, repr=False)

    def layer(self, k: int, dtype) -> np.ndarray:
        """Layer k's table in ``dtype`` (the model dtype; cast once and kept)."""
        key = (k, np.dtype(dtype).name)
        if key not in self._cast:
            self._cast[key] = np.ascontiguousarray(self.tables[k], dtype=dtype)
        return self._cast[key]

    def check(self, params: dict, buffers: dict) -> None:
        """Raise if a parameter the tables depend on has changed since they were built."""
        for name, value in self.source.items():
            current = params[name] if name in params else buffers[name]
            if current.shape != value.shape or not np.array_equal(current, value):
                raise RuntimeError(
                    f"parameter {name!r} changed since the radial tables were built; call "
                    "model.use_radial_tables() again (or model.use_radial_tables(None) to use the MLP)"
                )

    def __repr__(self) -> str:
        return (
            f"RadialTables(layers={len(self.tables)}, n_points={self.n_points}, "
            f"error_w={self.error['w']:.1e}, error_dw={self.error['dw']:.1e})"
        )


def build_radial_tables(model, n_points: int | str = "auto", params: dict | None = None) -> RadialTables:
    """Tabulate every layer's radial-MLP output of ``model`` (float64) on ``n_points`` nodes of x ∈ [0, 1].

    ``n_points="auto"``: ``DEFAULT_POINTS`` nodes, doubled while the tables' own error estimate
    exceeds ``AUTO_TOLERANCE``; a ``ValueError`` if ``MAX_POINTS`` do not reach it (use the MLP then).
    """
    if n_points == "auto":
        n = DEFAULT_POINTS
        while True:
            tables = build_radial_tables(model, n, params)
            if tables.error["dw"] <= AUTO_TOLERANCE:
                tables.requested = "auto"
                return tables
            if n >= MAX_POINTS:
                raise ValueError(
                    f"radial tables of {n} nodes still differ from the radial MLP by "
                    f"{tables.error['dw']:.1e} (relative, dw/dx) > {AUTO_TOLERANCE:.0e}: this "
                    "model's radial functions are too rough to tabulate; evaluate the MLP "
                    "(no radial table)"
                )
            n *= 2

    if isinstance(n_points, str) or int(n_points) != n_points or n_points < 8:
        raise ValueError(f"n_points must be 'auto' or an integer >= 8, got {n_points!r}")
    n_points = int(n_points)
    params = model.params if params is None else params
    c = model.config
    get = lambda name: params[name] if name in params else model.buffers[name]
    x = np.linspace(0.0, 1.0, n_points)
    mid = x[:-1] + 0.5 / (n_points - 1)
    emb_args = (get("bessel_weights"), c.polynomial_cutoff_p, 2.0 * np.pi / c.r_max**2)
    b, b_mid = embedding_derivs(x, *emb_args), embedding_derivs(mid, *emb_args)
    tables, source = [], {"bessel_weights": np.array(get("bessel_weights"), copy=True)}
    error = {"w": 0.0, "dw": 0.0}
    for layer in model.plan.layers:
        names = [f"layer{layer.index}.radial.{m}" for m in range(len(layer.radial_dims) - 1)]
        weights = [params[name] for name in names]
        w, dw, d2w = mlp_derivs(*b, weights, _alphas(layer.radial_dims))
        tables.append(make_table(w, dw, d2w))
        source.update({name: np.array(params[name], copy=True) for name in names})
        w_mid, dw_mid, _ = mlp_derivs(*b_mid, weights, _alphas(layer.radial_dims))
        S, dS = evaluate(mid, tables[-1])
        error["w"] = max(error["w"], float(np.abs(S - w_mid).max() / max(np.abs(w).max(), 1e-300)))
        error["dw"] = max(error["dw"], float(np.abs(dS - dw_mid).max() / max(np.abs(dw).max(), 1e-300)))
    return RadialTables(tables=tables, n_points=n_points, source=source, error=error, requested=n_points)
