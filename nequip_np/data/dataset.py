r"""Datasets: reading frames (any ASE format, MD17-style .npz), splits, precomputed graphs, batches.

Units: everything inside the package is eV and Å. ``units="kcal/mol"`` multiplies energies (kcal/mol)
and forces (kcal/mol/Å) by :data:`~nequip_np.conventions.KCAL_MOL_TO_EV`, the factor nequip's
rMD17/MD22 data modules apply (``meV``, ``kJ/mol``, ``Hartree`` likewise, with ASE's constants);
positions are always Å.

Labels come from ASE's standard places (calculator results, ``info['energy'|'stress']``,
``arrays['forces']``) or, with ``key_mapping={key in the file: label}``, from any ``info`` /
``arrays`` / calculator key (``{"REF_energy": "energy", "dft_forces": "forces"}``). A ``virial``
label (``info['virial']``, or mapped) is converted to stress with nequip's convention
:math:`\sigma = -W / |\det \mathrm{cell}|` (virial = −stress × volume; positive stress = tensile,
ASE's sign) when the frame has no stress label.
"""

from __future__ import annotations

import os

import numpy as np
from ase import Atoms
from ase import units as _ase_units
from ase.calculators.singlepoint import SinglePointCalculator

from ..conventions import KCAL_MOL_TO_EV, voigt_to_stress
from .graph import batch_graphs, graph_from_atoms

_UNITS = {
    "eV": 1.0,
    "meV": 1e-3,
    "kcal/mol": KCAL_MOL_TO_EV,
    "kJ/mol": _ase_units.kJ / _ase_units.mol,
    "Hartree": _ase_units.Hartree,
}
LABELS = ("energy", "forces", "stress", "virial")

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
        raise ValueError(
            f"{path}: npz has none of the keys {NPZ_KEYS[name]} for {name}; keys present: {sorted(data.keys())}"
        )
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

    if os.path.getsize(path) == 0:
        raise ValueError(f"{path} is empty (0 bytes, no frames)")
    try:
        frames = ase.io.read(path, index=index, format=format)
    except FileNotFoundError:
        raise
    except Exception as err:  # ASE parsers raise many types; report them uniformly
        raise ValueError(
            f"could not read {path!s} (format={format or 'guessed'}): {type(err).__name__}: {err}"
        ) from err
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


def _find_key(atoms, key):
    results = getattr(atoms.calc, "results", None) or {}
    for table in (results, atoms.info, atoms.arrays):
        if key in table:
            return table[key]
    raise KeyError(key)


def _keys_present(atoms) -> str:
    results = sorted(getattr(atoms.calc, "results", None) or {})
    arrays = sorted(k for k in atoms.arrays if k not in ("numbers", "positions"))
    return f"info keys {sorted(atoms.info)}, arrays keys {arrays}, calculator results {results}"


def _stress_from_virial(virial, atoms, where):
    v = np.asarray(virial, dtype=np.float64)
    if v.size not in (6, 9):
        raise ValueError(f"{where}: the virial label has {v.size} values; expected 9 (3x3) or 6 (Voigt)")
    v = voigt_to_stress(v) if v.size == 6 else v.reshape(3, 3)
    volume = abs(np.linalg.det(atoms.cell.array))
    if not (np.all(atoms.pbc) and volume > 0):
        raise ValueError(
            f"{where}: a virial label needs a periodic cell with non-zero volume "
            f"(pbc={atoms.pbc.tolist()}, volume={volume})"
        )
    return -v / volume  # nequip: virial = -stress * volume


def _frame_labels(atoms, key_mapping, where):
    """(energy, forces, stress) of one frame, shapes checked, key_mapping and virial applied."""
    energy, forces, stress = labels_from_atoms_raw(atoms)
    virial = atoms.info.get("virial")
    for key, label in (key_mapping or {}).items():
        try:
            value = _find_key(atoms, key)
        except KeyError:
            raise ValueError(
                f"{where} has no key {key!r} (data.key_mapping maps it to {label!r}); {_keys_present(atoms)}"
            ) from None
        if label == "energy":
            energy = value
        elif label == "forces":
            forces = value
        elif label == "stress":
            stress = value
        else:
            virial = value
    n = len(atoms)
    if energy is not None:
        e = np.asarray(energy, dtype=np.float64)
        if e.size != 1:
            raise ValueError(f"{where}: the energy label has shape {e.shape}; expected one number per frame")
        energy = float(e.reshape(()))
    if forces is not None:
        f = np.asarray(forces, dtype=np.float64)
        if f.shape != (n, 3):
            raise ValueError(f"{where}: the forces label has shape {f.shape}; expected ({n}, 3) for its {n} atoms")
        forces = f
    if stress is not None:
        st = np.asarray(stress, dtype=np.float64)
        if st.size not in (6, 9):
            raise ValueError(f"{where}: the stress label has {st.size} values; expected 9 (3x3) or 6 (Voigt)")
        stress = voigt_to_stress(st) if st.size == 6 else st.reshape(3, 3)
    elif virial is not None:
        stress = _stress_from_virial(virial, atoms, where)
    return energy, forces, stress


def labels_from_atoms_raw(atoms):
    """Standard-place labels without shape normalisation (checked by the caller)."""
    results = dict(getattr(atoms.calc, "results", None) or {})
    energy = results.get("energy", results.get("free_energy", atoms.info.get("energy")))
    forces = results.get("forces", atoms.arrays.get("forces"))
    stress = results.get("stress", atoms.info.get("stress"))
    return energy, forces, stress


