r"""The training loss and its exact parameter gradient, forces and stress terms included.

Loss for a batch of F frames (nequip's ``EnergyForceStressLoss`` with per-atom energy):

.. math::

    L = c_E\,\frac1F\sum_f\Big(\frac{E_f - E_f^*}{N_f}\Big)^2
      + c_F\,\frac{1}{3N}\sum_{i,a}(F_{ia} - F^*_{ia})^2
      + c_\sigma\,\frac{1}{9F_\sigma}\sum_{f\in\sigma}\sum_{ab}(\sigma_{f,ab} - \sigma^*_{f,ab})^2,

coefficients normalised to sum to one. The force and stress terms need the mixed second derivative
:math:`\partial^2 E/\partial\theta\,\partial R`. With the residual adjoints
:math:`a_f = \partial L/\partial E_f`, :math:`W = \partial L/\partial F`, :math:`Q_f =
\mathrm{sym}(\partial L/\partial\sigma_f)/V_f` held fixed,

.. math:: \nabla_\theta L = \nabla_\theta\Big[\sum_f a_f E_f + T\Big],\qquad
          T = \frac{d}{dt}\,E\big(\vec r_e + t\,\dot r_e\big)\Big|_{t=0},\quad
          \dot r_e = W_{i(e)} - W_{j(e)} + \vec r_e Q_{f(e)} .

``T`` (a directional derivative of E along the force residual and the stress strain) and its
parameter gradient are obtained in ONE forward + reverse pass of the hand-written kernels run in
complex arithmetic: edge vectors :math:`\vec r + i h \dot r` carry the tangent, and the reverse pass
is seeded with :math:`a_f - i/h`, so that the real part of the parameter adjoint is exactly
:math:`a_f\,\partial E_f/\partial\theta + \partial T/\partial\theta` up to :math:`O(h^2)`
(:math:`h = 10^{-20}`: 10⁻⁴⁰ relative). Derivation, and why this equals the tangent/reverse-over-tangent
scheme operation by operation: ``docs/derivations/training_gradients.md``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nequip_np.kernels.common import scatter_sum
from nequip_np.model.nequip import forces_and_stress

#: complex-step size; the truncation error is O(h²) relative, no subtractive cancellation occurs.
COMPLEX_STEP = 1e-20


@dataclass
class LossCoefficients:
    per_atom_energy: float = 1.0
    forces: float = 1.0
    stress: float = 0.0

    def normalized(self) -> "LossCoefficients":
        total = self.per_atom_energy + self.forces + self.stress
        if total <= 0 or min(self.per_atom_energy, self.forces, self.stress) < 0:
            raise ValueError(f"loss coefficients must be non-negative with a positive sum, got {self}")
        return LossCoefficients(self.per_atom_energy / total, self.forces / total, self.stress / total)


def _stress_frames(graph):
    return np.all(graph.pbc, axis=1) & (graph.stress is not None)


def loss_terms(graph, pred: dict, coeffs: LossCoefficients):
    """Loss value, its components, and the adjoints (a (F,), W (N, 3), S (F, 3, 3)) of the predictions."""
    c = coeffs.normalized()
    nf = graph.n_frames
    natoms = graph.num_atoms.astype(np.float64)
    comps, a, W, S = {}, np.zeros(nf), np.zeros_like(graph.pos), np.zeros((nf, 3, 3))
    loss = 0.0
    if c.per_atom_energy:
        res = (pred["total_energy"] - graph.energy) / natoms
        comps["per_atom_energy_mse"] = float(np.mean(res**2))
        loss += c.per_atom_energy * comps["per_atom_energy_mse"]
        a = c.per_atom_energy * 2.0 * res / natoms / nf
    if c.forces:
        res = pred["forces"] - graph.forces
        comps["forces_mse"] = float(np.mean(res**2))
        loss += c.forces * comps["forces_mse"]
        W = c.forces * 2.0 * res / res.size
    if c.stress:
        mask = np.all(graph.pbc, axis=1)
        if graph.stress is not None and mask.any():
            res = pred["stress"][mask] - graph.stress[mask]
            comps["stress_mse"] = float(np.mean(res**2))
            loss += c.stress * comps["stress_mse"]
            S[mask] = c.stress * 2.0 * res / res.size
    return loss, comps, a, W, S


def loss_and_grad(model, graph, coeffs: LossCoefficients | None = None, params: dict | None = None):
    r"""Loss of a labelled batch and its gradient with respect to every trainable parameter.

    Returns ``(loss, components, grads, pred)``; ``grads`` is a dict of float64 arrays keyed like
    ``model.params``; ``pred`` holds the predictions of this pass (for metrics).
    """
    coeffs = coeffs or LossCoefficients()
    params = model.params if params is None else params
    need_forces = coeffs.forces > 0 or coeffs.stress > 0
    if graph.energy is None and coeffs.per_atom_energy > 0:
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
    atomic_c, cache_c = model.forward(graph, vec + 1j * h * tangent, params, low_memory=True)
    seed = (a - 1j / h)[graph.batch]
    _, grads = model.backward(seed, cache_c, graph, params)
    return loss, comps, _real(grads), pred


def _real(grads: dict) -> dict:
    return {k: np.ascontiguousarray(np.real(v), dtype=np.float64) for k, v in grads.items()}
