r"""The ``data:`` section of a training configuration → train, validation and test datasets.

Two ways to give data (docs/data.md, "Data sources"):

* ``path``: one file (any ASE format, ``.npz``, or a frame store from ``nequip-np prepare-data``)
  split randomly by ``train``/``val``/``test`` counts or fractions;
* ``train``, ``val``, ``test`` as a path or a list of paths: the training files are concatenated;
  every validation (and test) file is its own set, reported separately (``val``, ``val1``, ...;
  ``test``, ``test1``, ...). The first validation set drives the schedule, early stopping and
  ``best.ckpt.npz``.

A frame store is streamed (graphs built per batch, nothing held in memory); other files are read
and turned into graphs once. Everything a bad input can break is checked here, before any
training starts: missing files, empty files, unmapped keys, label shapes, missing required labels,
and species that the model does not have.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ase.data import atomic_numbers

from .dataset import ConcatDataset, GraphDataset, read_frames, split_indices
from .store import FrameStore, StreamedDataset, is_store


@dataclass
class Datasets:
    type_names: list
    train: object
    val: list = field(default_factory=list)  # [(name, dataset)]
    test: list = field(default_factory=list)


class _Source:
    """One path: frames read into memory, or a frame store opened for streaming."""

    def __init__(self, path, d, require):
        self.path = str(path)
        if is_store(self.path):
            self.store = FrameStore(self.path)
            self.frames = None
            complete = self.store.meta.get("labels_complete", self.store.labels)
            lacking = [k for k in require if not complete.get(k)]
            if lacking:
                raise ValueError(
                    f"{self.path}: not every frame has the label(s) {lacking} the loss needs "
                    f"(required: {list(require)})"
                )
            self.species = set(self.store.species())
        else:
            self.store = None
            self.frames = read_frames(
                self.path, format=d.format, units=d.units, require=require, key_mapping=d.key_mapping
            )
            self.species = {s for a in self.frames for s in a.get_chemical_symbols()}

    def __len__(self):
        return len(self.store) if self.store is not None else len(self.frames)

    def dataset(self, type_names, r_max, cutoff):
        if self.store is not None:
            return StreamedDataset(self.store, type_names, r_max, cutoff)
        try:
            return GraphDataset(self.frames, type_names, r_max, cutoff)
        except ValueError as err:
            raise ValueError(f"{self.path}: {err}") from err


def _paths(v):
    if v is None or v == 0:
        return []
    return [v] if isinstance(v, str) else list(v)


def build_datasets(data_cfg, type_names, r_max, per_edge_type_cutoff=None, require=()) -> Datasets:
    """Read/open every source of ``data_cfg`` and return the datasets (see module docstring).

    ``type_names="auto"`` takes the elements of all sources, ordered by atomic number.
    """
    d = data_cfg
    if d.path is not None:
        groups = {"train": [_Source(d.path, d, require)]}
    else:
        groups = {k: [_Source(p, d, require) for p in _paths(getattr(d, k))] for k in ("train", "val", "test")}
    for srcs in groups.values():
        for s in srcs:
            if len(s) == 0:
                raise ValueError(f"{s.path} holds no frames")
    species = set().union(*(s.species for srcs in groups.values() for s in srcs))
    if type_names == "auto":
        type_names = sorted(species, key=lambda s: atomic_numbers.get(s, 0))
    else:
        for srcs in groups.values():
            for s in srcs:
                unknown = sorted(s.species - set(type_names))
                if unknown:
                    raise ValueError(f"{s.path}: species {unknown} are not in model.type_names {list(type_names)}")

    def make(src):
        return src.dataset(type_names, r_max, per_edge_type_cutoff)

    if d.path is not None:
        whole = make(groups["train"][0])
        idx = split_indices(len(whole), d.train, d.val, d.test, seed=d.split_seed)
        train, val, test = (whole.subset(i) for i in idx)
        out = Datasets(type_names, train, [("val", val)] if len(val) else [], [("test", test)] if len(test) else [])
    else:
        tr = [make(s) for s in groups["train"]]
        out = Datasets(
            type_names,
            tr[0] if len(tr) == 1 else ConcatDataset(tr),
            [(_name("val", k), make(s)) for k, s in enumerate(groups["val"])],
            [(_name("test", k), make(s)) for k, s in enumerate(groups["test"])],
        )
    if len(out.train) == 0:
        raise ValueError("the training set is empty; check data.train")
    return out


def _name(prefix, k):
    return prefix if k == 0 else f"{prefix}{k}"
