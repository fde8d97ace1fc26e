r"""Frames on disk, memory-mapped: the format ``nequip-np prepare-data`` writes, and datasets over it.

A *frame store* is a directory of flat binary arrays (memory-mappable: ``np.memmap``; a training run
reads only the bytes of the frames in its current batch) and a ``meta.json`` that gives every
array's dtype and shape:

=================  =================  ===========================================================
file               dtype, shape       content
=================  =================  ===========================================================
``offsets``        int64 (F+1,)       first atom of each frame (frame f: ``offsets[f]:offsets[f+1]``)
``numbers``        int16 (N,)         atomic numbers
``positions``      float64 (N, 3)     Å
``cell``           float64 (F, 3, 3)  rows = lattice vectors, Å
``pbc``            bool (F, 3)
``energy``         float64 (F,)       eV; NaN where a frame has no energy label
``forces``         float64 (N, 3)     eV/Å; NaN where a frame has no force label
``stress``         float64 (F, 3, 3)  eV/Å³, ASE sign; NaN where a frame has no stress label
``edge_offsets``   int64 (F+1,)       optional neighbour-list cache (``--r-max``): first edge of
``edge_index``     int32 (E, 2)       each frame; (centre, neighbour) indices within the frame;
``edge_shift``     int16 (E, 3)       integer cell shifts — exactly what the graph builder makes
=================  =================  ===========================================================

:meth:`FrameStore.array` returns the whole arrays as ``np.memmap``; :meth:`FrameStore.graph` (what
training calls per frame) reads a frame's slices with positioned reads (``os.pread``) instead. Pages
of a mapping count in the process's RSS until unmapped, and the kernel maps tens of kilobytes around
every fault: shuffled reads through a memory map grew RSS to the whole 1 GB store after ~300 random
frames. Positioned reads go through the page cache, which is not the process's memory, so RSS stays
bounded whatever the store size and access order. Only the (F+1,) offset tables are held in memory.

Labels are stored as read (after ``key_mapping``, virial → stress and unit conversion), so a
graph built from the store is bit-for-bit the graph built from the original file. Writing streams
frame by frame (``ase.io.iread``) into a temporary directory renamed at the end; an existing store
is never overwritten unless asked.

Example:
    >>> import tempfile, os
    >>> from ase.build import molecule
    >>> from ase.io import write
    >>> from ase.calculators.singlepoint import SinglePointCalculator
    >>> d = tempfile.mkdtemp()
    >>> frames = [molecule("H2O") for _ in range(3)]
    >>> for k, a in enumerate(frames):
    ...     a.calc = SinglePointCalculator(a, energy=-14.0 - k, forces=np.zeros((3, 3)))
    >>> write(os.path.join(d, "w.xyz"), frames)
    >>> store = prepare_store([os.path.join(d, "w.xyz")], os.path.join(d, "w.frames"), r_max=3.0)
    >>> len(store), store.n_atoms, store.graph(2, ["H", "O"], 3.0).energy
    (3, 9, array([-16.]))
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from .dataset import iter_frames
from .graph import graph_from_arrays
from .neighborlist import neighbor_list

FORMAT, VERSION = "nequip-np-frames", 1

_ARRAYS = {  # name -> (dtype, trailing shape, per "frame" or "atom" or "edge", + 1 for offsets)
    "offsets": ("int64", (), "frame+1"),
    "numbers": ("int16", (), "atom"),
    "positions": ("float64", (3,), "atom"),
    "cell": ("float64", (3, 3), "frame"),
    "pbc": ("bool", (3,), "frame"),
    "energy": ("float64", (), "frame"),
    "forces": ("float64", (3,), "atom"),
    "stress": ("float64", (3, 3), "frame"),
    "edge_offsets": ("int64", (), "frame+1"),
    "edge_index": ("int32", (2,), "edge"),
    "edge_shift": ("int16", (3,), "edge"),
}


def is_store(path) -> bool:
    """True if ``path`` is a frame-store directory."""
    return os.path.isdir(path) and os.path.exists(os.path.join(path, "meta.json"))


class FrameStore:
    """Read-only access to a frame store; arrays are memory-mapped on first use."""

    def __init__(self, path):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.exists():
            raise FileNotFoundError(
                f"{self.path} is not a frame store (no meta.json); create one with `nequip-np prepare-data`"
            )
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: format {self.meta.get('format')!r}, expected {FORMAT!r}")
        if self.meta.get("version", 0) > VERSION:
            raise ValueError(
                f"{self.path}: frame-store version {self.meta['version']} is newer than {VERSION}; upgrade nequip-np"
            )
        self._maps, self._fds, self._offsets = {}, {}, {}
        self.labels = self.meta["labels"]

    def __len__(self) -> int:
        return int(self.meta["n_frames"])

    @property
    def n_atoms(self) -> int:
        return int(self.meta["n_atoms"])

    def array(self, name: str) -> np.ndarray:
        if name not in self._maps:
            dtype, shape = self.meta["arrays"][name]
            file = self.path / name
            if not file.exists():
                raise FileNotFoundError(f"{self.path}: array file {name!r} is missing; the store is incomplete")
            self._maps[name] = np.memmap(file, dtype=dtype, mode="r", shape=tuple(shape))
        return self._maps[name]

    def edges_cached_for(self, r_max, per_edge_type_cutoff) -> bool:
        e = self.meta.get("edges")
        return e is not None and e["r_max"] == float(r_max) and not per_edge_type_cutoff

    def species(self) -> list[str]:
        return list(self.meta["species"])

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of an array, by a positioned read (a fresh, writable array)."""
        dtype, shape = self.meta["arrays"][name]
        dt, row = np.dtype(dtype), int(np.prod(shape[1:], dtype=np.int64))
        if name not in self._fds:
            file = self.path / name
            if not file.exists():
                raise FileNotFoundError(f"{self.path}: array file {name!r} is missing; the store is incomplete")
            self._fds[name] = os.open(file, os.O_RDONLY)
        nbytes = (stop - start) * row * dt.itemsize
        buf = bytearray(os.pread(self._fds[name], nbytes, start * row * dt.itemsize))
        if len(buf) != nbytes:
            raise ValueError(f"{self.path}: array file {name!r} is shorter than meta.json says")
        return np.frombuffer(buf, dtype=dt).reshape((stop - start, *shape[1:]))

    def _offset(self, name: str) -> np.ndarray:
        if name not in self._offsets:
            self._offsets[name] = self.read(name, 0, self.meta["arrays"][name][1][0])
        return self._offsets[name]

    def graph(self, f: int, type_names, r_max, per_edge_type_cutoff=None):
        """The labelled one-frame graph of frame ``f`` (read with positioned reads, no mapping)."""
        o = self._offset("offsets")
        a0, a1 = int(o[f]), int(o[f + 1])
        edges = None
        if self.edges_cached_for(r_max, per_edge_type_cutoff):
            eo = self._offset("edge_offsets")
            e0, e1 = int(eo[f]), int(eo[f + 1])
            edges = (
                self.read("edge_index", e0, e1).T.astype(np.int64),
                self.read("edge_shift", e0, e1).astype(np.float64),
            )
        g = graph_from_arrays(
            self.read("numbers", a0, a1),
            self.read("positions", a0, a1),
            self.read("cell", f, f + 1)[0],
            self.read("pbc", f, f + 1)[0],
            type_names,
            r_max,
            per_edge_type_cutoff,
            edges=edges,
        )
        if self.labels["energy"]:
            e = float(self.read("energy", f, f + 1)[0])
            g.energy = None if np.isnan(e) else np.array([e])
        if self.labels["forces"]:
            forces = self.read("forces", a0, a1)
            g.forces = None if np.isnan(forces).all() else forces
        if self.labels["stress"]:
            g.stress = self.read("stress", f, f + 1)
        return g

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._maps.clear()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


