r"""The communicator: the few collectives the decompositions and data-parallel training use.

:class:`Comm` wraps an mpi4py communicator (``rank``, ``size``, ``allgatherv``, ``sum``, ``alltoallv``,
``allgather_object``, ``barrier``); :class:`SerialComm` is the communicator of a single process, and
:class:`~nequip_np.parallel.threads.ThreadComm` runs several ranks as threads. :func:`world` picks
mpi4py's ``COMM_WORLD`` when an MPI launcher started several ranks, else :class:`SerialComm`, so the
same code runs with and without ``mpirun``. mpi4py is optional (``pip install 'nequip-np[mpi]'``).

``sum`` is formed in rank order from an allgather, so every rank holds bit-identical results.
"""

from __future__ import annotations

import os

import numpy as np

#: environment variables that MPI launchers set to the world size (MPICH/Hydra, Open MPI)
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")


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
