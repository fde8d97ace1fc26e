r"""Training-set statistics with nequip 0.19.1's meanings (reference §3.3, ``docs/data.md``).

All in float64, computed exactly (one pass over concatenated arrays rather than running means).

=================================  =====================================================================
name                               definition
=================================  =====================================================================
``num_neighbors_mean``             :math:`E / N`: edges per atom, all atoms of all frames
``per_type_num_neighbors_mean``    :math:`E_t / N_t`, edges whose **centre** has type t per atom of type t
``per_atom_energy_mean``           :math:`\frac{1}{F}\sum_f E_f / N_f`
``per_atom_energy_std``            unbiased std over frames of :math:`E_f / N_f`
``total_energy_std``               unbiased std over frames of :math:`E_f`
``forces_rms``                     :math:`\sqrt{\frac{1}{3N}\sum_{i,c} F_{ic}^2}`
``per_type_forces_rms``            the same over atoms of type t
``per_type_energy_shifts``         least squares :math:`\min_s \sum_f (\sum_t n_{ft} s_t - E_f)^2`
=================================  =====================================================================

A type absent from the data gets NaN in the per-type dicts (nequip's padding quirk of assigning counts
to the wrong type is not reproduced).
"""

from __future__ import annotations

import numpy as np

from .graph import AtomicGraph, batch_graphs


def _as_batch(graphs) -> AtomicGraph:
    """One AtomicGraph from a batch, a list of graphs, or a GraphDataset."""
    if isinstance(graphs, AtomicGraph):
        return graphs
    graphs = list(graphs.graphs if hasattr(graphs, "graphs") else graphs)
    if not graphs:
        raise ValueError("statistics need at least one graph")
    return batch_graphs(graphs)


def _need(graph, name):
    value = getattr(graph, name)
    if value is None:
        raise ValueError(f"statistic needs the {name!r} label on every frame, some frame lacks it")
    return np.asarray(value, dtype=np.float64)


def _per_type(values, types, type_names):
    """Dict name -> mean of ``values`` over entries of that type (NaN if absent)."""
    out = {}
    for t, name in enumerate(type_names):
        sel = types == t
        out[name] = float(values[sel].mean()) if sel.any() else float("nan")
    return out


def num_neighbors_mean(graphs) -> float:
    """Edges per atom, :math:`E / N` over all frames."""
    g = _as_batch(graphs)
    return g.n_edges / g.n_atoms


def per_type_num_neighbors_mean(graphs, type_names) -> dict:
    """Per centre type t: number of edges with a type-t centre / number of type-t atoms."""
    g = _as_batch(graphs)
    counts = np.bincount(g.edge_index[0], minlength=g.n_atoms).astype(np.float64)
    return _per_type(counts, g.atom_types, type_names)


def _per_atom_energy(g):
    return _need(g, "energy") / g.num_atoms


def per_atom_energy_mean(graphs) -> float:
    """Mean over frames of :math:`E_f / N_f`."""
    return float(_per_atom_energy(_as_batch(graphs)).mean())


def per_atom_energy_std(graphs) -> float:
    """Unbiased standard deviation over frames of :math:`E_f / N_f` (NaN for one frame)."""
    e = _per_atom_energy(_as_batch(graphs))
    return float(e.std(ddof=1)) if len(e) > 1 else float("nan")


def total_energy_std(graphs) -> float:
    """Unbiased standard deviation over frames of :math:`E_f` (NaN for one frame)."""
    e = _need(_as_batch(graphs), "energy")
    return float(e.std(ddof=1)) if len(e) > 1 else float("nan")


def forces_rms(graphs) -> float:
    """RMS over all force components of all atoms."""
    f = _need(_as_batch(graphs), "forces")
    return float(np.sqrt(np.mean(f * f)))


def per_type_forces_rms(graphs, type_names) -> dict:
    """RMS over the force components of the atoms of each type."""
    g = _as_batch(graphs)
    f = _need(g, "forces")
    ms = _per_type(np.mean(f * f, axis=1), g.atom_types, type_names)
    return {name: float(np.sqrt(v)) for name, v in ms.items()}


def type_counts(graphs, n_types) -> np.ndarray:
    """(F, T) number of atoms of each type in each frame."""
    g = _as_batch(graphs)
    counts = np.zeros((g.n_frames, n_types), np.float64)
    np.add.at(counts, (g.batch, g.atom_types), 1.0)
    return counts


