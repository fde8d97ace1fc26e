r"""The "gather" MD decomposition: every rank holds the whole system and evaluates its owned atoms.

Each rank owns some atoms (LAMMPS's domain decomposition decides which). Per step:

1. ``allgatherv`` of (id, type, position) of the owned atoms; every rank sorts the whole system by atom
   id, so what follows does not depend on the decomposition;
2. the periodic neighbour list of the whole system (cell list, linear in N);
3. the shell: atoms within ``num_layers`` graph hops of the owned atoms, and the owned atoms' energy,
   partial forces and partial virial on that subgraph
   (:func:`~nequip_np.parallel.receptive.owned_energy_forces`);
4. ``sum`` over ranks of (:math:`E_\mathrm{own}`, partial forces (N, 3), partial virial); a rank keeps
   the force rows of the atoms it owns.

The result equals the single-process one up to the order of floating-point sums (1e-15 relative).
Nodes are atoms, not periodic images (edges carry the cell shift), so it stays exact for boxes smaller
than the receptive field, on any number of ranks. Cost and limits (docs/lammps_mpi.md): every rank holds
all N positions and the N×3 partial forces, and builds the full neighbour list (O(N) memory and work
per rank, two O(N) collectives per step); only the model — the expensive part — is split. The ghost
decomposition (:mod:`nequip_np.parallel.ghost`) is O(owned + ghosts) per rank instead.
"""

from __future__ import annotations

import numpy as np

from nequip_np.data.graph import AtomicGraph
from nequip_np.data.neighborlist import cutoff_table_from_config, neighbor_list, prune_edges
from nequip_np.parallel.receptive import owned_energy_forces


def decomposed_energy_forces(model, comm, ids, types, positions, cell, pbc=(True, True, True)) -> dict:
    """Total energy, virial and the forces of this rank's atoms, the model split over ``comm``'s ranks.

    Args:
        model: a :class:`~nequip_np.model.nequip.NequIPModel`.
        comm: :class:`~nequip_np.parallel.comm.Comm`, :class:`~nequip_np.parallel.comm.SerialComm` or
            :class:`~nequip_np.parallel.threads.ThreadComm`.
        ids: (n,) unique global atom ids of the atoms this rank owns.
        types: (n,) model type indices; positions: (n, 3) Å; cell: (3, 3) rows; pbc: 3 bools.

    Returns:
        dict with ``energy`` (float, whole system), ``forces`` (n, 3) in the order of ``ids``,
        ``virial`` (3, 3) whole system (= −∂E/∂ε), ``n_computed`` atoms this rank evaluated,
        ``model_s`` seconds of this rank in the model itself.
    """
    c = model.config
    all_ids, counts = comm.allgatherv(np.asarray(ids, dtype=np.int64))
    all_types, _ = comm.allgatherv(np.asarray(types, dtype=np.int64))
    all_pos, _ = comm.allgatherv(np.asarray(positions, dtype=np.float64))
    order = np.argsort(all_ids, kind="stable")
    if all_ids.size and np.any(np.diff(all_ids[order]) == 0):
        raise ValueError("atom ids are not unique across ranks")
    start = int(counts[: comm.rank].sum())
    mine = order.argsort()[start : start + len(ids)]  # rows of this rank's atoms in id order
    pos, cell, pbc = all_pos[order], np.asarray(cell, dtype=np.float64), np.asarray(pbc, dtype=bool)
    edge_index, shifts = neighbor_list(pos, cell, pbc, c.r_max)
    if c.per_edge_type_cutoff is not None:
        table = cutoff_table_from_config(c.per_edge_type_cutoff, c.type_names, c.r_max)
        edge_index, shifts = prune_edges(edge_index, shifts, pos, cell, all_types[order], table)
    graph = AtomicGraph(
        pos=pos,
        atom_types=all_types[order],
        edge_index=edge_index,
        edge_shift=shifts.astype(np.float64),
        cell=cell[None],
        pbc=pbc[None],
        batch=np.zeros(pos.shape[0], np.int64),
        num_atoms=np.array([pos.shape[0]], np.int64),
    )
    owned = np.zeros(pos.shape[0], bool)
    owned[mine] = True
    part = owned_energy_forces(model, graph, owned)
    packed = np.concatenate([[part["energy"]], part["virial"].ravel(), part["forces"].ravel()])
    total = comm.sum(packed)
    return {
        "energy": float(total[0]),
        "virial": total[1:10].reshape(3, 3),
        "forces": total[10:].reshape(-1, 3)[mine],
        "n_computed": part["n_computed"],
        "model_s": part["model_s"],
    }
