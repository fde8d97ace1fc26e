r"""What both MD decompositions share: the owned atoms' energy on their receptive subgraph.

After ``L`` message-passing layers an atom's energy depends only on atoms within ``L`` graph hops
(edges are :math:`r < r_\max`, so they lie within :math:`L\,r_\max`). A rank evaluates the model on
its owned atoms plus that shell, keeping only the edges whose receiver is fewer than ``L`` hops away —
enough for every feature that reaches an owned atom's energy (:func:`receptive_subgraph`). One reverse
pass seeded with 1 on owned atoms and 0 on the shell gives the partial forces
:math:`-\partial E_\mathrm{own}/\partial R` on owned *and* shell atoms and the partial virial
(:func:`owned_energy_forces`). Because :math:`E = \sum_\mathrm{ranks} E_\mathrm{own}` and every
quantity is linear in the energy, summing the partial results over ranks gives the single-process
result up to the order of floating-point sums.

The two decompositions differ in where the shell comes from: :mod:`nequip_np.parallel.gather` (every
rank holds the whole system) and :mod:`nequip_np.parallel.ghost` (the MD engine's ghost atoms).
"""

from __future__ import annotations

import time

import numpy as np

from nequip_np.data.graph import AtomicGraph
from nequip_np.model.nequip import forces_and_stress


def hop_distance(edge_index, seeds, max_hops: int) -> np.ndarray:
    """(N,) graph distance of every atom from the ``seeds`` mask, capped at ``max_hops + 1``."""
    dst, src = edge_index
    hop = np.where(seeds, 0, max_hops + 1)
    for k in range(1, max_hops + 1):
        frontier = src[hop[dst] == k - 1]
        hop[frontier] = np.minimum(hop[frontier], k)
    return hop


def receptive_subgraph(graph: AtomicGraph, owned, num_layers: int):
    """Owned atoms plus everything their energies depend on after ``num_layers`` layers.

    Keeps atoms within ``num_layers`` hops and the edges whose receiver is fewer than ``num_layers``
    hops away: a feature of layer m at hop k (m ≤ L − k) then sees its full neighbourhood, by
    induction on m, which is all an owned atom's energy reads.

    Returns:
        (subgraph, nodes): ``nodes`` (n,) indices of the kept atoms in ``graph`` (increasing, so the
        edge order — receiver-sorted — is preserved).
    """
    hop = hop_distance(graph.edge_index, owned, num_layers)
    nodes = np.flatnonzero(hop <= num_layers)
    edges = hop[graph.edge_index[0]] < num_layers
    remap = np.full(graph.n_atoms, -1, np.int64)
    remap[nodes] = np.arange(nodes.size)
    sub = AtomicGraph(
        pos=graph.pos[nodes],
        atom_types=graph.atom_types[nodes],
        edge_index=remap[graph.edge_index[:, edges]],
        edge_shift=graph.edge_shift[edges],
        cell=graph.cell,
        pbc=graph.pbc,
        batch=np.zeros(nodes.size, np.int64),
        num_atoms=np.array([nodes.size], np.int64),
    )
    return sub, nodes


def owned_energy_forces(model, graph: AtomicGraph, owned) -> dict:
    r"""Energy of the ``owned`` atoms and its exact negative gradient on every atom of ``graph``.

    Returns a dict: ``energy`` (float, :math:`E_\mathrm{own}=\sum_{i\,\mathrm{owned}}E_i`), ``forces``
    (N, 3) partial forces :math:`-\partial E_\mathrm{own}/\partial R` (non-zero on the shell too),
    ``virial`` (3, 3) of :math:`E_\mathrm{own}`, ``n_computed`` atoms the model ran on, ``model_s``
    seconds in the model's forward and reverse passes.
    """
    owned = np.asarray(owned, dtype=bool)
    if not owned.any():  # a rank may own no atom (small system, many ranks)
        return {
            "energy": 0.0,
            "forces": np.zeros((graph.n_atoms, 3)),
            "virial": np.zeros((3, 3)),
            "n_computed": 0,
            "model_s": 0.0,
        }
    n_layers = model.config.num_layers
    sub, nodes = receptive_subgraph(graph, owned, n_layers)
    seed = owned[nodes].astype(np.float64)
    t0 = time.perf_counter()
    vec = sub.edge_vectors()
    atomic, cache = model.forward(sub, vec, model.params)
    d_vec, _ = model.backward(seed, cache, sub, model.params, param_grads=False)
    fs = forces_and_stress(sub, vec, d_vec)
    model_s = time.perf_counter() - t0
    forces = np.zeros((graph.n_atoms, 3))
    forces[nodes] = fs["forces"]
    return {
        "energy": float(np.dot(atomic, seed)),
        "forces": forces,
        "virial": fs["virial"][0],
        "n_computed": int(nodes.size),
        "model_s": model_s,
    }