class StreamedDataset:
    """A dataset over (a subset of) a frame store; graphs are built when a batch asks for them.

    Same interface as :class:`~nequip_np.data.dataset.GraphDataset` (``len``, indexing, ``subset``).
    """

    def __init__(self, store, type_names, r_max, per_edge_type_cutoff=None, indices=None):
        self.store = store if isinstance(store, FrameStore) else FrameStore(store)
        self.type_names, self.r_max = list(type_names), float(r_max)
        self.per_edge_type_cutoff = per_edge_type_cutoff
        self.indices = np.arange(len(self.store)) if indices is None else np.asarray(indices, dtype=np.int64)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, k):
        return self.store.graph(int(self.indices[k]), self.type_names, self.r_max, self.per_edge_type_cutoff)

    def subset(self, indices):
        return StreamedDataset(
            self.store,
            self.type_names,
            self.r_max,
            self.per_edge_type_cutoff,
            self.indices[np.asarray(indices, dtype=np.int64)],
        )

    def __repr__(self):
        return f"StreamedDataset({str(self.store.path)!r}, n_frames={len(self)}, r_max={self.r_max})"


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------
class _Writer:
    def __init__(self, tmp: Path, with_edges: bool):
        names = [n for n in _ARRAYS if with_edges or not n.startswith("edge")]
        self.fh = {n: open(tmp / n, "wb") for n in names}  # noqa: SIM115 -- closed by close(), in a finally
        self.n_frames = self.n_atoms = self.n_edges = 0
        self.fh["offsets"].write(np.zeros(1, np.int64).tobytes())
        if with_edges:
            self.fh["edge_offsets"].write(np.zeros(1, np.int64).tobytes())

    def put(self, name, value):
        self.fh[name].write(np.ascontiguousarray(value, dtype=_ARRAYS[name][0]).tobytes())

    def close(self):
        for fh in self.fh.values():
            fh.close()


