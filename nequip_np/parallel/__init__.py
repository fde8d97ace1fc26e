"""Several processes: MD energies/forces split over MPI ranks, and data-parallel training.

See :mod:`nequip_np.parallel.mpi` and ``docs/lammps_mpi.md``. mpi4py is optional
(``pip install 'nequip-np[mpi]'``); in a single process everything runs on :class:`SerialComm`, and
:func:`run_thread_ranks` runs several ranks as threads (same results, no MPI; for tests and notebooks).
"""
from nequip_np.parallel.mpi import (
    Comm, DataParallel, GhostCache, OwnerMap, SerialComm, data_parallel_from_environment, decomposed_energy_forces,
    ghost_energy_forces, launched_size, owned_energy_forces, receptive_subgraph, shard_loss_and_grad,
    world,
)
from nequip_np.parallel.threads import ThreadComm, run_thread_ranks, slab_ghosts

__all__ = ["Comm", "DataParallel", "GhostCache", "OwnerMap", "SerialComm", "ThreadComm", "data_parallel_from_environment",
           "decomposed_energy_forces", "ghost_energy_forces", "launched_size", "owned_energy_forces",
           "receptive_subgraph", "run_thread_ranks", "shard_loss_and_grad", "slab_ghosts", "world"]
