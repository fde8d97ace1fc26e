r"""Datasets: reading frames (any ASE format, MD17-style .npz), splits, precomputed graphs, batches.

Units: everything inside the package is eV and Å. ``units="kcal/mol"`` multiplies energies (kcal/mol)
and forces (kcal/mol/Å) by :data:`~nequip_np.conventions.KCAL_MOL_TO_EV`, the factor nequip's
rMD17/MD22 data modules apply; positions are always Å.
"""
from __future__ import annotations

import os

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from ..conventions import KCAL_MOL_TO_EV
from .graph import batch_graphs, graph_from_atoms, labels_from_atoms

_UNITS = {"eV": 1.0, "kcal/mol": KCAL_MOL_TO_EV}

#: MD17 / rMD17 / sGDML key aliases, first match wins.
NPZ_KEYS = {
    "positions": ("R", "coords"),
    "numbers": ("z", "nuclear_charges"),
    "energy": ("E", "energies"),
    "forces": ("F", "forces"),
}


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------
def _pick(data, name, path):
    for key in NPZ_KEYS[name]:
        if key in data:
            return np.asarray(data[key])
    if name in ("positions", "numbers"):
        raise ValueError(f"{path}: npz has none of the keys {NPZ_KEYS[name]} for {name}; "
                         f"keys present: {sorted(data.keys())}")
    return None


def _index_to_slice(index, n):
    """An ASE-style index (int, slice or string like ':5', '-1', '::2') -> array of frame indices."""
    from ase.io.formats import string2index

    if isinstance(index, str):
        index = string2index(index)
    return np.arange(n)[index].reshape(-1)


def _read_npz(path, index):
    with np.load(path) as data:
        pos = _pick(data, "positions", path)
        z = _pick(data, "numbers", path).astype(np.int64).reshape(-1)
        energy = _pick(data, "energy", path)
        forces = _pick(data, "forces", path)
    if pos.ndim == 2:  # a single frame
        pos = pos[None]
        forces = None if forces is None else forces.reshape(1, -1, 3)
    if pos.shape[1:] != (len(z), 3):
        raise ValueError(f"{path}: positions have shape {pos.shape}, expected (frames, {len(z)}, 3)")
    frames = []
    for f in _index_to_slice(index, len(pos)):
        atoms = Atoms(numbers=z, positions=pos[f], pbc=False)
        results = {}
        if energy is not None:
            results["energy"] = float(np.asarray(energy).reshape(len(pos), -1)[f, 0])
        if forces is not None:
            results["forces"] = np.asarray(forces[f], dtype=np.float64)
        atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    return frames


def _read_ase(path, index, format):
    import ase.io

    try:
        frames = ase.io.read(path, index=index, format=format)
    except FileNotFoundError:
        raise
    except Exception as err:  # ASE parsers raise many types; report them uniformly
        raise ValueError(f"could not read {path!s} (format={format or 'guessed'}): "
                         f"{type(err).__name__}: {err}") from err
    return frames if isinstance(frames, list) else [frames]


def _relabel(atoms, energy, forces, stress):
    results = {}
    if energy is not None:
        results["energy"] = energy
    if forces is not None:
        results["forces"] = forces
    if stress is not None:
        results["stress"] = stress
    atoms.calc = SinglePointCalculator(atoms, **results)


def read_frames(path, index=":", format=None, units="eV", require=()):
    """Read labelled structures as a list of ``ase.Atoms`` with SinglePointCalculator labels.

    Args:
        path: any file ``ase.io.read`` understands (extxyz recommended), or an MD17/rMD17/sGDML-style
            ``.npz`` with keys ``R``/``coords`` (frames, N, 3), ``z``/``nuclear_charges`` (N,),
            optionally ``E``/``energies`` (frames,) or (frames, 1) and ``F``/``forces`` (frames, N, 3).
        index: ASE-style frame selection (``":"``, ``":5"``, ``"-1"``, an int or a slice).
        format: ASE format name, or ``"npz"``; guessed from the file name when None.
        units: ``"eV"`` (labels already eV, eV/Å) or ``"kcal/mol"`` (converted to eV).
        require: label names that every frame must have, e.g. ``("energy", "forces")``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file does not parse, unknown units, a required label is missing, or a label
            is not finite (the frame index and label are named).
    """
    if units not in _UNITS:
        raise ValueError(f"units must be one of {list(_UNITS)}, got {units!r}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such data file: {path}")
    if format == "npz" or (format is None and path.endswith(".npz")):
        try:
            frames = _read_npz(path, index)
        except (OSError, KeyError, EOFError) as err:
            raise ValueError(f"could not read {path} as npz: {type(err).__name__}: {err}") from err
    else:
        frames = _read_ase(path, index, format)
    factor = _UNITS[units]
    for f, atoms in enumerate(frames):
        energy, forces, stress = labels_from_atoms(atoms)
        for name, value in (("energy", energy), ("forces", forces), ("stress", stress)):
            if value is None and name in require:
                raise ValueError(f"{path}: frame {f} has no {name!r} label (required: {list(require)})")
            if value is not None and not np.all(np.isfinite(value)):
                raise ValueError(f"{path}: frame {f} has a non-finite {name!r} label")
        if factor != 1.0:
            if stress is not None:
                raise ValueError(f"{path}: unit conversion of stress labels is not supported")
            energy = None if energy is None else energy * factor
            forces = None if forces is None else forces * factor
        _relabel(atoms, energy, forces, stress)
    return frames


