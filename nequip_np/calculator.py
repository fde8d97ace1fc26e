r"""ASE calculator for nequip_np models, ready for molecular dynamics.

``NequIPCalculator(model)`` implements ASE's calculator contract: ``results`` holds ``energy`` and
``free_energy`` (eV, equal: the model has no electronic entropy), ``energies`` (per atom, eV; they sum
to ``energy``), ``forces`` (N, 3) eV/Å and, only for structures periodic in x, y and z, ``stress``
(ASE's Voigt order xx, yy, zz, yz, xz, xy; positive = tensile; eV/Å³). Asking for the stress of a
structure that is not fully periodic raises ASE's ``PropertyNotImplementedError``. Species are mapped
to the model's type names by chemical symbol (or by ``chemical_species_to_atom_type_map``).

Neighbour-list reuse (a Verlet list, :class:`~nequip_np.data.verlet.NeighborListCache`, ``docs/md.md``):
with ``skin > 0`` the list is built at :math:`r_\mathrm{max} + \mathrm{skin}` and kept while every atom
has moved less than :math:`\mathrm{skin}/2` since the build and the cell, pbc and atomic numbers are
unchanged. Then no pair can have crossed into :math:`r_\mathrm{max}` unseen: two atoms that approach
each other by at most ``skin`` in total were within :math:`r_\mathrm{max} + \mathrm{skin}` at the build.
Each call filters the stored candidates to :math:`d < r_\mathrm{max}` with the very arithmetic of
:func:`~nequip_np.data.neighborlist.neighbor_list`, in the same (centre, neighbour, shift) order, so the
edges are *identical* to a fresh list — results do not depend on the skin (tested bit for bit).
"""

from __future__ import annotations

import copy

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from nequip_np.conventions import stress_to_voigt
from nequip_np.data.graph import AtomicGraph, atom_types_from_numbers, type_map_from_symbols
from nequip_np.data.neighborlist import cutoff_table_from_config, prune_edges
from nequip_np.data.verlet import NeighborListCache  # noqa: F401 - also importable from here, as before
from nequip_np.interop import load_any_model
from nequip_np.model.nequip import NequIPModel


def _is_path(obj) -> bool:
    return isinstance(obj, (str, bytes)) or hasattr(obj, "__fspath__")


def _as_model(model, backend, dtype):
    """A model object with the requested backend and dtype (a converted copy when they differ)."""
    if _is_path(model):
        model = load_any_model(model, backend=backend or "numpy")
    backend = backend or model.backend
    dtype = np.dtype(dtype or model.dtype).name
    if backend == model.backend and dtype == model.dtype.name:
        return model
    config = {**model.config.to_dict(), "model_dtype": dtype}
    new = NequIPModel(backend=backend, **config)
    new.buffers = {k: np.array(v, copy=True) for k, v in model.buffers.items()}  # imported scales etc.
    new.load_params(model.params)
    return new


def _with_radial_tables(model, radial_table):
    """``model`` with radial tables of the requested size on (a shallow copy when it must change)."""
    if radial_table is False or radial_table is None:
        return model
    if radial_table is True or radial_table == "auto":
        n_points = "auto"
    elif isinstance(radial_table, (int, np.integer)) and not isinstance(radial_table, bool):
        n_points = int(radial_table)
    else:
        raise TypeError(f"radial_table must be True, False, 'auto' or a number of table nodes, got {radial_table!r}")
    if model.radial_tables is not None and n_points in ("auto", model.radial_tables.n_points):
        return model
    model = copy.copy(model)
    model.params = dict(model.params)  # load_params on the copy must not reach the original's dict
    model.use_radial_tables(n_points)
    return model


