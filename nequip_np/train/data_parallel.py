r"""Data-parallel training: every rank computes the gradient of one shard of each global batch.

Every rank draws the same global batches (same seeded generator), takes a contiguous shard of each
batch's frames, computes the loss gradient of its shard with coefficients reweighted by its share of
the global normalisers (frames for energy, atoms for forces, stress frames for stress), and the shard
gradients are summed; the sum equals the gradient of the global batch (:func:`shard_loss_and_grad`).
The sum is formed in rank order from an allgather (:meth:`nequip_np.parallel.comm.Comm.sum`), so every
rank holds bit-identical gradients and applies the same Adam step. ``docs/lammps_mpi.md`` has the
measurements.
"""

from __future__ import annotations

import numpy as np

from nequip_np.data.graph import batch_graphs, split_batch
from nequip_np.parallel.comm import launched_size, share_cores_between_ranks, world
from nequip_np.train.loss import LossCoefficients, loss_and_grad


def shard_frames(n_frames: int, rank: int, size: int) -> np.ndarray:
    """Frame indices of ``rank``'s contiguous shard (``np.array_split`` sizes; may be empty)."""
    return np.array_split(np.arange(n_frames), size)[rank]


def _loss_counts(graph, coeffs):
    """Normalisers of each loss term on ``graph``: frames, atoms, stress frames (see train/loss.py)."""
    n_stress = int(np.all(graph.pbc, axis=1).sum()) if graph.stress is not None else 0
    return np.array([graph.n_frames, graph.n_atoms, n_stress], dtype=np.float64)


def shard_loss_and_grad(model, batch, coeffs, comm, loss_fn=None):
    r"""Loss and parameter gradient of the global ``batch``, each rank computing one shard.

    The loss is :math:`L = \sum_t c_t\,\frac{1}{n_t}\sum_{x\in t} r_x^2` with per-term normalisers
    :math:`n_t` (frames, force components, stress frames). Shard k's own loss uses its own
    :math:`n_{t,k}`, so the shard is evaluated with coefficients :math:`c_t n_{t,k}/n_t` (the loss
    function renormalises them to sum 1: the result is multiplied back by their sum :math:`s_k`).
    Then :math:`\sum_k s_k \nabla L_k = \nabla L` exactly, whatever the shard sizes.

    Returns ``(loss, components, grads, None)`` like :func:`~nequip_np.train.loss.loss_and_grad`
    (components are the global mean squared errors); identical on every rank.
    """
    loss_fn = loss_fn or loss_and_grad
    c = coeffs.normalized()
    frames = shard_frames(batch.n_frames, comm.rank, comm.size)
    base = np.array([c.per_atom_energy, c.forces, c.stress])
    names = sorted(model.params)
    sizes = [model.params[k].size for k in names]
    local = np.zeros(sum(sizes) + 1 + 3)
    if frames.size:
        parts = split_batch(batch)
        shard = batch_graphs([parts[i] for i in frames])
        weights = base * _loss_counts(shard, c) / np.maximum(_loss_counts(batch, c), 1.0)
        s = float(weights.sum())
        if s > 0:
            loss, comps, grads, _ = loss_fn(model, shard, LossCoefficients(*weights))
            local[:-4] = np.concatenate([s * grads[k].ravel() for k in names])
            local[-4] = s * loss
            mse = [comps.get(k, 0.0) for k in ("per_atom_energy_mse", "forces_mse", "stress_mse")]
            local[-3:] = weights / np.where(base > 0, base, 1.0) * mse
    total = comm.sum(local)
    grads, offset = {}, 0
    for k, n in zip(names, sizes):
        grads[k] = total[offset : offset + n].reshape(model.params[k].shape)
        offset += n
    comps = {
        k: float(v) for k, v, b in zip(("per_atom_energy_mse", "forces_mse", "stress_mse"), total[-3:], base) if b > 0
    }
    return float(total[-4]), comps, grads, None


class DataParallel:
    """What the :class:`~nequip_np.train.trainer.Trainer` needs to train on several ranks.

    ``loss_and_grad(model, batch, coeffs)`` — the sharded, summed gradient; ``writes`` — whether this
    rank writes files (rank 0 only).
    """

    def __init__(self, comm):
        self.comm = comm
        self.rank, self.size = comm.rank, comm.size
        self.writes = comm.rank == 0

    def loss_and_grad(self, model, batch, coeffs, loss_fn=None):
        return shard_loss_and_grad(model, batch, coeffs, self.comm, loss_fn)

    def __repr__(self):
        return f"DataParallel(rank={self.rank}, size={self.size})"


def data_parallel_from_environment():
    """A :class:`DataParallel` when launched by ``mpirun`` with several ranks, else None."""
    if launched_size() <= 1:
        return None
    comm = world(required=True)
    share_cores_between_ranks()
    return DataParallel(comm) if comm.size > 1 else None
