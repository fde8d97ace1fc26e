"""Several processes: MD energies/forces split over MPI ranks, and data-parallel training.

See :mod:`nequip_np.parallel.mpi` and ``docs/lammps_mpi.md``. mpi4py is optional
(``pip install 'nequip-np[mpi]'``); in a single process everything runs on :class:`SerialComm`.
"""
from nequip_np.parallel.mpi import (
    Comm, DataParallel, SerialComm, data_parallel_from_environment, decomposed_energy_forces,
    launched_size, owned_energy_forces, receptive_subgraph, shard_loss_and_grad, world,
)

__all__ = ["Comm", "DataParallel", "SerialComm", "data_parallel_from_environment", "decomposed_energy_forces",
           "launched_size", "owned_energy_forces", "receptive_subgraph", "shard_loss_and_grad", "world"]