def per_type_energy_shifts_least_squares(graphs, type_names) -> dict:
    r"""Per-type energies :math:`s` minimising :math:`\|n s - E\|^2`, ``n`` the (F, T) type counts.

    Uses ``np.linalg.lstsq``: with collinear compositions (e.g. one molecule, as in MD17) the
    minimum-norm solution is returned, which splits the mean energy over types by count.
    """
    g = _as_batch(graphs)
    counts = type_counts(g, len(type_names))
    shifts, *_ = np.linalg.lstsq(counts, _need(g, "energy"), rcond=None)
    return {name: float(s) for name, s in zip(type_names, shifts)}


def isolated_atom_shifts(config_dict, type_names) -> dict:
    """Per-type shifts from isolated-atom energies given in a config.

    Accepts ``{"isolated_atom_energies": {symbol: eV}}`` (the layout of nequip's dataset-statistics
    files) or the inner ``{symbol: eV}`` directly; every type name must be present.
    """
    table = config_dict.get("isolated_atom_energies", config_dict)
    missing = [name for name in type_names if name not in table]
    if missing:
        raise ValueError(f"isolated-atom energies missing for types {missing}; given: {sorted(table)}")
    return {name: float(table[name]) for name in type_names}


def compute_statistics(graphs, type_names) -> dict:
    """All statistics above for a training set; label-based ones are skipped if a label is absent."""
    g = _as_batch(graphs)
    type_names = list(type_names)
    stats = {
        "num_neighbors_mean": num_neighbors_mean(g),
        "per_type_num_neighbors_mean": per_type_num_neighbors_mean(g, type_names),
    }
    if g.energy is not None:
        stats.update(
            per_atom_energy_mean=per_atom_energy_mean(g),
            per_atom_energy_std=per_atom_energy_std(g),
            total_energy_std=total_energy_std(g),
            per_type_energy_shifts=per_type_energy_shifts_least_squares(g, type_names),
        )
    if g.forces is not None:
        stats.update(forces_rms=forces_rms(g), per_type_forces_rms=per_type_forces_rms(g, type_names))
    return stats


def streaming_statistics(dataset, type_names) -> dict:
    r""":func:`compute_statistics` in one pass over ``dataset`` (graphs built one at a time).

    Memory is O(F·T) (per-frame energies and type counts, for the standard deviations and the
    least-squares shifts) instead of O(atoms + edges); edge, atom and squared-force sums are
    accumulated per type in float64. A label is used only if every frame has it. This is what
    training uses, for in-memory and streamed datasets alike, so both get the same numbers.
    """
    type_names = list(type_names)
    nt = len(type_names)
    edges_t, atoms_t, f2_t = np.zeros(nt), np.zeros(nt), np.zeros(nt)
    energy, counts = [], []
    has_e = has_f = True
    for k in range(len(dataset)):
        g = dataset[k]
        c = np.bincount(g.atom_types, minlength=nt).astype(np.float64)
        atoms_t += c
        edges_t += np.bincount(g.atom_types[g.edge_index[0]], minlength=nt)
        counts.append(c)
        has_e = has_e and g.energy is not None
        if has_e:
            energy.append(float(g.energy[0]))
        has_f = has_f and g.forces is not None
        if has_f:
            f2_t += np.bincount(g.atom_types, weights=np.sum(g.forces * g.forces, axis=1), minlength=nt)
    if not counts:
        raise ValueError("statistics need at least one graph")
    with np.errstate(invalid="ignore", divide="ignore"):
        per_type_nn = edges_t / atoms_t
        per_type_frms = np.sqrt(f2_t / (3.0 * atoms_t))
    stats = {
        "num_neighbors_mean": float(edges_t.sum() / atoms_t.sum()),
        "per_type_num_neighbors_mean": {n: float(v) for n, v in zip(type_names, per_type_nn)},
    }
    counts = np.array(counts)
    if has_e:
        e = np.array(energy)
        e_atom = e / counts.sum(axis=1)
        shifts, *_ = np.linalg.lstsq(counts, e, rcond=None)
        stats.update(
            per_atom_energy_mean=float(e_atom.mean()),
            per_atom_energy_std=float(e_atom.std(ddof=1)) if len(e) > 1 else float("nan"),
            total_energy_std=float(e.std(ddof=1)) if len(e) > 1 else float("nan"),
            per_type_energy_shifts={n: float(x) for n, x in zip(type_names, shifts)},
        )
    if has_f:
        stats.update(
            forces_rms=float(np.sqrt(f2_t.sum() / (3.0 * atoms_t.sum()))),
            per_type_forces_rms={n: float(v) for n, v in zip(type_names, per_type_frms)},
        )
    return stats
