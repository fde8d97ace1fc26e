r"""Several MPI ranks: energies and forces of a decomposed system, and data-parallel training.

Two uses, one small communicator interface (:class:`Comm`: ``rank``, ``size``, ``allgatherv``,
``sum``), backed by mpi4py under ``mpirun`` and by :class:`SerialComm` in a single process.

**MD (owned atoms + receptive-field shell).** Each rank owns some atoms (LAMMPS's domain
decomposition decides which). Two ways to give it the atoms its energy depends on:
:func:`ghost_energy_forces` uses the engine's ghost atoms (explicit periodic images within the
receptive field, folded back along unsplit periodic directions) and sends ghost forces back to their
owners — O(owned + ghosts) per rank; :func:`decomposed_energy_forces` ("gather", below) gives every rank
the whole system — exact for any box, O(N) per rank. The gather method, per step:

1. ``allgatherv`` of (id, type, position) of the owned atoms; every rank sorts the whole system by atom
   id, so what follows does not depend on the decomposition;
2. the periodic neighbour list of the whole system (cell list, linear in N);
3. the shell: atoms within ``num_layers`` graph hops of the owned atoms. After ``L`` message-passing
   layers an atom's energy depends only on atoms within ``L`` hops (edges are :math:`r < r_\max`, so
   the shell lies within :math:`L\,r_\max`). The rank evaluates the model on owned + shell atoms,
   keeping only the edges whose receiver is fewer than ``L`` hops away — enough for every feature
   that reaches an owned atom's energy (:func:`receptive_subgraph`);
4. one reverse pass seeded with 1 on owned atoms and 0 on the shell gives the partial forces
   :math:`-\partial E_\mathrm{own}/\partial R` on owned *and* shell atoms and the partial virial;
5. ``sum`` over ranks of (:math:`E_\mathrm{own}`, partial forces (N, 3), partial virial); a rank keeps
   the force rows of the atoms it owns.

Because :math:`E = \sum_\mathrm{ranks} E_\mathrm{own}` and every quantity is linear in the energy, the
result equals the single-process one up to the order of floating-point sums (1e-15 relative). Nodes
are atoms, not periodic images (edges carry the cell shift), so it stays exact for boxes smaller than
the receptive field, on any number of ranks. Cost and limits (docs/lammps_mpi.md): every rank holds
all N positions and the N×3 partial forces, and builds the full neighbour list (O(N) memory and work
per rank, two O(N) collectives per step); only the model — the expensive part — is split.

**Training.** Every rank draws the same global batches (same seeded generator), takes a contiguous
shard of each batch's frames, computes the loss gradient of its shard with coefficients reweighted by
its share of the global normalisers (frames for energy, atoms for forces, stress frames for stress),
and the shard gradients are summed; the sum equals the gradient of the global batch
(:func:`shard_loss_and_grad`). The sum is formed in rank order from an allgather, so every rank
holds bit-identical gradients and applies the same Adam step.
"""
from __future__ import annotations

import os
import time

import numpy as np

from nequip_np.data.graph import AtomicGraph, batch_graphs, split_batch
from nequip_np.model.nequip import forces_and_stress

#: environment variables that MPI launchers set to the world size (MPICH/Hydra, Open MPI)
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")


# --------------------------------------------------------------------------------------------------
# communicators
# --------------------------------------------------------------------------------------------------
class SerialComm:
    """The communicator of a single process (rank 0 of 1)."""

    rank, size = 0, 1

    def allgatherv(self, a):
        a = np.ascontiguousarray(a)
        return a.copy(), np.array([a.shape[0]])

    def sum(self, a):
        return np.array(a, dtype=np.float64, copy=True)

    def alltoallv(self, parts):
        a = np.ascontiguousarray(parts[0])
        return a.copy(), np.array([a.shape[0]])

    def allgather_object(self, obj):
        return [obj]

    def barrier(self):
        pass


class Comm:
    """Thin wrapper of an mpi4py communicator with the few collectives used here."""

    def __init__(self, comm):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    def allgatherv(self, a):
        """Concatenate ``a`` (n_r, ...) of every rank along axis 0, in rank order → (array, counts)."""
        a = np.ascontiguousarray(a)
        counts = np.array(self.comm.allgather(a.shape[0]), dtype=np.int64)
        row = int(np.prod(a.shape[1:], dtype=np.int64))
        out = np.empty((int(counts.sum()),) + a.shape[1:], dtype=a.dtype)
        self.comm.Allgatherv(a, [out, counts * row])
        return out, counts

    def sum(self, a):
        """Sum of ``a`` over ranks, formed in rank order: bit-identical on every rank."""
        a = np.ascontiguousarray(a, dtype=np.float64)
        every = np.empty((self.size,) + a.shape)
        self.comm.Allgather(a, every)
        out = every[0].copy()
        for r in range(1, self.size):
            out += every[r]
        return out

    def alltoallv(self, parts):
        """Send ``parts[r]`` (n_r, ...) to rank r; receive every rank's part for this one, concatenated in
        rank order → (array, counts). All parts share dtype and trailing shape."""
        parts = [np.ascontiguousarray(p) for p in parts]
        tail, dtype = parts[0].shape[1:], parts[0].dtype
        row = int(np.prod(tail, dtype=np.int64))
        send_counts = np.array([p.shape[0] for p in parts], dtype=np.int64)
        recv_counts = np.empty(self.size, dtype=np.int64)
        self.comm.Alltoall(send_counts, recv_counts)
        send = np.concatenate(parts, axis=0) if parts else np.empty((0,) + tail, dtype)
        out = np.empty((int(recv_counts.sum()),) + tail, dtype=dtype)
        self.comm.Alltoallv([send, send_counts * row], [out, recv_counts * row])
        return out, recv_counts

    def allgather_object(self, obj):
        """Every rank's (picklable) ``obj``, in rank order."""
        return self.comm.allgather(obj)

    def barrier(self):
        self.comm.Barrier()