def prepare_store(
    sources, out, format=None, units="eV", key_mapping=None, r_max=None, overwrite=False, progress=False
) -> FrameStore:
    """Write the frames of ``sources`` (paths, any ASE format or .npz) to a frame store at ``out``.

    Args:
        sources: a path or a list of paths, concatenated in order.
        out: the store directory to create.
        format, units, key_mapping: as in :func:`~nequip_np.data.dataset.read_frames`.
        r_max: also cache the neighbour lists for this cutoff (used when training with the same
            ``r_max`` and no per-edge-type cutoffs; otherwise lists are built per batch).
        overwrite: replace an existing store at ``out`` (otherwise an existing path is an error).
    """
    sources = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not sources:
        raise ValueError("prepare-data needs at least one source file")
    frames = (a for src in sources for a in iter_frames(src, format=format, units=units, key_mapping=key_mapping))
    return write_store(
        frames,
        out,
        r_max=r_max,
        overwrite=overwrite,
        progress=progress,
        provenance={"sources": [os.path.abspath(s) for s in sources], "units": units, "key_mapping": key_mapping},
    )


def write_store(frames, out, r_max=None, overwrite=False, progress=False, provenance=None) -> FrameStore:
    """Write an iterable of labelled ``ase.Atoms`` (labels in ``atoms.calc``, eV/Å) to a frame store.

    Frames are consumed one at a time, so a generator of any length needs O(1 frame) memory.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise ValueError(
            f"{out} exists; choose another output or pass overwrite=True (--overwrite), "
            "so that nothing written is replaced silently"
        )
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    w = _Writer(tmp, r_max is not None)
    has = {"energy": False, "forces": False, "stress": False}
    missing = {"energy": False, "forces": False, "stress": False}
    species = set()
    sizes = []
    bar = _progress(progress)
    try:
        for atoms in frames:
            _write_frame(w, atoms, r_max, has, missing, species, sizes)
            bar(w.n_frames)
    finally:
        w.close()
    if w.n_frames == 0:
        shutil.rmtree(tmp)
        raise ValueError("no frames to write")
    _write_meta(tmp, w, has, missing, species, sizes, provenance or {}, r_max)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return FrameStore(out)


def _write_frame(w, atoms, r_max, has, missing, species, sizes):
    from .graph import labels_from_atoms

    n = len(atoms)
    if n == 0:
        raise ValueError(f"frame {w.n_frames} has no atoms")
    energy, forces, stress = labels_from_atoms(atoms)
    w.put("numbers", atoms.numbers)
    w.put("positions", atoms.positions)
    w.put("cell", atoms.cell.array)
    w.put("pbc", atoms.pbc)
    w.put("energy", np.nan if energy is None else energy)
    w.put("forces", np.full((n, 3), np.nan) if forces is None else forces)
    w.put("stress", np.full((3, 3), np.nan) if stress is None else stress)
    for name, value in (("energy", energy), ("forces", forces), ("stress", stress)):
        has[name] |= value is not None
        missing[name] |= value is None
    species.update(int(z) for z in set(atoms.numbers.tolist()))
    w.n_atoms += n
    w.n_frames += 1
    w.put("offsets", w.n_atoms)
    sizes.append(n)
    if r_max is not None:
        edge_index, shifts = neighbor_list(
            np.array(atoms.positions, dtype=np.float64),
            np.array(atoms.cell.array, dtype=np.float64),
            np.array(atoms.pbc),
            r_max,
        )
        if shifts.size and np.abs(shifts).max() > np.iinfo(np.int16).max:
            raise ValueError(f"frame {w.n_frames - 1}: a cell shift does not fit int16; the cell is too small")
        w.put("edge_index", edge_index.T)
        w.put("edge_shift", shifts)
        w.n_edges += edge_index.shape[1]
        w.put("edge_offsets", w.n_edges)


def _write_meta(tmp, w, has, missing, species, sizes, provenance, r_max):
    from ase.data import chemical_symbols

    lengths = {"frame": w.n_frames, "frame+1": w.n_frames + 1, "atom": w.n_atoms, "edge": w.n_edges}
    arrays = {n: [dt, [lengths[kind], *shape]] for n, (dt, shape, kind) in _ARRAYS.items() if (tmp / n).exists()}
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "n_frames": w.n_frames,
        "n_atoms": w.n_atoms,
        "labels": has,
        "labels_complete": {k: has[k] and not missing[k] for k in has},
        "species": [chemical_symbols[z] for z in sorted(species)],
        "atoms_per_frame": {"min": int(min(sizes)), "max": int(max(sizes)), "mean": float(np.mean(sizes))},
        "units": "eV, Å",
        "provenance": provenance,
        "edges": None if r_max is None else {"r_max": float(r_max), "n_edges": w.n_edges},
        "arrays": arrays,
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))


def _progress(enabled):
    if not enabled:
        return lambda n: None

    def report(n):
        if n % 1000 == 0:
            print(f"  {n} frames", flush=True)

    return report
