r"""Several "ranks" in one process, as threads: for tests, notebooks and trying decompositions without MPI.

:func:`run_thread_ranks` runs ``work(comm)`` on ``size`` threads; each gets a :class:`ThreadComm` with the
collectives of :class:`nequip_np.parallel.comm.Comm` (``sum`` in rank order, ``allgatherv``,
``alltoallv``, ``allgather_object``), implemented with a barrier and shared slots. The numerical
results are those of the same code under ``mpirun``; the speed is not (the threads share the GIL).

:func:`slab_ghosts` builds what an MD engine such as LAMMPS gives one rank of a slab decomposition along
x of an orthorhombic periodic box: the atoms it owns, then ghost copies (periodic images, its own
atoms' included) within a distance ``cut`` of its slab.
"""

from __future__ import annotations

import threading

import numpy as np


class _World:
    def __init__(self, size: int, timeout: float):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=timeout)
        self.slots = [None] * size


class ThreadComm:
    """Rank ``rank`` of a group of threads (see :func:`run_thread_ranks`)."""

    def __init__(self, world: _World, rank: int):
        self._world, self.rank, self.size = world, rank, world.size

    def _exchange(self, obj):
        w = self._world
        w.barrier.wait()
        w.slots[self.rank] = obj
        w.barrier.wait()
        every = list(w.slots)
        w.barrier.wait()
        return every

    def sum(self, a):
        every = self._exchange(np.array(a, dtype=np.float64))
        out = every[0].copy()
        for e in every[1:]:
            out += e
        return out

    def allgatherv(self, a):
        every = self._exchange(np.ascontiguousarray(a))
        return np.concatenate(every), np.array([e.shape[0] for e in every])

    def alltoallv(self, parts):
        every = self._exchange([np.ascontiguousarray(p) for p in parts])
        got = [every[r][self.rank] for r in range(self.size)]
        return np.concatenate(got), np.array([g.shape[0] for g in got])

    def allgather_object(self, obj):
        return self._exchange(obj)

    def barrier(self):
        self._world.barrier.wait()


def run_thread_ranks(size: int, work, timeout: float = 120.0) -> list:
    """Run ``work(comm)`` on ``size`` thread ranks; returns each rank's result (or its exception).

    Raises:
        ValueError: ``size`` < 1.
        RuntimeError: a rank was still running after ``timeout`` seconds (waiting in a collective that
            another rank never joined).
    """
    if int(size) < 1:
        raise ValueError(f"size must be a number of ranks >= 1, got {size}")
    world = _World(int(size), timeout)
    results = [None] * world.size

    def target(rank):
        try:
            results[rank] = work(ThreadComm(world, rank))
        except Exception as exc:  # noqa: BLE001 - handed back to the caller
            results[rank] = exc

    threads = [threading.Thread(target=target, args=(r,), daemon=True) for r in range(world.size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    if any(t.is_alive() for t in threads):
        raise RuntimeError(
            f"a rank is still running after {timeout} s: it waits in a collective another rank never joined"
        )
    return results


def slab_ghosts(positions, cell_lengths, types, rank: int, size: int, cut: float, rng=None):
    """Owned atoms and ghost images of rank ``rank`` when an orthorhombic box is cut into ``size`` slabs along x.

    Args:
        positions: (N, 3) positions (wrapped into the box here).
        cell_lengths: (3,) box lengths (orthorhombic, periodic in all directions).
        types: (N,) type indices.
        cut: ghost cutoff: every image within ``cut`` of the slab (on all sides) is a ghost.
        rng: optional generator to shuffle the owned atoms (the order an engine stores them in is arbitrary).

    Returns:
        ``(ids, types, positions, nlocal)`` with owned rows first; ids are atom index + 1.
    """
    lengths = np.asarray(cell_lengths, dtype=np.float64)
    pos = np.asarray(positions, dtype=np.float64) % lengths
    types = np.asarray(types)
    lo = np.array([rank * lengths[0] / size, 0.0, 0.0])
    hi = np.array([(rank + 1) * lengths[0] / size, lengths[1], lengths[2]])
    mine = np.flatnonzero((pos[:, 0] >= lo[0]) & (pos[:, 0] < hi[0]))
    if rng is not None:
        mine = rng.permutation(mine)
    reach = np.ceil(cut / lengths).astype(int) + 1
    ghost_index, ghost_pos = [], []
    for shift in np.ndindex(*(2 * reach + 1)):
        n = np.array(shift) - reach
        image = pos + n * lengths
        inside = np.all((image >= lo - cut) & (image < hi + cut), axis=1)
        if not n.any():
            inside[mine] = False
        ghost_index.append(np.flatnonzero(inside))
        ghost_pos.append(image[inside])
    index = np.concatenate([mine] + ghost_index).astype(np.int64)
    return index + 1, types[index], np.concatenate([pos[mine]] + ghost_pos), int(mine.size)
