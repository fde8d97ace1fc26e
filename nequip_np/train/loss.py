r"""The training loss and its exact parameter gradient, forces and stress terms included.

Loss for a batch of F frames (nequip's ``EnergyForceStressLoss`` and ``MetricsManager``):

.. math::

    L = c_e\,\frac1F\sum_f\rho_e\Big(\frac{E_f - E_f^*}{N_f}\Big)
      + c_E\,\frac1F\sum_f\rho_E(E_f - E_f^*)
      + c_F\,\frac{1}{3N}\sum_{i,a}\rho_F(F_{ia} - F^*_{ia})
      + c_\sigma\,\frac{1}{9F_\sigma}\sum_{f\in\sigma}\sum_{ab}\rho_\sigma(\sigma_{f,ab} - \sigma^*_{f,ab}),

coefficients normalised to sum to one (``per_atom_energy``: :math:`c_e`, ``total_energy``:
:math:`c_E`, ``forces``, ``stress``). The penalty :math:`\rho` is the same for every term:

* ``"mse"``: :math:`\rho(x) = x^2`;
* ``"huber"``: :math:`\rho(x) = \tfrac12 x^2` if :math:`|x| < \delta`, else
  :math:`\delta(|x| - \tfrac12\delta)` — nequip's ``HuberLoss`` (torch's, with its ½), ``delta`` in
  the units of the term (eV/atom, eV, eV/Å, eV/Å³), per term;
* ``"mae"``: :math:`\rho(x) = |x|`.

With ``per_type_forces`` coefficients :math:`w_t` (nequip's ``per_type_forces_coeffs``) the force
term becomes the weighted mean of per-type means over the types present in the batch,
:math:`\sum_{t\in B} w_t\,\overline{\rho_F}_t / \sum_{t\in B} w_t`, where
:math:`\overline{\rho_F}_t` averages over the :math:`3N_t` force components of type-t atoms.
Stress enters only for periodic frames with finite stress labels (nequip's ``ignore_nan``).

:func:`loss_from_residuals` holds this arithmetic and the adjoints
:math:`\partial L/\partial E_f,\ \partial L/\partial F,\ \partial L/\partial\sigma_f`
(:math:`\rho'(x) = 2x`, :math:`x` or :math:`\delta\,\mathrm{sign}\,x` inside/outside the Huber
region, :math:`\mathrm{sign}\,x`); :func:`loss_terms` applies it to a batch; :func:`loss_and_grad`
runs the model passes. The force and stress terms need the mixed second derivative
:math:`\partial^2 E/\partial\theta\,\partial R`. With the residual adjoints
:math:`a_f = \partial L/\partial E_f`, :math:`W = \partial L/\partial F`, :math:`Q_f =
\mathrm{sym}(\partial L/\partial\sigma_f)/V_f` held fixed,

.. math:: \nabla_\theta L = \nabla_\theta\Big[\sum_f a_f E_f + T\Big],\qquad
          T = \frac{d}{dt}\,E\big(\vec r_e + t\,\dot r_e\big)\Big|_{t=0},\quad
          \dot r_e = W_{i(e)} - W_{j(e)} + \vec r_e Q_{f(e)} .

This holds for any penalty: only the adjoints depend on :math:`\rho`.
``T`` (a directional derivative of E along the force residual and the stress strain) and its
parameter gradient are obtained in ONE forward + reverse pass of the hand-written kernels run in
complex arithmetic: edge vectors :math:`\vec r + i h \dot r` carry the tangent, and the reverse pass
is seeded with :math:`a_f - i/h`, so that the real part of the parameter adjoint is exactly
:math:`a_f\,\partial E_f/\partial\theta + \partial T/\partial\theta` up to :math:`O(h^2)`
(:math:`h = 10^{-20}`: 10⁻⁴⁰ relative). Derivation, and why this equals the tangent/reverse-over-tangent
scheme operation by operation: ``docs/derivations/training_gradients.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from nequip_np.kernels.common import scatter_sum
from nequip_np.model.nequip import forces_and_stress

#: complex-step size; the truncation error is O(h²) relative, no subtractive cancellation occurs.
COMPLEX_STEP = 1e-20

#: the complex pass keeps the radial MLP's activations and weights ``w`` (E × n_w per layer) when they
#: take at most this many bytes, and recomputes them in the reverse pass above it (``low_memory``).
#: Keeping them saves one radial-MLP forward per layer: 7% of a 5-frame aspirin step
#: (``docs/benchmarks.md``, training step). 256 MB is 4096 edges at l_max 2, 32 features, 4 layers (13 aspirin
#: frames; 64 KB per edge) and 15 900 edges at l_max 1, 16 features, 3 layers.
LOW_MEMORY_BYTES = 256 * 2**20

#: loss terms, in the order of LossCoefficients' positional fields
TERMS = ("per_atom_energy", "forces", "stress", "total_energy")
PENALTIES = ("mse", "huber", "mae")


@dataclass
class LossCoefficients:
    """Term weights (normalised to sum 1), the penalty and its options.

    Args:
        per_atom_energy, forces, stress, total_energy: term coefficients (>= 0).
        loss: ``"mse"``, ``"huber"`` or ``"mae"`` (every term).
        huber_delta: Huber's :math:`\\delta`, one number or ``{term: number}``.
        per_type_forces: per-type force weights :math:`w_t` indexed by type (nequip's
            ``per_type_forces_coeffs``), or None for one mean over all force components.
    """

    per_atom_energy: float = 1.0
    forces: float = 1.0
    stress: float = 0.0
    total_energy: float = 0.0
    loss: str = "mse"
    huber_delta: float | dict = 0.01
    per_type_forces: tuple | None = field(default=None)

    @property
    def energy(self) -> float:
        """Weight of all energy terms together (per-atom and total)."""
        return self.per_atom_energy + self.total_energy

    def normalized(self) -> LossCoefficients:
        w = [getattr(self, t) for t in TERMS]
        if sum(w) <= 0 or min(w) < 0:
            raise ValueError(f"loss coefficients must be non-negative with a positive sum, got {self}")
        if self.loss not in PENALTIES:
            raise ValueError(f"loss must be one of {list(PENALTIES)}, got {self.loss!r}")
        if self.per_type_forces is not None and min(self.per_type_forces) <= 0:
            raise ValueError(f"per_type_forces weights must be > 0, got {self.per_type_forces}")
        return replace(self, **{t: x / sum(w) for t, x in zip(TERMS, w)})

    def is_plain(self) -> bool:
        """Per-atom energy, forces and stress MSE only (what the MPI sharding rule assumes)."""
        return self.loss == "mse" and self.total_energy == 0 and self.per_type_forces is None

    def delta(self, term: str) -> float:
        d = self.huber_delta
        return float(d[term] if isinstance(d, dict) else d)


def penalty(x: np.ndarray, loss: str, delta: float = 1.0):
    r"""Elementwise :math:`\rho(x)` and :math:`\rho'(x)` of the named penalty.

    Example:
        >>> rho, drho = penalty(np.array([-3.0, 0.5]), "huber", delta=1.0)
        >>> rho.tolist(), drho.tolist()
        ([2.5, 0.125], [-1.0, 0.5])
    """
    if loss == "mse":
        return x * x, 2.0 * x
    if loss == "mae":
        return np.abs(x), np.sign(x)
    if loss == "huber":
        ax = np.abs(x)
        inside = ax < delta
        return np.where(inside, 0.5 * x * x, delta * (ax - 0.5 * delta)), np.where(inside, x, delta * np.sign(x))
    raise ValueError(f"loss must be one of {list(PENALTIES)}, got {loss!r}")


def _mean_term(res, c, term):
    """Mean penalty of ``res`` and its gradient with respect to ``res``."""
    rho, drho = penalty(res, c.loss, c.delta(term))
    return float(np.mean(rho)), drho / res.size


def _per_type_force_term(res, types, c):
    """nequip's per-type weighted mean over the types present (``per_type_forces_coeffs``)."""
    value, grad, wsum, parts = 0.0, np.zeros_like(res), 0.0, {}
    for t, w in enumerate(c.per_type_forces):
        sel = types == t
        if not sel.any():
            continue
        m, g = _mean_term(res[sel], c, "forces")
        value, wsum, parts[t] = value + w * m, wsum + w, m
        grad[sel] = w * g
    return value / wsum, grad / wsum, parts


