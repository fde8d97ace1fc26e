"""The names this module held before it was split by concern; import them from their homes instead.

* :mod:`nequip_np.parallel.comm` — communicators (:class:`Comm`, :class:`SerialComm`, :func:`world`);
* :mod:`nequip_np.parallel.receptive` — owned atoms on their receptive subgraph (both decompositions);
* :mod:`nequip_np.parallel.gather` — the decomposition where every rank holds the whole system;
* :mod:`nequip_np.parallel.ghost` — the decomposition on the MD engine's ghost atoms;
* :mod:`nequip_np.train.data_parallel` — data-parallel training.

Nothing inside the package imports this module (tests/test_layers.py checks that), so its import of
``nequip_np.train`` — the one import from ``parallel`` upwards — cannot form a cycle.
"""

# ruff: noqa: F401  (re-exports)
from nequip_np.parallel.comm import (
    _SIZE_VARIABLES,
    Comm,
    SerialComm,
    launched_size,
    local_ranks,
    share_cores_between_ranks,
    world,
)
from nequip_np.parallel.gather import decomposed_energy_forces
from nequip_np.parallel.ghost import GhostCache, OwnerMap, _fold_rows, ghost_energy_forces
from nequip_np.parallel.receptive import hop_distance, owned_energy_forces, receptive_subgraph
from nequip_np.train.data_parallel import (
    DataParallel,
    _loss_counts,
    data_parallel_from_environment,
    shard_frames,
    shard_loss_and_grad,
)
