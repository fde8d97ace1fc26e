"""Several processes: MD energies and forces split over MPI ranks.

* :mod:`~nequip_np.parallel.comm` — the communicator (:class:`Comm` over mpi4py, :class:`SerialComm`
  in one process, :func:`world` to pick one); mpi4py is optional (``pip install 'nequip-np[mpi]'``);
* :mod:`~nequip_np.parallel.threads` — several ranks as threads (:func:`run_thread_ranks`: same results,
  no MPI; for tests and notebooks);
* :mod:`~nequip_np.parallel.receptive` — the owned atoms' energy and partial forces on their receptive
  subgraph, shared by the two decompositions;
* :mod:`~nequip_np.parallel.gather` (every rank holds the whole system) and
  :mod:`~nequip_np.parallel.ghost` (the MD engine's ghost atoms).

Data-parallel training lives in :mod:`nequip_np.train.data_parallel` (training is built on this
package, not the other way round); its names are still reachable from here. ``docs/lammps_mpi.md``
explains both uses.
"""

from nequip_np.parallel.comm import Comm, SerialComm, launched_size, world
from nequip_np.parallel.gather import decomposed_energy_forces
from nequip_np.parallel.ghost import GhostCache, OwnerMap, ghost_energy_forces
from nequip_np.parallel.receptive import owned_energy_forces, receptive_subgraph
from nequip_np.parallel.threads import ThreadComm, run_thread_ranks, slab_ghosts

#: names of :mod:`nequip_np.train.data_parallel` reachable from here (see __getattr__)
_TRAINING = ("DataParallel", "data_parallel_from_environment", "shard_loss_and_grad")

__all__ = [
    "Comm",
    "GhostCache",
    "OwnerMap",
    "SerialComm",
    "ThreadComm",
    "decomposed_energy_forces",
    "ghost_energy_forces",
    "launched_size",
    "owned_energy_forces",
    "receptive_subgraph",
    "run_thread_ranks",
    "slab_ghosts",
    "world",
    *_TRAINING,
]


def __getattr__(name):
    # Training sits above this package and imports nequip_np.parallel.comm; importing it here at the top
    # would make nequip_np.train.data_parallel import itself half-initialised. Looked up on first use.
    if name in _TRAINING:
        from nequip_np.train import data_parallel

        return getattr(data_parallel, name)
    raise AttributeError(f"module 'nequip_np.parallel' has no attribute {name!r}")