class NequIPCalculator(Calculator):
    """ASE calculator wrapping a :class:`~nequip_np.NequIPModel` (or a path to a saved model).

    Args:
        model: a model object, a nequip-np model file, an official nequip ``.ckpt`` / ``.nequip.zip``
            (read without torch), or an official-nequip export (.npz) — files are read with
            :func:`nequip_np.interop.load_any_model`.
        backend: compute backend ("numpy" is the reference, "numba"); None keeps the model's. A model
            object with another backend is converted (a copy; the original is untouched).
        chemical_species_to_atom_type_map: optional ``{symbol: type_name}`` when type names are not
            chemical symbols.
        skin: neighbour-list skin in Å (see module docstring); 0 rebuilds the list on every call.
            The default 0.5 Å suits MD at a 0.5–1 fs step (a rebuild every ~10–50 steps at 300–500 K).
        dtype: "float64" or "float32" model precision; None keeps the model's.
        radial_table: evaluate each layer's radial MLP from a spline table built once
            (:meth:`~nequip_np.NequIPModel.use_radial_tables`): ``True`` or ``"auto"`` for a size set
            by an error bound, an int for that many nodes, ``False`` (default) for the MLP. Forces
            stay the exact derivative of the energy; the error against the MLP is in
            ``docs/kernels.md``. The tables go on a copy of a model object that does not have them
            (the original is untouched).
        retain_freed_memory: keep freed large arrays in the process heap for the next call
            (:func:`nequip_np.kernels.memory.retain_freed_memory`, glibc; process-wide): on large
            cells it removes the page faults that otherwise cost a third of the CPU time of a call.
            Default True; ``NEQUIP_NP_RETAIN_MEMORY=0`` disables it everywhere.
        **kwargs: passed on to :class:`ase.calculators.calculator.Calculator` (e.g. ``directory``).

    Attributes:
        model: the model in use.
        nl_builds: neighbour-list builds so far; ``n_calculations``: model evaluations so far.

    Example:
        >>> from ase.build import molecule
        >>> from nequip_np import NequIPModel
        >>> model = NequIPModel(type_names=["H", "C", "O"], r_max=3.0, num_layers=1, l_max=1,
        ...                     num_features=4, avg_num_neighbors=3.0)
        >>> atoms = molecule("CH3OH")
        >>> atoms.calc = NequIPCalculator(model)
        >>> atoms.get_forces().shape, sorted(atoms.calc.results)
        ((6, 3), ['energies', 'energy', 'forces', 'free_energy'])
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model,
        backend: str | None = None,
        chemical_species_to_atom_type_map=None,
        *,
        skin: float = 0.5,
        dtype: str | None = None,
        radial_table: bool | int = False,
        retain_freed_memory: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if retain_freed_memory:  # repeated calls reuse freed per-edge arrays without page faults
            from nequip_np.kernels.memory import retain_freed_memory as _retain

            _retain()
        self.model = _with_radial_tables(_as_model(model, backend, dtype), radial_table)
        self.species_map = chemical_species_to_atom_type_map
        c = self.model.config
        self.type_names = list(c.type_names)
        self._type_map = type_map_from_symbols(self.type_names, chemical_species_to_atom_type_map)
        self._cutoff_table = (
            None
            if c.per_edge_type_cutoff is None
            else cutoff_table_from_config(c.per_edge_type_cutoff, self.type_names, c.r_max)
        )
        self.nl = NeighborListCache(c.r_max, skin)
        self.n_calculations = 0

    @property
    def nl_builds(self) -> int:
        return self.nl.builds

    @property
    def skin(self) -> float:
        return self.nl.skin

    def __repr__(self) -> str:
        return (
            f"NequIPCalculator(type_names={self.type_names}, r_max={self.model.config.r_max}, "
            f"backend={self.model.backend!r}, dtype={self.model.dtype.name!r}, skin={self.skin}"
            + (f", radial_table={self.model.radial_tables.n_points}" if self.model.radial_tables else "")
            + ")"
        )

    def species_types(self, atoms) -> np.ndarray:
        """(N,) type indices of ``atoms``; an element the model does not know raises ValueError."""
        try:
            return atom_types_from_numbers(atoms.numbers, self._type_map, self.type_names)
        except ValueError:
            known = sorted(self._type_map)
            unknown = sorted(set(atoms.get_chemical_symbols()) - set(known))
            raise ValueError(
                f"the model does not know element(s) {', '.join(unknown)}; it knows "
                f"{', '.join(known)} (type_names {self.type_names})"
            ) from None

    def graph(self, atoms) -> AtomicGraph:
        """The model graph of ``atoms`` (edges from the reused neighbour list)."""
        types = self.species_types(atoms)
        pos = np.array(atoms.positions, dtype=np.float64)
        if not np.isfinite(pos).all():
            raise ValueError("positions contain NaN or inf; all coordinates must be finite")
        cell = np.array(atoms.cell.array, dtype=np.float64)
        pbc = np.array(atoms.pbc, dtype=bool)
        edge_index, shifts = self.nl.get(pos, cell, pbc, np.asarray(atoms.numbers))
        if self._cutoff_table is not None:
            edge_index, shifts = prune_edges(edge_index, shifts, pos, cell, types, self._cutoff_table)
        return AtomicGraph(
            pos=pos,
            atom_types=types,
            edge_index=edge_index,
            edge_shift=shifts.astype(np.float64),
            cell=cell[None],
            pbc=pbc[None],
            batch=np.zeros(len(atoms), np.int64),
            num_atoms=np.array([len(atoms)], np.int64),
        )

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        periodic = bool(np.all(self.atoms.pbc))
        if "stress" in properties and not periodic:
            raise PropertyNotImplementedError(
                "stress is only defined for structures periodic in x, y and z "
                f"(this one has pbc={self.atoms.pbc.tolist()})"
            )
        if len(self.atoms) == 0:
            raise ValueError("cannot evaluate an empty structure (0 atoms)")
        out = self.model.compute(self.graph(self.atoms), forces=True, stress=periodic)
        self.n_calculations += 1
        energy = float(out["total_energy"][0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": np.array(out["atomic_energy"], dtype=np.float64),
            "forces": np.array(out["forces"], dtype=np.float64),
        }
        if periodic:
            self.results["stress"] = stress_to_voigt(out["stress"][0])

    def get_hessian(self, atoms=None, **kwargs) -> np.ndarray:
        r"""Exact Hessian :math:`\partial^2 E/\partial R\,\partial R` of ``atoms``, (3N, 3N) in eV/Å².

        Row/column index 3n + a (ASE's ``VibrationsData`` layout); computed by batched complex-step
        Hessian-vector products, no finite differences (:func:`nequip_np.model.hessian.hessian`, whose
        keyword arguments ``kwargs`` are passed on; ``docs/vibrations.md``). An element the model does
        not know raises ValueError naming it.
        """
        from nequip_np.model.hessian import hessian

        atoms = self.atoms if atoms is None else atoms
        if atoms is None:
            raise ValueError("get_hessian needs atoms (none given and none calculated before)")
        if len(atoms) == 0:
            raise ValueError("cannot compute the Hessian of an empty structure (0 atoms)")
        return hessian(self.model, self.graph(atoms), **kwargs)


# ---------------------------------------------------------------------- command-line option (md, relax, lammps)
def _nodes(text: str):
    return "auto" if text == "auto" else int(text)


def add_radial_table_argument(p):
    """``--radial-table [NODES]`` (the default: tables sized by an error bound) / ``--no-radial-table``."""
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--radial-table",
        nargs="?",
        type=_nodes,
        const="auto",
        metavar="NODES",
        help="read the radial MLPs from spline tables built once (the default, sized so that forces "
        "differ from the MLP's by < 1e-7 relative; they stay the exact derivative of the energy; "
        "docs/kernels.md); NODES: nodes per table instead",
    )
    g.add_argument(
        "--no-radial-table",
        dest="radial_table",
        action="store_const",
        const=None,
        help="evaluate the radial MLPs (the reference path)",
    )
    p.set_defaults(radial_table="auto")