def loss_from_residuals(coeffs: LossCoefficients, de, natoms, df=None, types=None, ds=None):
    r"""Loss value, components and adjoints from prediction − label residuals.

    Args:
        coeffs: term weights and penalty (normalised here).
        de: (F,) total-energy residuals, or None; natoms: (F,) atoms per frame.
        df: (N, 3) force residuals, or None; types: (N,) type index of each atom.
        ds: (F_σ, 3, 3) stress residuals of the frames that carry stress, or None.

    Returns:
        ``(loss, components, dL/dde (F,), dL/ddf (N, 3), dL/dds (F_σ, 3, 3))``; components are
        named ``<term>_<loss>`` (``forces_<loss>_<t>`` per type index t with per-type weights).
    """
    c = coeffs.normalized()
    comps, loss = {}, 0.0
    a = np.zeros(0 if de is None else len(de))
    W = None if df is None else np.zeros_like(df)
    S = None if ds is None else np.zeros_like(ds)
    n = np.asarray(natoms, dtype=np.float64)
    if de is not None and len(de):
        for term, res, scale in (("per_atom_energy", de / n, 1.0 / n), ("total_energy", de, 1.0)):
            if getattr(c, term):
                m, g = _mean_term(res, c, term)
                comps[f"{term}_{c.loss}"] = m
                loss += getattr(c, term) * m
                a = a + getattr(c, term) * g * scale
    if c.forces and df is not None and df.size:
        if c.per_type_forces is None:
            m, g = _mean_term(df, c, "forces")
        else:
            m, g, parts = _per_type_force_term(df, types, c)
            comps.update({f"forces_{c.loss}_{t}": v for t, v in parts.items()})
        comps[f"forces_{c.loss}"] = m
        loss += c.forces * m
        W = c.forces * g
    if c.stress and ds is not None and ds.size:
        m, g = _mean_term(ds, c, "stress")
        comps[f"stress_{c.loss}"] = m
        loss += c.stress * m
        S = c.stress * g
    return loss, comps, a, W, S