# --------------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------------
def _as_count(size, n_frames, name):
    """A float is a fraction of ``n_frames`` (rounded down), an int a count; None passes through."""
    if size is None:
        return None
    if isinstance(size, (float, np.floating)):
        if not 0.0 <= size <= 1.0:
            raise ValueError(f"{name} fraction must lie in [0, 1], got {size}")
        return int(np.floor(size * n_frames + 1e-9))
    if int(size) != size or size < 0:
        raise ValueError(f"{name} size must be a non-negative int or a fraction, got {size!r}")
    return int(size)


def split_indices(n_frames, train, val, test=None, seed=0):
    """Random disjoint train/val/test frame indices.

    Sizes are counts (int) or fractions of ``n_frames`` (float in [0, 1], rounded down; a float is
    always a fraction, so ``1.0`` is every frame and ``1`` one frame). ``test=None``
    takes every remaining frame. The permutation is ``np.random.default_rng(seed).permutation``, so a
    split is reproducible from ``(n_frames, sizes, seed)`` (it differs from nequip's torch generator).

    Returns:
        ``(train_idx, val_idx, test_idx)`` int64 arrays.

    Example:
        >>> [len(x) for x in split_indices(10, 0.5, 2)]
        [5, 2, 3]
    """
    n_tr = _as_count(train, n_frames, "train")
    n_va = _as_count(val, n_frames, "val")
    n_te = _as_count(test, n_frames, "test")
    if n_te is None:
        n_te = n_frames - n_tr - n_va
    if n_tr + n_va + max(n_te, 0) > n_frames or n_te < 0:
        raise ValueError(f"split train={train}, val={val}, test={test} needs "
                         f"{n_tr + n_va + max(n_te, 0)} frames but the data have {n_frames}")
    perm = np.random.default_rng(seed).permutation(n_frames).astype(np.int64)
    return perm[:n_tr], perm[n_tr:n_tr + n_va], perm[n_tr + n_va:n_tr + n_va + n_te]


# --------------------------------------------------------------------------------------------------
# graphs and batches
# --------------------------------------------------------------------------------------------------
class GraphDataset:
    """Frames converted once to labelled single-frame :class:`~nequip_np.data.graph.AtomicGraph` s.

    Args:
        frames: list of ``ase.Atoms`` (e.g. from :func:`read_frames`).
        type_names: model type names (chemical symbols).
        r_max: cutoff in Å.
        per_edge_type_cutoff: optional nequip-style per-edge-type cutoffs.
    """

    def __init__(self, frames, type_names, r_max, per_edge_type_cutoff=None):
        self.type_names = list(type_names)
        self.r_max = float(r_max)
        self.per_edge_type_cutoff = per_edge_type_cutoff
        self.graphs = []
        for f, atoms in enumerate(frames):
            try:
                self.graphs.append(graph_from_atoms(atoms, self.type_names, self.r_max,
                                                    per_edge_type_cutoff, with_labels=True))
            except ValueError as err:
                raise ValueError(f"frame {f}: {err}") from err

    def __len__(self):
        return len(self.graphs)

    def __getitem__(self, index):
        return self.graphs[index]

    def subset(self, indices):
        """A dataset view holding the graphs at ``indices`` (graphs are shared, not copied)."""
        out = GraphDataset.__new__(GraphDataset)
        out.type_names, out.r_max = self.type_names, self.r_max
        out.per_edge_type_cutoff = self.per_edge_type_cutoff
        out.graphs = [self.graphs[int(i)] for i in indices]
        return out

    def __repr__(self):
        return f"GraphDataset(n_frames={len(self)}, type_names={self.type_names}, r_max={self.r_max})"


def iterate_batches(dataset, batch_size, shuffle=False, rng=None):
    """Yield batched graphs of ``batch_size`` frames (the last batch may be smaller).

    Args:
        dataset: a :class:`GraphDataset` or a sequence of graphs.
        batch_size: frames per batch (≥ 1).
        shuffle: draw a fresh permutation from ``rng`` for this pass.
        rng: ``np.random.Generator`` (or a seed); required when ``shuffle`` is True, so that every
            shuffle is reproducible.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(dataset)
    if shuffle:
        if rng is None:
            raise ValueError("shuffle=True needs an rng (np.random.Generator or seed)")
        order = np.random.default_rng(rng).permutation(n)
    else:
        order = np.arange(n)
    for start in range(0, n, batch_size):
        yield batch_graphs([dataset[int(i)] for i in order[start:start + batch_size]])