def launched_size() -> int:
    """World size announced by an MPI launcher in the environment (1 when not under ``mpirun``)."""
    for name in _SIZE_VARIABLES:
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 1


def local_ranks() -> int:
    """Ranks on this machine announced by the launcher (MPICH/Hydra, Open MPI); 1 when not under ``mpirun``."""
    for name in ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE"):
        if os.environ.get(name, "").isdigit():
            return max(int(os.environ[name]), 1)
    return 1


def share_cores_between_ranks() -> int | None:
    """Give each of the ranks on this machine its share of the cores for Numba's threads.

    Under ``mpirun -np P`` every rank would otherwise start as many Numba threads as the machine has
    cores, P times too many. Does nothing when the user set ``NUMBA_NUM_THREADS`` or with one local rank.

    Returns:
        The thread count set, or None when nothing was changed.
    """
    n = local_ranks()
    if n <= 1 or "NUMBA_NUM_THREADS" in os.environ:
        return None
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency
        return None
    threads = max(1, min(numba.config.NUMBA_NUM_THREADS, (os.cpu_count() or 1) // n))
    numba.set_num_threads(threads)
    return threads


def world(required: bool = False):
    """``Comm(MPI.COMM_WORLD)`` under an MPI launcher with more than one rank, else :class:`SerialComm`.

    Raises:
        ImportError: launched on several ranks (or ``required``) but mpi4py is not installed.
    """
    if launched_size() <= 1 and not required:
        return SerialComm()
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(f"{launched_size()} MPI ranks need mpi4py: pip install 'nequip-np[mpi]'") from exc
    return Comm(MPI.COMM_WORLD)


# --------------------------------------------------------------------------------------------------
# MD: owned atoms plus their receptive-field shell
# --------------------------------------------------------------------------------------------------
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
        pos=graph.pos[nodes], atom_types=graph.atom_types[nodes], edge_index=remap[graph.edge_index[:, edges]],
        edge_shift=graph.edge_shift[edges], cell=graph.cell, pbc=graph.pbc,
        batch=np.zeros(nodes.size, np.int64), num_atoms=np.array([nodes.size], np.int64))
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
        return {"energy": 0.0, "forces": np.zeros((graph.n_atoms, 3)), "virial": np.zeros((3, 3)),
                "n_computed": 0, "model_s": 0.0}
    n_layers = model.config.num_layers
    sub, nodes = receptive_subgraph(graph, owned, n_layers)
    seed = owned[nodes].astype(np.float64)
    t0 = time.perf_counter()
    vec = sub.edge_vectors()
    atomic, cache = model._forward(sub, vec, model.params)
    d_vec, _ = model._backward(seed, cache, sub, model.params, param_grads=False)
    fs = forces_and_stress(sub, vec, d_vec)
    model_s = time.perf_counter() - t0
    forces = np.zeros((graph.n_atoms, 3))
    forces[nodes] = fs["forces"]
    return {"energy": float(np.dot(atomic, seed)), "forces": forces, "virial": fs["virial"][0],
            "n_computed": int(nodes.size), "model_s": model_s}


def decomposed_energy_forces(model, comm, ids, types, positions, cell, pbc=(True, True, True)) -> dict:
    """Total energy, virial and the forces of this rank's atoms, the model split over ``comm``'s ranks.

    Args:
        model: a :class:`~nequip_np.model.nequip.NequIPModel`.
        comm: :class:`Comm` or :class:`SerialComm`.
        ids: (n,) unique global atom ids of the atoms this rank owns.
        types: (n,) model type indices; positions: (n, 3) Å; cell: (3, 3) rows; pbc: 3 bools.

    Returns:
        dict with ``energy`` (float, whole system), ``forces`` (n, 3) in the order of ``ids``,
        ``virial`` (3, 3) whole system (= −∂E/∂ε), ``n_computed`` atoms this rank evaluated,
        ``model_s`` seconds of this rank in the model itself.
    """
    from nequip_np.data.neighborlist import neighbor_list

    c = model.config
    all_ids, counts = comm.allgatherv(np.asarray(ids, dtype=np.int64))
    all_types, _ = comm.allgatherv(np.asarray(types, dtype=np.int64))
    all_pos, _ = comm.allgatherv(np.asarray(positions, dtype=np.float64))
    order = np.argsort(all_ids, kind="stable")
    if all_ids.size and np.any(np.diff(all_ids[order]) == 0):
        raise ValueError("atom ids are not unique across ranks")
    start = int(counts[: comm.rank].sum())
    mine = order.argsort()[start:start + len(ids)]  # rows of this rank's atoms in id order
    pos, cell, pbc = all_pos[order], np.asarray(cell, dtype=np.float64), np.asarray(pbc, dtype=bool)
    edge_index, shifts = neighbor_list(pos, cell, pbc, c.r_max)
    if c.per_edge_type_cutoff is not None:
        from nequip_np.data.neighborlist import cutoff_table_from_config, prune_edges

        table = cutoff_table_from_config(c.per_edge_type_cutoff, c.type_names, c.r_max)
        edge_index, shifts = prune_edges(edge_index, shifts, pos, cell, all_types[order], table)
    graph = AtomicGraph(pos=pos, atom_types=all_types[order], edge_index=edge_index,
                        edge_shift=shifts.astype(np.float64), cell=cell[None], pbc=pbc[None],
                        batch=np.zeros(pos.shape[0], np.int64), num_atoms=np.array([pos.shape[0]], np.int64))
    owned = np.zeros(pos.shape[0], bool)
    owned[mine] = True
    part = owned_energy_forces(model, graph, owned)
    packed = np.concatenate([[part["energy"]], part["virial"].ravel(), part["forces"].ravel()])
    total = comm.sum(packed)
    return {"energy": float(total[0]), "virial": total[1:10].reshape(3, 3),
            "forces": total[10:].reshape(-1, 3)[mine], "n_computed": part["n_computed"], "model_s": part["model_s"]}


# --------------------------------------------------------------------------------------------------
# MD: owned atoms plus ghost images supplied by the MD engine (LAMMPS's ghost atoms)
# --------------------------------------------------------------------------------------------------
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
    (:class:`nequip_np.calculator.NeighborListCache`: built at r_max + ``skin``, reused while every
    node moved less than skin/2, filtered to d < r_max on every call — identical edges to a fresh
    list). Each is rebuilt whenever its key changes, so a new cache per call is also exact.

    Attributes:
        owners: the :class:`OwnerMap`; ``fold_builds`` and ``nl.builds``: full rebuilds so far.
    """

    def __init__(self, r_max: float, skin: float = 1.0):
        from nequip_np.calculator import NeighborListCache

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
        if (key is None or key[1] != nlocal or not np.array_equal(key[2], fold) or key[0].shape != ids.shape
                or not np.array_equal(key[0], ids)):
            wrapped = frac.copy()
            wrapped[:, fold] -= np.floor(wrapped[:, fold])
            self._rows = _fold_rows(ids, wrapped, nlocal, fold)
            self._wrap = np.floor(frac[self._rows][:, fold])
            self._fold_key = (ids.copy(), nlocal, fold.copy())
            self.fold_builds += 1
        kept = frac[self._rows]
        kept[:, fold] -= self._wrap
        return self._rows, origin + kept @ cell


def ghost_energy_forces(model, comm, ids, types, positions, nlocal: int, cache: GhostCache, cell=None,
                        origin=None, fold=(False, False, False)) -> dict:
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
    :func:`decomposed_energy_forces`.

    Args:
        model: a :class:`~nequip_np.model.nequip.NequIPModel`.
        comm: :class:`Comm` or :class:`SerialComm`.
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
            from nequip_np.data.neighborlist import cutoff_table_from_config, prune_edges

            table = cutoff_table_from_config(c.per_edge_type_cutoff, c.type_names, c.r_max)
            edge_index, shifts = prune_edges(edge_index, shifts, pos, box, types, table)
        graph = AtomicGraph(pos=pos, atom_types=types, edge_index=edge_index,
                            edge_shift=shifts.astype(np.float64), cell=box[None], pbc=fold[None].copy(),
                            batch=np.zeros(n, np.int64), num_atoms=np.array([n], np.int64))
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
    return {"energy": float(total[0]), "virial": total[1:10].reshape(3, 3), "forces": forces,
            "n_computed": part["n_computed"], "n_sent": int(rows.size), "model_s": part["model_s"]}


# --------------------------------------------------------------------------------------------------
# training: shards of every global batch, gradients summed
# --------------------------------------------------------------------------------------------------
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
    from nequip_np.train.loss import LossCoefficients, loss_and_grad

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
        grads[k] = total[offset:offset + n].reshape(model.params[k].shape)
        offset += n
    comps = {k: float(v) for k, v, b in zip(("per_atom_energy_mse", "forces_mse", "stress_mse"), total[-3:], base)
             if b > 0}
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
