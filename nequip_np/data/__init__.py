"""Neighbour lists, atomic graphs and batches, datasets, splits and dataset statistics.

See ``docs/data.md`` for the neighbour-list algorithm, file formats, units and statistic definitions,
and ``docs/md.md`` for the Verlet list reused between MD steps (:class:`NeighborListCache`).
"""

from .dataset import ConcatDataset, GraphDataset, iter_frames, iterate_batches, read_frames, split_indices
from .graph import (
    AtomicGraph,
    batch_graphs,
    graph_from_arrays,
    graph_from_atoms,
    labels_from_atoms,
    split_batch,
    type_map_from_symbols,
)
from .neighborlist import (
    cell_list_info,
    csr_offsets,
    cutoff_table_from_config,
    neighbor_list,
    neighbor_list_bruteforce,
    prune_edges,
)
from .stats import (
    compute_statistics,
    forces_rms,
    isolated_atom_shifts,
    num_neighbors_mean,
    per_atom_energy_mean,
    per_atom_energy_std,
    per_type_energy_shifts_least_squares,
    per_type_forces_rms,
    per_type_num_neighbors_mean,
    streaming_statistics,
    total_energy_std,
)
from .store import FrameStore, StreamedDataset, prepare_store, write_store
from .verlet import NeighborListCache

__all__ = [
    "AtomicGraph",
    "ConcatDataset",
    "FrameStore",
    "GraphDataset",
    "NeighborListCache",
    "StreamedDataset",
    "graph_from_arrays",
    "iter_frames",
    "prepare_store",
    "streaming_statistics",
    "write_store",
    "batch_graphs",
    "cell_list_info",
    "compute_statistics",
    "csr_offsets",
    "cutoff_table_from_config",
    "forces_rms",
    "graph_from_atoms",
    "isolated_atom_shifts",
    "iterate_batches",
    "labels_from_atoms",
    "neighbor_list",
    "neighbor_list_bruteforce",
    "num_neighbors_mean",
    "per_atom_energy_mean",
    "per_atom_energy_std",
    "per_type_energy_shifts_least_squares",
    "per_type_forces_rms",
    "per_type_num_neighbors_mean",
    "prune_edges",
    "read_frames",
    "split_batch",
    "split_indices",
    "total_energy_std",
    "type_map_from_symbols",
]
