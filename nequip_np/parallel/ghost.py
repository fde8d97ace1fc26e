r"""The "ghost" MD decomposition: the MD engine's ghost atoms form each rank's receptive-field shell.

Each rank owns some atoms and receives from the engine (LAMMPS) ghost atoms: explicit periodic images
within the receptive field. Images along periodic directions that are not split between ranks are
folded back onto the atoms they copy (:meth:`GhostCache.fold`); the owned atoms' energy and its
partial forces are computed on the receptive subgraph
(:func:`~nequip_np.parallel.receptive.owned_energy_forces`), and the ghost forces are sent back to the
ranks owning those atoms (:func:`ghost_energy_forces`). O(owned + ghosts) memory and work per rank;
:class:`GhostCache` keeps the id → rank table, the folding and a Verlet list between MD steps.
"""

from __future__ import annotations

import numpy as np

from nequip_np.data.graph import AtomicGraph
from nequip_np.data.neighborlist import cutoff_table_from_config, prune_edges
from nequip_np.data.verlet import NeighborListCache
from nequip_np.parallel.receptive import owned_energy_forces


class OwnerMap:
    """Which rank owns each atom id; rebuilt (one ``allgatherv`` of ids) only when some rank's owned ids
    changed since the last call — LAMMPS moves atoms between ranks only when it re-neighbours."""

    def __init__(self):
        self._local = None
        self._ids = self._rank = None
        self.rebuilds = 0

    def update(self, comm, local_ids) -> None:
        local_ids = np.asarray(local_ids, dtype=np.int64)
        changed = self._local is None or not np.array_equal(self._local, local_ids)
        if comm.sum(np.array([float(changed)]))[0] > 0:  # collective: every rank rebuilds together
            all_ids, counts = comm.allgatherv(local_ids)
            order = np.argsort(all_ids, kind="stable")
            self._ids = all_ids[order]
            self._rank = np.repeat(np.arange(comm.size), counts)[order]
            self.rebuilds += 1
        self._local = local_ids.copy()

    def owner(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        k = np.minimum(np.searchsorted(self._ids, ids), max(self._ids.size - 1, 0))
        if ids.size and (self._ids.size == 0 or np.any(self._ids[k] != ids)):
            bad = ids[self._ids[k] != ids][:5] if self._ids.size else ids[:5]
            raise ValueError(f"ghost atoms with ids {bad.tolist()} are owned by no rank")
        return self._rank[k]


def _fold_rows(ids, frac, nlocal: int, fold) -> np.ndarray:
    """Rows kept by :meth:`GhostCache.fold`: one per (id, image along the directions not folded)."""
    order = np.lexsort((np.arange(ids.size), ids))  # by id, owned (smallest row) first within an id
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    group = np.repeat(starts, np.diff(np.r_[starts, ids.size]))
    image = np.rint(frac[order][:, ~fold] - frac[order[group]][:, ~fold]).astype(np.int64)
    _, first = np.unique(np.column_stack([sorted_ids, image]), axis=0, return_index=True)
    rows = np.sort(order[first])
    if rows.size < nlocal or np.any(rows[:nlocal] != np.arange(nlocal)):
        raise ValueError("owned atoms with repeated ids")
    return rows


class GhostCache:
    """What one rank keeps between MD steps: id → rank table, folding of images, Verlet list.

    LAMMPS changes which atoms a rank owns and which ghosts it holds (and their order) only when it
    re-neighbours. Between two re-neighbourings the folding (:meth:`fold`: which rows are the same
    atom) is kept, keyed by the ids of all rows, and the neighbour list is a Verlet list
    (:class:`nequip_np.data.verlet.NeighborListCache`: built at r_max + ``skin``, reused while every
    node moved less than skin/2, filtered to d < r_max on every call — identical edges to a fresh
    list). Each is rebuilt whenever its key changes, so a new cache per call is also exact.

    Attributes:
        owners: the :class:`OwnerMap`; ``fold_builds`` and ``nl.builds``: full rebuilds so far.
    """

    def __init__(self, r_max: float, skin: float = 1.0):
        self.owners = OwnerMap()
        self.nl = NeighborListCache(r_max, skin)
        self.fold_builds = 0
        self._fold_key = None
        self._rows = None

    def fold(self, ids, positions, nlocal, cell, origin, fold):
        """Merge ghost copies that are periodic images along the ``fold`` directions into one node.

        Along a periodic direction that is not split between ranks a rank's sub-domain spans the whole
        box, and the engine's ghost atoms in that direction are images of atoms already present. Wrapping
        the fractional coordinates along ``fold`` and keeping one node per (id, image along the other
        directions) gives a graph that is periodic along ``fold`` (edges carry the shift) and explicit
        elsewhere — the same graph the periodic model uses, so no feature is computed twice.

        The grouping is reused while the rows' ids are unchanged, and so is each kept row's wrapping
        (the lattice vectors chosen at the build): positions stay continuous in time (an atom drifting
        across the box face is not moved by a whole cell), so the Verlet list stays valid.

        Returns:
            (rows, positions): ``rows`` (m,) kept input rows, increasing (the ``nlocal`` owned rows
            first, all kept), and their positions.
        """
        frac = np.linalg.solve(np.asarray(cell, dtype=np.float64).T, (np.asarray(positions) - origin).T).T
        key = self._fold_key
        if (
            key is None
            or key[1] != nlocal
            or not np.array_equal(key[2], fold)
            or key[0].shape != ids.shape
            or not np.array_equal(key[0], ids)
        ):
            wrapped = frac.copy()
            wrapped[:, fold] -= np.floor(wrapped[:, fold])
            self._rows = _fold_rows(ids, wrapped, nlocal, fold)
            self._wrap = np.floor(frac[self._rows][:, fold])
            self._fold_key = (ids.copy(), nlocal, fold.copy())
            self.fold_builds += 1
        kept = frac[self._rows]
        kept[:, fold] -= self._wrap
        return self._rows, origin + kept @ cell


def ghost_energy_forces(
    model,
    comm,
    ids,
    types,
    positions,
    nlocal: int,
    cache: GhostCache,
    cell=None,
    origin=None,
    fold=(False, False, False),
) -> dict:
    r"""Energy, virial and forces when the MD engine supplies ghost atoms (explicit periodic images).

    Rows ``[:nlocal]`` of ``ids``/``types``/``positions`` are the atoms this rank owns, the rest are
    ghost atoms: copies of atoms of this or other ranks at image positions, covering at least the
    receptive field ``num_layers × r_max`` around the owned atoms (for LAMMPS: ``comm_modify cutoff``
    ≥ num_layers × r_max + neighbour skin). Per call:

    1. ghost images along the ``fold`` directions (periodic and not split between ranks) are merged
       with the atoms they copy (:meth:`GhostCache.fold`);
    2. a neighbour list periodic along ``fold`` only (elsewhere periodicity is in the images), a
       Verlet list kept in ``cache``;
    3. :func:`owned_energy_forces`: the owned atoms' energy :math:`E_\mathrm{own}` on their receptive
       subgraph (which drops the ghosts beyond it), its partial forces on owned and ghost atoms, and
       the partial virial (from edge vectors);
    4. reverse communication: each ghost's partial force is sent (``alltoallv``, keyed by atom id) to
       the rank owning that atom and added there — also when the owner is this rank (own images);
    5. ``sum`` over ranks of :math:`E_\mathrm{own}` and the virial (10 numbers).

    Per rank the memory and work are O(owned + ghosts); only the :class:`OwnerMap` of ``cache`` holds
    O(N) ids, refreshed when atoms change rank. Exact up to the order of sums, like
    :func:`~nequip_np.parallel.gather.decomposed_energy_forces`.

    Args:
        model: a :class:`~nequip_np.model.nequip.NequIPModel`.
        comm: :class:`~nequip_np.parallel.comm.Comm`, :class:`~nequip_np.parallel.comm.SerialComm` or
            :class:`~nequip_np.parallel.threads.ThreadComm`.
        ids: (n,) global atom ids, owned first; types: (n,) model types; positions: (n, 3) Å.
        nlocal: number of owned atoms (the first rows).
        cache: a :class:`GhostCache` kept between calls (a new one per call is exact, only slower).
        cell: (3, 3) box rows and ``origin`` (3,) its lower corner; needed when ``fold`` has a True.
        fold: 3 bools, directions along which ghosts are images of this rank's own sub-domain.

    Returns:
        dict with ``energy`` and ``virial`` (whole system), ``forces`` (nlocal, 3) of the owned atoms,
        ``n_computed`` atoms evaluated here, ``n_sent`` ghost forces sent, ``model_s``.
    """
    c = model.config
    ids = np.asarray(ids, dtype=np.int64)
    types = np.asarray(types, dtype=np.int64)
    pos = np.asarray(positions, dtype=np.float64)
    fold = np.asarray(fold, dtype=bool)
    owners = cache.owners
    error, part = None, None
    try:  # local work; a failure on one rank must reach all of them before the next collective
        if not np.all(np.isfinite(pos)):
            raise ValueError("positions must be finite; got NaN or inf (the simulation has blown up?)")
        box = np.zeros((3, 3))
        if fold.any():
            box = np.asarray(cell, dtype=np.float64)
            origin = np.zeros(3) if origin is None else np.asarray(origin, dtype=np.float64)
            rows, pos = cache.fold(ids, pos, nlocal, box, origin, fold)
            ids, types = ids[rows], types[rows]
        edge_index, shifts = cache.nl.get(pos, box, fold, ids)
        n = pos.shape[0]
        if c.per_edge_type_cutoff is not None:
            table = cutoff_table_from_config(c.per_edge_type_cutoff, c.type_names, c.r_max)
            edge_index, shifts = prune_edges(edge_index, shifts, pos, box, types, table)
        graph = AtomicGraph(
            pos=pos,
            atom_types=types,
            edge_index=edge_index,
            edge_shift=shifts.astype(np.float64),
            cell=box[None],
            pbc=fold[None].copy(),
            batch=np.zeros(n, np.int64),
            num_atoms=np.array([n], np.int64),
        )
        part = owned_energy_forces(model, graph, np.arange(n) < nlocal)
    except Exception as exc:  # noqa: BLE001 - re-raised below on every rank
        error = exc
    failed = comm.sum(np.array([float(error is not None)]))[0]
    if error is not None:
        raise error
    if failed > 0:
        raise RuntimeError("the model failed on another MPI rank (its error is reported there)")
    owners.update(comm, ids[:nlocal])
    f = part["forces"]
    forces = f[:nlocal].copy()
    rows = nlocal + np.flatnonzero(np.any(f[nlocal:] != 0.0, axis=1))  # ghosts inside the receptive field
    dest = owners.owner(ids[rows])
    order = np.argsort(dest, kind="stable")
    packed = np.concatenate([ids[rows, None].astype(np.float64), f[rows]], axis=1)[order]
    bounds = np.cumsum(np.bincount(dest, minlength=comm.size))[:-1]
    received, _ = comm.alltoallv(np.split(packed, bounds))
    if received.shape[0]:
        got = received[:, 0].astype(np.int64)
        local_ids = ids[:nlocal]
        sorter = np.argsort(local_ids, kind="stable")
        k = sorter[np.minimum(np.searchsorted(local_ids, got, sorter=sorter), nlocal - 1)]
        if np.any(local_ids[k] != got):
            raise ValueError("a ghost force arrived for an atom this rank does not own")
        np.add.at(forces, k, received[:, 1:])
    total = comm.sum(np.concatenate([[part["energy"]], part["virial"].ravel()]))
    return {
        "energy": float(total[0]),
        "virial": total[1:10].reshape(3, 3),
        "forces": forces,
        "n_computed": part["n_computed"],
        "n_sent": int(rows.size),
        "model_s": part["model_s"],
    }