def stress_mask(graph) -> np.ndarray:
    """(F,) frames whose stress enters the loss: periodic in 3D with a finite stress label."""
    if graph.stress is None:
        return np.zeros(graph.n_frames, dtype=bool)
    return np.all(graph.pbc, axis=1) & np.all(np.isfinite(graph.stress), axis=(1, 2))


def loss_terms(graph, pred: dict, coeffs: LossCoefficients):
    """Loss value, its components, and the adjoints (a (F,), W (N, 3), S (F, 3, 3)) of the predictions."""
    c = coeffs.normalized()
    nf = graph.n_frames
    de = None if not c.energy or graph.energy is None else pred["total_energy"] - graph.energy
    df = None if not c.forces or graph.forces is None else pred["forces"] - graph.forces
    mask = stress_mask(graph) if c.stress else np.zeros(nf, dtype=bool)
    ds = pred["stress"][mask] - graph.stress[mask] if mask.any() else None
    loss, comps, a_e, W_f, S_s = loss_from_residuals(c, de, graph.num_atoms, df, graph.atom_types, ds)
    a = np.zeros(nf) if de is None else a_e
    W = np.zeros_like(graph.pos) if W_f is None else W_f
    S = np.zeros((nf, 3, 3))
    if S_s is not None:
        S[mask] = S_s
    return loss, comps, a, W, S


def radial_cache_bytes(model, n_edges: int) -> int:
    """Bytes of the complex pass's radial-MLP caches (activations and ``w``, all layers) for ``n_edges``."""
    itemsize = 2 * np.dtype(model.dtype).itemsize  # complex
    return int(n_edges * itemsize * sum(2 * sum(layer.radial_dims[1:]) for layer in model.plan.layers))


def loss_and_grad(
    model, graph, coeffs: LossCoefficients | None = None, params: dict | None = None, low_memory: bool | None = None
):
    r"""Loss of a labelled batch and its gradient with respect to every trainable parameter.

    Returns ``(loss, components, grads, pred)``; ``grads`` is a dict of float64 arrays keyed like
    ``model.params``; ``pred`` holds the predictions of this pass (for metrics). ``low_memory``:
    recompute the radial MLP in the complex reverse pass instead of keeping its caches; ``None``
    decides by size (:data:`LOW_MEMORY_BYTES`). The result is the same either way.
    """
    coeffs = coeffs or LossCoefficients()
    params = model.params if params is None else params
    need_forces = coeffs.forces > 0 or coeffs.stress > 0
    if graph.energy is None and coeffs.energy > 0:
        raise ValueError("the batch has no energy labels but the loss has an energy term")
    if graph.forces is None and coeffs.forces > 0:
        raise ValueError("the batch has no force labels but the loss has a force term")
    vec = graph.edge_vectors()
    atomic, cache = model.forward(graph, vec, params)
    pred = {"atomic_energy": atomic, "total_energy": scatter_sum(atomic, graph.batch, graph.n_frames)}
    if need_forces:
        d_vec, _ = model.backward(np.ones_like(atomic), cache, graph, params, param_grads=False)
        pred.update(forces_and_stress(graph, vec, d_vec))
    loss, comps, a, W, S = loss_terms(graph, pred, coeffs)
    if not need_forces:  # energy-only: one ordinary reverse pass
        _, grads = model.backward(a[graph.batch], cache, graph, params)
        return loss, comps, _real(grads), pred
    del cache  # the real pass's caches are not needed any more: free them before the complex pass
    dst, src = graph.edge_index[0], graph.edge_index[1]
    volume = np.abs(np.linalg.det(graph.cell))
    Q = np.zeros_like(S)
    has_s = np.abs(S).sum(axis=(1, 2)) > 0
    Q[has_s] = 0.5 * (S[has_s] + np.swapaxes(S[has_s], 1, 2)) / volume[has_s, None, None]
    tangent = W[dst] - W[src] + np.einsum("ea,eab->eb", vec, Q[graph.batch[dst]])
    h = COMPLEX_STEP
    if low_memory is None:
        low_memory = radial_cache_bytes(model, graph.n_edges) > LOW_MEMORY_BYTES
    atomic_c, cache_c = model.forward(graph, vec + 1j * h * tangent, params, low_memory=low_memory)
    seed = (a - 1j / h)[graph.batch]
    _, grads = model.backward(seed, cache_c, graph, params, edge_grads=False)  # parameter gradients only
    return loss, comps, _real(grads), pred


def _real(grads: dict) -> dict:
    return {k: np.ascontiguousarray(np.real(v), dtype=np.float64) for k, v in grads.items()}
