r"""Atomic graphs: one structure or a batch of structures, as the model consumes them.

Fields follow nequip 0.19.1's data keys (reference §1.3): ``pos``, ``atom_types``, ``edge_index``
(``[centre, neighbour]``), ``edge_shift`` (float integer-valued shifts, nequip's ``edge_cell_shift``),
``cell`` (F, 3, 3) rows = lattice vectors, ``pbc`` (F, 3), ``batch`` (N,) frame of each atom and
``num_atoms`` (F,). A single structure is a batch with F = 1. Labels are optional: ``energy`` (F,),
``forces`` (N, 3), ``stress`` (F, 3, 3) with ASE's sign (positive = tensile), all eV/Å units.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

from ..conventions import voigt_to_stress
from .neighborlist import cutoff_table_from_config, neighbor_list, prune_edges


@dataclass
class AtomicGraph:
    """A batch of F structures with N atoms and E edges in total (see module docstring)."""

    pos: np.ndarray  # (N, 3) float64
    atom_types: np.ndarray  # (N,) int64
    edge_index: np.ndarray  # (2, E) int64
    edge_shift: np.ndarray  # (E, 3) float64
    cell: np.ndarray  # (F, 3, 3) float64
    pbc: np.ndarray  # (F, 3) bool
    batch: np.ndarray  # (N,) int64
    num_atoms: np.ndarray  # (F,) int64
    energy: np.ndarray | None = None  # (F,) float64
    forces: np.ndarray | None = None  # (N, 3) float64
    stress: np.ndarray | None = None  # (F, 3, 3) float64

    @property
    def n_frames(self) -> int:
        return int(self.num_atoms.shape[0])

    @property
    def n_atoms(self) -> int:
        return int(self.pos.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def edge_vectors(self) -> np.ndarray:
        r"""(E, 3) :math:`r_{ij} = r_j - r_i + S_{ij}\,\mathrm{cell}_{b(i)}` in float64."""
        i, j = self.edge_index
        cell = self.cell[self.batch[i]]
        return self.pos[j] - self.pos[i] + np.einsum("ek,ekc->ec", self.edge_shift, cell)

    def __repr__(self) -> str:
        labels = [k for k in ("energy", "forces", "stress") if getattr(self, k) is not None]
        return f"AtomicGraph(n_frames={self.n_frames}, n_atoms={self.n_atoms}, n_edges={self.n_edges}, labels={labels})"


# --------------------------------------------------------------------------------------------------
# species -> types
# --------------------------------------------------------------------------------------------------
def type_map_from_symbols(type_names, chemical_species_to_atom_type_map=None):
    """Map chemical symbols to type indices (position in ``type_names``).

    Args:
        type_names: model type names, e.g. ``["H", "C", "O"]``.
        chemical_species_to_atom_type_map: optional ``{symbol: type_name}`` (nequip's option of that
            name) when type names are not chemical symbols; default identity.

    Returns:
        dict ``{symbol: type index}``.

    Example:
        >>> type_map_from_symbols(["H", "C", "O"])
        {'H': 0, 'C': 1, 'O': 2}
    """
    type_names = list(type_names)
    if len(set(type_names)) != len(type_names):
        raise ValueError(f"type_names contain duplicates: {type_names}")
    species = chemical_species_to_atom_type_map or {name: name for name in type_names}
    out = {}
    for symbol, name in species.items():
        if symbol not in atomic_numbers:
            raise ValueError(
                f"{symbol!r} is not a chemical symbol; give chemical_species_to_atom_type_map "
                f"{{symbol: type_name}} for type_names={type_names}"
            )
        if name not in type_names:
            raise ValueError(f"species {symbol!r} maps to unknown type {name!r}; type_names={type_names}")
        out[symbol] = type_names.index(name)
    return out


def atom_types_from_numbers(numbers, type_map, type_names=None):
    """(N,) atomic numbers -> (N,) int64 type indices; an unknown element raises ValueError."""
    lookup = np.full(len(chemical_symbols), -1, np.int64)
    for symbol, t in type_map.items():
        lookup[atomic_numbers[symbol]] = t
    numbers = np.asarray(numbers, dtype=np.int64)
    types = lookup[numbers]
    if np.any(types < 0):
        unknown = sorted({chemical_symbols[z] for z in numbers[types < 0]})
        known = list(type_names) if type_names is not None else sorted(type_map)
        raise ValueError(f"element(s) {unknown} not in the model's types; known type names: {known}")
    return types


# --------------------------------------------------------------------------------------------------
# labels from ASE
# --------------------------------------------------------------------------------------------------
def _stress_3x3(value):
    value = np.asarray(value, dtype=np.float64)
    if value.shape == (6,):
        return voigt_to_stress(value)
    if value.size == 9:
        return value.reshape(3, 3)
    raise ValueError(f"stress must be Voigt (6,) or 3x3, got shape {value.shape}")


def labels_from_atoms(atoms):
    """(energy, forces, stress) of one ``ase.Atoms``; each None when absent.

    Calculator results (e.g. a SinglePointCalculator, as ASE's extxyz reader makes) take priority over
    ``atoms.info['energy'|'stress']`` and ``atoms.arrays['forces']``. Stress is returned 3x3.
    """
    results = dict(getattr(atoms.calc, "results", None) or {})
    energy = results.get("energy", results.get("free_energy", atoms.info.get("energy")))
    forces = results.get("forces", atoms.arrays.get("forces"))
    stress = results.get("stress", atoms.info.get("stress"))
    energy = None if energy is None else float(energy)
    forces = None if forces is None else np.asarray(forces, dtype=np.float64).reshape(len(atoms), 3)
    stress = None if stress is None else _stress_3x3(stress)
    return energy, forces, stress


# --------------------------------------------------------------------------------------------------
# construction and batching
# --------------------------------------------------------------------------------------------------
def graph_from_atoms(
    atoms, type_names, r_max, per_edge_type_cutoff=None, with_labels=False, chemical_species_to_atom_type_map=None
):
    """Build the (single-frame) graph of an ``ase.Atoms``.

    Args:
        atoms: the structure; species are mapped to types by chemical symbol.
        type_names: model type names (chemical symbols unless a species map is given).
        r_max: cutoff radius in Å.
        per_edge_type_cutoff: optional nequip-style per-edge-type cutoffs (≤ r_max), see
            :func:`~nequip_np.data.neighborlist.cutoff_table_from_config`.
        with_labels: attach energy / forces / stress when the structure carries them.
        chemical_species_to_atom_type_map: optional ``{symbol: type_name}``.

    Raises:
        ValueError: empty structure, unknown element, non-finite positions, singular periodic cell,
            coincident atoms.
    """
    graph = graph_from_arrays(
        atoms.numbers,
        atoms.positions,
        atoms.cell.array,
        atoms.pbc,
        type_names,
        r_max,
        per_edge_type_cutoff,
        chemical_species_to_atom_type_map=chemical_species_to_atom_type_map,
    )
    if with_labels:
        energy, forces, stress = labels_from_atoms(atoms)
        graph.energy = None if energy is None else np.array([energy])
        graph.forces = forces
        graph.stress = None if stress is None else stress[None]
    return graph


def graph_from_arrays(
    numbers,
    positions,
    cell,
    pbc,
    type_names,
    r_max,
    per_edge_type_cutoff=None,
    edges=None,
    chemical_species_to_atom_type_map=None,
):
    """The unlabelled one-frame graph of atomic numbers (N,), positions (N, 3), cell (3, 3), pbc (3,).

    ``edges``: a precomputed ``(edge_index (2, E), edge_shift (E, 3))`` for exactly this ``r_max`` and
    cutoff table (e.g. cached on disk); otherwise the neighbour list is built here.
    """
    if len(numbers) == 0:
        raise ValueError("cannot build a graph of an empty structure (0 atoms)")
    type_map = type_map_from_symbols(type_names, chemical_species_to_atom_type_map)
    types = atom_types_from_numbers(np.asarray(numbers), type_map, type_names)
    pos = np.array(positions, dtype=np.float64)
    pbc = np.array(pbc, dtype=bool)
    cell = np.array(cell, dtype=np.float64)  # kept whole: a slab's volume needs it
    if edges is None:
        edge_index, shifts = neighbor_list(pos, cell, pbc, r_max)
        if per_edge_type_cutoff is not None:
            table = cutoff_table_from_config(per_edge_type_cutoff, type_names, r_max)
            edge_index, shifts = prune_edges(edge_index, shifts, pos, cell, types, table)
    else:
        edge_index, shifts = (np.asarray(edges[0], dtype=np.int64), edges[1])
    return AtomicGraph(
        pos=pos,
        atom_types=types,
        edge_index=edge_index,
        edge_shift=np.asarray(shifts, dtype=np.float64),
        cell=cell[None],
        pbc=pbc[None],
        batch=np.zeros(len(pos), np.int64),
        num_atoms=np.array([len(pos)], np.int64),
    )


def _cat_label(graphs, name):
    values = [getattr(g, name) for g in graphs]
    if any(v is None for v in values):
        return None
    return np.concatenate(values)


def batch_graphs(graphs):
    """Concatenate graphs (single frames or batches) into one batch.

    ``edge_index`` is offset by the cumulative atom count and ``batch`` by the cumulative frame count.
    A label is kept only if every graph has it.
    """
    graphs = list(graphs)
    if not graphs:
        raise ValueError("batch_graphs needs at least one graph")
    atom_offsets = np.cumsum([0] + [g.n_atoms for g in graphs[:-1]])
    frame_offsets = np.cumsum([0] + [g.n_frames for g in graphs[:-1]])
    return AtomicGraph(
        pos=np.concatenate([g.pos for g in graphs]),
        atom_types=np.concatenate([g.atom_types for g in graphs]),
        edge_index=np.concatenate([g.edge_index + a for g, a in zip(graphs, atom_offsets)], axis=1),
        edge_shift=np.concatenate([g.edge_shift for g in graphs]),
        cell=np.concatenate([g.cell for g in graphs]),
        pbc=np.concatenate([g.pbc for g in graphs]),
        batch=np.concatenate([g.batch + f for g, f in zip(graphs, frame_offsets)]),
        num_atoms=np.concatenate([g.num_atoms for g in graphs]),
        energy=_cat_label(graphs, "energy"),
        forces=_cat_label(graphs, "forces"),
        stress=_cat_label(graphs, "stress"),
    )


def split_batch(graph):
    """Inverse of :func:`batch_graphs` down to single frames: list of F one-frame graphs.

    Needs ``batch`` sorted (as :func:`batch_graphs` makes it).
    """
    atom_off = np.concatenate([[0], np.cumsum(graph.num_atoms)])
    edge_frame = graph.batch[graph.edge_index[0]]
    out = []
    for f in range(graph.n_frames):
        a0, a1 = atom_off[f], atom_off[f + 1]
        edges = edge_frame == f
        out.append(
            replace(
                graph,
                pos=graph.pos[a0:a1],
                atom_types=graph.atom_types[a0:a1],
                edge_index=graph.edge_index[:, edges] - a0,
                edge_shift=graph.edge_shift[edges],
                cell=graph.cell[f : f + 1],
                pbc=graph.pbc[f : f + 1],
                batch=np.zeros(a1 - a0, np.int64),
                num_atoms=graph.num_atoms[f : f + 1],
                energy=None if graph.energy is None else graph.energy[f : f + 1],
                forces=None if graph.forces is None else graph.forces[a0:a1],
                stress=None if graph.stress is None else graph.stress[f : f + 1],
            )
        )
    return out