def read_frames(path, index=":", format=None, units="eV", require=(), key_mapping=None):
    """Read labelled structures as a list of ``ase.Atoms`` with SinglePointCalculator labels.

    Args:
        path: any file ``ase.io.read`` understands (extxyz recommended), or an MD17/rMD17/sGDML-style
            ``.npz`` with keys ``R``/``coords`` (frames, N, 3), ``z``/``nuclear_charges`` (N,),
            optionally ``E``/``energies`` (frames,) or (frames, 1) and ``F``/``forces`` (frames, N, 3).
        index: ASE-style frame selection (``":"``, ``":5"``, ``"-1"``, an int or a slice).
        format: ASE format name, or ``"npz"``; guessed from the file name when None.
        units: ``"eV"`` (labels already eV, eV/Å) or ``"kcal/mol"`` (converted to eV).
        require: label names that every frame must have, e.g. ``("energy", "forces")``.
        key_mapping: ``{key in the file: label}`` with labels ``energy``, ``forces``, ``stress``,
            ``virial`` (``total_energy`` is accepted for ``energy``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is empty or does not parse, unknown units, a mapped key or a required
            label is missing, a label has the wrong shape, or a label is not finite (the frame index
            and label are named).
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
    if not frames:
        raise ValueError(f"{path} holds no frames")
    key_mapping = _check_key_mapping(key_mapping)
    for f, atoms in enumerate(frames):
        _label_frame(atoms, f"{path}: frame {f}", key_mapping, _UNITS[units], require)
    return frames


def _check_key_mapping(key_mapping):
    key_mapping = {k: ("energy" if v == "total_energy" else v) for k, v in (key_mapping or {}).items()}
    bad = [v for v in key_mapping.values() if v not in LABELS]
    if bad:
        raise ValueError(f"key_mapping labels must be among {list(LABELS)}, got {bad}")
    return key_mapping


def _label_frame(atoms, where, key_mapping, factor, require):
    """Attach checked, converted labels to ``atoms`` as a SinglePointCalculator."""
    energy, forces, stress = _frame_labels(atoms, key_mapping, where)
    for name, value in (("energy", energy), ("forces", forces), ("stress", stress)):
        if value is None and name in require:
            raise ValueError(f"{where} has no {name!r} label (required: {list(require)})")
        if value is not None and not np.all(np.isfinite(value)):
            raise ValueError(f"{where} has a non-finite {name!r} label")
    if factor != 1.0:
        if stress is not None:
            raise ValueError(f"{where}: unit conversion of stress labels is not supported")
        energy = None if energy is None else energy * factor
        forces = None if forces is None else forces * factor
    _relabel(atoms, energy, forces, stress)


def iter_frames(path, format=None, units="eV", require=(), key_mapping=None):
    """Like :func:`read_frames`, one frame at a time (``ase.io.iread``), for files larger than memory.

    MD17-style ``.npz`` files are read whole (their arrays are compact already).
    """
    import ase.io

    if units not in _UNITS:
        raise ValueError(f"units must be one of {list(_UNITS)}, got {units!r}")
    path = os.fspath(path)
    if format == "npz" or (format is None and path.endswith(".npz")):
        yield from read_frames(path, format="npz", units=units, require=require, key_mapping=key_mapping)
        return
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such data file: {path}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path} is empty (0 bytes, no frames)")
    key_mapping = _check_key_mapping(key_mapping)
    n = 0
    try:
        for n, atoms in enumerate(ase.io.iread(path, index=":", format=format), start=1):
            _label_frame(atoms, f"{path}: frame {n - 1}", key_mapping, _UNITS[units], require)
            yield atoms
    except (ValueError, FileNotFoundError):
        raise
    except Exception as err:  # ASE parsers raise many types; report them uniformly
        raise ValueError(
            f"could not read {path} (format={format or 'guessed'}) at frame {n}: {type(err).__name__}: {err}"
        ) from err
    if n == 0:
        raise ValueError(f"{path} holds no frames")


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
        raise ValueError(
            f"split train={train}, val={val}, test={test} needs "
            f"{n_tr + n_va + max(n_te, 0)} frames but the data have {n_frames}"
        )
    perm = np.random.default_rng(seed).permutation(n_frames).astype(np.int64)
    return perm[:n_tr], perm[n_tr : n_tr + n_va], perm[n_tr + n_va : n_tr + n_va + n_te]


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
                self.graphs.append(
                    graph_from_atoms(atoms, self.type_names, self.r_max, per_edge_type_cutoff, with_labels=True)
                )
            except ValueError as err:
                raise ValueError(f"frame {f}: {err}") from err
        with_stress = [g.stress is not None for g in self.graphs]
        if any(with_stress) and not all(with_stress):  # nequip's ignore_nan: NaN marks "no stress label"
            for g in self.graphs:
                if g.stress is None:
                    g.stress = np.full((1, 3, 3), np.nan)

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


class ConcatDataset:
    """Several datasets (in-memory or streamed) as one, in order; ``subset`` indexes the whole."""

    def __init__(self, datasets, items=None):
        self.datasets = list(datasets)
        if items is None:
            items = [(d, k) for d in range(len(self.datasets)) for k in range(len(self.datasets[d]))]
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        d, k = self.items[index]
        return self.datasets[d][k]

    def subset(self, indices):
        return ConcatDataset(self.datasets, [self.items[int(i)] for i in indices])

    def __repr__(self):
        return f"ConcatDataset({len(self.datasets)} datasets, n_frames={len(self)})"


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
        yield batch_graphs([dataset[int(i)] for i in order[start : start + batch_size]])
